//! The vault: the types of `/vault` and `/backups`. Paths are on the node's machine.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use kith_vault::{
    Kind as VaultKind, ObjectStatus as VaultObject, PeerAccount as VaultPeer,
    PutReport as VaultStored, VaultStatus as VaultOverview,
};

/// `POST /vault`: store a file or folder on peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultPut {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u8>,
    /// Members of this group (ID or name) may restore it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// `POST /vault/{id}/get`, `POST /backups/restore`: where to write it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultGet {
    pub out: String,
    /// Restore: the folder backed up (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Restore: as it was at this time (milliseconds since the Unix epoch; default: the
    /// newest backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VaultGot {
    pub id: String,
    pub name: String,
    pub files: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VaultRemoved {
    pub id: String,
    /// Shares released on their holders.
    pub released: usize,
}

/// `POST /backups`: back a folder up now (and every `every` seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u8>,
}
