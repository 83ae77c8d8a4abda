//! What the web UI uses beyond the other routes: the login link, the live event stream,
//! the download history, the settings and the log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Progress;

/// `POST /ui/login`: a link that logs a browser in once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginLink {
    /// Open it within `expires_secs`; it works once.
    pub url: String,
    pub expires_secs: u64,
}

/// A download that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    pub id: String,
    pub name: String,
    pub output: String,
    /// `done` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds since the Unix epoch when it started.
    pub added: u64,
}

/// The `tick` event of `GET /events`, once a second: the node's traffic and transfers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tick {
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    pub peers: usize,
    /// Connections made directly, and through a relay.
    pub direct: usize,
    pub relayed: usize,
    /// Content bytes sent and received since the node started.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// Bytes per second over the last second.
    pub up_rate: u64,
    pub down_rate: u64,
    pub shares: usize,
    /// Downloads running or paused.
    pub downloads: Vec<Progress>,
    /// Each connected peer's traffic with this node.
    #[serde(default)]
    pub peer_rates: Vec<PeerRate>,
}

/// One peer's content traffic with this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerRate {
    pub peer_id: String,
    /// Bytes per second over the last second: to the peer, from the peer.
    pub up_rate: u64,
    pub down_rate: u64,
    /// Since the node started.
    pub sent_bytes: u64,
    pub received_bytes: u64,
}

/// `GET /settings`: the settings the UI changes, as the node runs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    /// Bytes per second (0: unlimited); applied at once.
    pub upload_limit: u64,
    pub download_limit: u64,
    /// Serve as a circuit relay (none: only when serving as a broker); applied at the
    /// next start.
    pub relay: Option<bool>,
    /// The broker this node registers with; applied at the next start.
    pub broker: Option<String>,
    /// Settings saved in `config.toml` that wait for a restart.
    pub on_restart: Vec<String>,
}

/// `PUT /settings`: what to change (absent fields stay). Saved in `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// A rate with a unit (`10M`, `500k`) or `0` for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<bool>,
    /// A multiaddr with `/p2p/PEER_ID`, or empty for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
}

/// One log line of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    pub level: String,
    pub target: String,
    pub text: String,
}

/// `GET /shares/{id}/ticket`: a ticket for `kith get TICKET` on another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TicketBody {
    pub ticket: String,
}
