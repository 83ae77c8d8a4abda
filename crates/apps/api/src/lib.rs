//! The contract of a kith node's local HTTP API (`/api/v1`): every request and response
//! body, shared by the node that serves them and the clients that send them (the `kith`
//! command), so neither side builds or picks apart untyped JSON. The node's OpenAPI
//! document is generated from these types, so it cannot drift from them.
//!
//! Streaming responses (`/downloads`, `/search`) are JSON lines, one [`Progress`] or
//! [`SearchResult`] per line. Errors are an [`ErrorBody`] with a status code.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod cache;
#[cfg(feature = "client")]
pub mod client;
mod compute;
mod people;
mod ui;
mod vault;
pub use cache::{CacheDemand, CacheEntry, CacheHint, CacheState, CacheStatus, PinRequest};
#[cfg(feature = "client")]
pub use client::Client;
pub use compute::{
    Job, JobState, MasterStanding, ResultsRequest, ResultsWritten, RunningUnit, SubmitJob,
    VolunteerRequest, VolunteerStatus,
};
pub use kith_search::{SearchResult, sort_results};
pub use kith_share::{Progress, ShareKind, State as ProgressState};
pub use people::{
    CreateGroup, Device, DeviceRemoved, Group, Invite, InviteRequest, JoinDevice, JoinGroup,
    LinkCode, Member, Person,
};
pub use ui::{LogLine, LoginLink, PeerRate, Settings, SettingsChange, Tick, TicketBody, Transfer};
pub use vault::{
    BackupRequest, VaultGet, VaultGot, VaultKind, VaultObject, VaultOverview, VaultPeer, VaultPut,
    VaultRemoved, VaultStored,
};

/// An error: one line saying what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// One open connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Connection {
    pub peer_id: String,
    pub addr: String,
    /// `dialer` when this node opened it, `listener` when the peer did.
    pub role: String,
    /// `tcp`, `quic` or `relay`.
    pub transport: String,
    /// `direct`, or `relayed` through a circuit relay.
    pub path: String,
    /// For relayed connections: the relay, and the limits of the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_secs: Option<u64>,
}

/// A relay this node holds (or asks for) a reservation on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Relay {
    pub peer_id: String,
    /// The relayed address others can reach this node at.
    pub addr: String,
    /// `reserved` or `pending`.
    pub state: String,
}

/// `GET /status`: is the node healthy, and how is it connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub peer_id: String,
    pub version: String,
    /// AutoNAT's verdict: `public`, `private` or `unknown`.
    pub reachability: String,
    /// `server` when this node answers DHT queries, `client` when it only asks.
    pub dht: String,
    /// Whether this node serves as a circuit relay for others.
    pub relay_server: bool,
    pub relays: Vec<Relay>,
    pub listen_addrs: Vec<String>,
    pub external_addrs: Vec<String>,
    /// Where others can dial this node: every listen and external address, with
    /// `/p2p/PEER_ID` (give one to `kith connect` or `--bootstrap` on another node).
    #[serde(default)]
    pub dialable: Vec<String>,
    pub connections: Vec<Connection>,
    /// Distinct peers connected.
    pub peers: usize,
    pub routing_table_peers: usize,
    /// DHT keys this node announces.
    pub providing: usize,
    pub shares: usize,
    /// Downloads running.
    pub downloads: usize,
    /// This node's part in the distributed word index.
    #[serde(default)]
    pub word_index: WordIndex,
}

/// This node's part in the distributed word index (network search).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WordIndex {
    /// Words of this node's public names it published.
    pub published: usize,
    /// Of those, words no node took yet (no peers known, or all full).
    pub unplaced: usize,
    /// Records this node keeps for other nodes, and their bytes.
    pub records: usize,
    pub bytes: usize,
}

/// A shared file or folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Share {
    /// Content ID of the root manifest.
    pub id: String,
    pub path: String,
    pub name: String,
    pub kind: ShareKind,
    pub size: u64,
    pub files: u64,
    /// Seconds since the Unix epoch.
    pub added: u64,
    /// The group it is shared with; absent for public shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Shared publicly on purpose though it came to this node in a group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public_on_purpose: bool,
}

/// `POST /peers`: dial a peer now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// A multiaddr ending in `/p2p/PEER_ID`.
    pub addr: String,
}

/// `POST /shares`: share a file or folder in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// Absolute path.
    pub path: String,
    /// Share it with this group only (ID or name). Default: public, unless the content
    /// came to this node in a group: then it stays in that group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Share it publicly even if it came to this node in a group (anyone can then find
    /// and fetch it). Not with `group`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

/// `POST /downloads`: start (or follow) a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DownloadRequest {
    /// Content ID, or a name (`PEER_ID/name`) fetched at its newest revision.
    pub id: String,
    /// Exact output path (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Folder to put the content in under its own name (absolute). Without `output` and
    /// `dir`: the `downloads` folder in the node's data dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Seconds the download may go without progress before it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `PATCH /downloads/{id}`: pause or resume a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadChange {
    /// `paused` or `running`.
    pub state: String,
}

/// `POST /search`: search across peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Words (all must match), `"quoted phrases"`, `prefix*`.
    pub q: String,
    /// `broker`, `network`, `both`, `flood` or `index` (the word index only); default: `both`
    /// with a broker, else `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// How long to wait for answers, in milliseconds (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Most results (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Search only what is shared with this group (ID or name), asking its members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// `POST /names`: share a path and publish it as the next revision of a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The name (letters, digits, `-`, `_`, `.`), owned by this node.
    pub name: String,
    /// Absolute path.
    pub path: String,
    /// Publish it even if it came to this node in a group (a name is public: anyone can
    /// then fetch it). Without it, such content is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

/// `POST /names/resolve`: the newest revision of a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// `PEER_ID/name`, or a name of this node.
    pub name: String,
    /// How long to ask the DHT, in milliseconds (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A revision of a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Name {
    /// `PEER_ID/name`.
    pub name: String,
    pub owner: String,
    pub revision: u64,
    /// Content ID of this revision.
    pub id: String,
    /// Seconds since the Unix epoch when it was published.
    pub time: u64,
}
