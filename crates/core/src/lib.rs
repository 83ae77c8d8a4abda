//! kith core: the layer between the overlay and the services. It knows no service.
//!
//! - [`ContentId`]: self-verifying content IDs (CIDv1, BLAKE3 multihash).
//! - [`frame`]: length-prefixed JSON frames of kith's stream protocols, bounded.
//! - [`chunker`]: content-defined chunking (FastCDC) of files into verified chunks.
//! - [`manifest`]: file and folder manifests, so a whole tree has one ID.
//! - [`store::Store`]: the store engine (redb): blocks, where each chunk's bytes live, and
//!   record tables that services define for their own state.
//! - [`identity`]: the node's Ed25519 device key, and key files.
//! - [`person`]: people, their devices' certificates and revocations.
//! - [`seal`]: HPKE to one device, ChaCha20-Poly1305 with a shared key.
//! - [`scope::Scopes`]: who may see content that is not public (groups implement it).
//! - [`tasks::Tasks`]: a service's task tracker, which turns a panic into a stopped node;
//!   [`sync::recover`] for locks of data that a panic cannot leave invalid.

pub mod chunker;
pub mod error;
pub mod frame;
pub mod id;
pub mod identity;
pub mod manifest;
pub mod person;
pub mod scope;
pub mod seal;
pub mod store;
pub mod sync;
pub mod tasks;
pub mod ticket;
pub mod units;

pub use id::{ContentId, IdError};
