//! Edge caching: the types of `/cache`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use kith_cache::Fill as CacheState;

/// `POST /cache/pins`: keep this content on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    pub id: String,
}

/// Content this node caches, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheEntry {
    pub id: String,
    pub name: Option<String>,
    pub bytes: u64,
    pub pinned: bool,
    pub state: CacheState,
    pub error: Option<String>,
    /// Why it is here: `pinned`, or `prefetch` for a region.
    pub why: String,
    /// For a prefetch: the source that asked, the region and how many of its peers asked.
    pub source: Option<String>,
    pub region: Option<String>,
    pub demand: Option<u32>,
    /// Downloads of it that started here, and the last one (ms since the Unix epoch).
    pub served: u64,
    pub last_served_ms: u64,
    pub added_ms: u64,
}

/// A cache node this node asked to fetch its content ahead for a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheHint {
    pub id: String,
    pub region: String,
    pub demand: u32,
    pub node: Option<String>,
    pub answer: String,
    pub at_ms: u64,
}

/// Content of this node's that a region asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheDemand {
    pub id: String,
    pub region: String,
    pub peers: u32,
}

/// `GET /cache`: what this node caches for others and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheStatus {
    /// Bytes this node caches at most (`kith up --cache`); pins are kept beyond it.
    pub capacity: u64,
    pub used: u64,
    pub pinned_bytes: u64,
    /// This node's regions (the subnets of its addresses, or its relays).
    pub regions: Vec<String>,
    pub entries: Vec<CacheEntry>,
    pub hints: Vec<CacheHint>,
    pub demand: Vec<CacheDemand>,
}
