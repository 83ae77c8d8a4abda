//! kith core: the layer between the overlay and the services. It knows no service.
//!
//! - [`ContentId`]: self-verifying content IDs (CIDv1, BLAKE3 multihash).
//! - [`chunker`]: content-defined chunking (FastCDC) of files into verified chunks.
//! - [`manifest`]: file and folder manifests, so a whole tree has one ID.
//! - [`store::Store`]: the store engine (redb): blocks, where each chunk's bytes live, and
//!   record tables that services define for their own state.
//! - [`identity`]: the node's Ed25519 device key.
//! - [`tasks::Tasks`]: a service's task tracker, which turns a panic into a stopped node;
//!   [`sync::recover`] for locks of data that a panic cannot leave invalid.

pub mod chunker;
pub mod id;
pub mod identity;
pub mod manifest;
pub mod store;
pub mod sync;
pub mod tasks;

pub use id::{ContentId, IdError};
