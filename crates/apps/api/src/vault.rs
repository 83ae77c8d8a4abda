//! The vault: the types of `/vault` and `/backups`. Paths are on the node's machine.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// What a put or a backup stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VaultStored {
    pub id: String,
    pub name: String,
    pub k: u8,
    pub n: u8,
    /// Distinct holders of its shares.
    pub holders: usize,
    /// Plain bytes stored.
    pub size: u64,
    /// Plain bytes the vault did not have yet (what a backup moved).
    pub new_bytes: u64,
    /// Share bytes sent to holders.
    pub uploaded: u64,
    pub files: usize,
    /// The vault's copy of the index (what another device restores from) includes it;
    /// when false, the node stores that copy as soon as holders take it.
    pub index_published: bool,
}

/// An object in the vault and its health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VaultObject {
    pub id: String,
    pub name: String,
    /// `file`, `folder` or `backup`.
    pub kind: String,
    pub created: u64,
    pub size: u64,
    pub files: usize,
    pub k: u8,
    pub n: u8,
    /// Shares that passed their last audit, in the object's weakest segment (of `n`).
    pub reachable: u8,
    pub segments: usize,
    /// Seconds since the Unix epoch.
    pub last_audit: u64,
    pub repairs: u64,
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

/// One peer's account with this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VaultPeer {
    pub peer: String,
    /// Bytes of this node's shares the peer holds.
    pub holds_for_me: u64,
    /// Bytes this node holds for the peer.
    pub i_hold_for_it: u64,
    pub audits_passed: u64,
    /// Shares it lost or spoiled (a peer with a fault gets no more).
    pub faults: u64,
}

/// `GET /vault/status`: what this node offers, holds and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VaultOverview {
    pub offered: u64,
    pub held: u64,
    pub objects: usize,
    pub stored: u64,
    pub repairs: u64,
    pub last_audit: u64,
    pub peers: Vec<VaultPeer>,
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
