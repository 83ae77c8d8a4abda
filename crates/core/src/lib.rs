//! kith core: the layer between the overlay and the services.
//!
//! - [`ContentId`]: self-verifying content IDs (CIDv1, BLAKE3 multihash).
//! - [`chunker`]: content-defined chunking (FastCDC) of files into verified chunks.
//! - [`manifest`]: file and folder manifests, so a whole tree has one ID.
//! - [`store::Store`]: the metadata database (redb) that maps chunks to where their bytes
//!   live, shares, and download state.
//! - [`identity`]: the node's Ed25519 device key.
//! - [`config::Config`]: the node's TOML configuration.

pub mod chunker;
pub mod config;
pub mod id;
pub mod identity;
pub mod index;
pub mod manifest;
pub mod store;

pub use id::{ContentId, IdError};
