//! Operations of a group's log (see `docs/protocols/groups.md`). Each is signed by the
//! device that made it, which carries its person's certificate; each names the heads of
//! the log its author had seen (`parents`), so the log is a hash-linked graph. The group ID
//! is derived from the genesis operation.

use kith_core::person::{DeviceCert, PersonId, Revocation, from_hex, public_key_of, to_hex};
use kith_overlay::{Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::invite::Invite;

/// Longest encoded operation accepted (an operation that re-keys a group of 1000 devices
/// carries 1000 wraps of ~130 bytes).
pub const MAX_OP_BYTES: usize = 512 * 1024;
/// Most parents an operation names.
pub const MAX_PARENTS: usize = 16;
/// Most devices named in one operation.
pub const MAX_DEVICES: usize = 32;
/// Longest group name.
pub const MAX_NAME: usize = 64;
/// Most operations in one group's log.
pub const MAX_OPS: usize = 100_000;
/// Domain separation of operation signatures (format version 1).
const OP_CONTEXT: &[u8] = b"kith-group-op-v1\n";

/// A 32-byte BLAKE3 hash, as hex in JSON.
pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("malformed operation: {0}")]
    Malformed(String),
    #[error("forged operation: {0}")]
    Forged(String),
}

/// A group key sealed to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wrap {
    pub device: String,
    /// HPKE encapsulated key (hex).
    pub enc: String,
    /// The sealed key (hex).
    pub ct: String,
}

/// A group key handed out with an operation: a new epoch's key, or the current one given
/// to new devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    /// The epoch's ID (16 random bytes, hex), chosen by whoever made its key.
    pub epoch: String,
    /// Whether this starts the epoch (else it hands the epoch's key to more devices).
    pub new_epoch: bool,
    pub wraps: Vec<Wrap>,
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// The genesis: the author's person is the first admin.
    Create {
        name: String,
        /// The author's person's devices.
        devices: Vec<DeviceCert>,
        /// Whether people who join may read what was sealed before they joined.
        history: bool,
    },
    /// A person joins (by an invite) or is added by an admin.
    Add {
        person: PersonId,
        devices: Vec<DeviceCert>,
        admin: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite: Option<Box<Invite>>,
    },
    /// A member's new device.
    AddDevice {
        cert: DeviceCert,
    },
    Remove {
        person: PersonId,
    },
    Promote {
        person: PersonId,
    },
    /// The author's person leaves.
    Leave,
    /// A member's person revoked one of its devices.
    Revoke {
        revocation: Revocation,
    },
    /// A new group key for the current members (after a removal others made).
    Rotate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// The group ID; empty in the genesis (the ID is derived from it).
    pub group: String,
    /// The heads of the log the author had seen (hex hashes); none in the genesis.
    pub parents: Vec<String>,
    pub body: Body,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyUpdate>,
    /// The signing device's certificate.
    pub author: DeviceCert,
    /// Seconds since the Unix epoch, as the author says.
    pub time: u64,
    /// The author device's Ed25519 signature (hex).
    pub sig: String,
}

pub fn hex_hash(h: &Hash) -> String {
    to_hex(h)
}

pub fn parse_hash(s: &str) -> Option<Hash> {
    from_hex(s).and_then(|b| b.try_into().ok())
}

/// The ID of the group whose genesis hashes to `genesis`.
pub fn group_id(genesis: &Hash) -> String {
    format!("grp-{}", to_hex(genesis.get(..16).unwrap_or_default()))
}

impl Op {
    fn signing_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.sig.clear();
        let mut out = OP_CONTEXT.to_vec();
        out.extend_from_slice(&serde_json::to_vec(&unsigned).unwrap_or_default());
        out
    }

    /// A new operation signed by `device` (whose certificate is `author`).
    pub fn sign(
        device: &Keypair,
        author: DeviceCert,
        group: String,
        parents: Vec<Hash>,
        body: Body,
        key: Option<KeyUpdate>,
        time: u64,
    ) -> Result<Self, OpError> {
        let mut op = Self {
            group,
            parents: parents.iter().map(hex_hash).collect(),
            body,
            key,
            author,
            time,
            sig: String::new(),
        };
        let sig = device
            .sign(&op.signing_bytes())
            .map_err(|e| OpError::Forged(e.to_string()))?;
        op.sig = to_hex(&sig);
        Ok(op)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Self, OpError> {
        if b.len() > MAX_OP_BYTES {
            return Err(OpError::Malformed(format!(
                "{} bytes is too large",
                b.len()
            )));
        }
        serde_json::from_slice(b).map_err(|e| OpError::Malformed(e.to_string()))
    }

    /// The operation's hash: its ID in the log.
    pub fn hash(&self) -> Hash {
        *blake3::hash(&self.encode()).as_bytes()
    }

    pub fn is_genesis(&self) -> bool {
        matches!(self.body, Body::Create { .. })
    }

    pub fn parent_hashes(&self) -> Vec<Hash> {
        self.parents.iter().filter_map(|p| parse_hash(p)).collect()
    }

    pub fn author_device(&self) -> Result<PeerId, OpError> {
        self.author
            .device_id()
            .map_err(|e| OpError::Malformed(e.to_string()))
    }

    /// Checks what can be checked without the log: the form, the author's certificate
    /// and the author device's signature.
    pub fn verify(&self) -> Result<(), OpError> {
        let bad = |m: &str| Err(OpError::Malformed(m.to_owned()));
        if self.parents.len() > MAX_PARENTS || self.parent_hashes().len() != self.parents.len() {
            return bad("bad parents");
        }
        if self.is_genesis() != self.parents.is_empty()
            || self.is_genesis() != self.group.is_empty()
        {
            return bad("only the genesis has no parents and no group");
        }
        if let Body::Create { name, devices, .. } = &self.body
            && (name.is_empty() || name.chars().count() > MAX_NAME || devices.len() > MAX_DEVICES)
        {
            return bad("bad name or too many devices");
        }
        if let Body::Add { devices, .. } = &self.body
            && devices.len() > MAX_DEVICES
        {
            return bad("too many devices");
        }
        self.author
            .verify()
            .map_err(|e| OpError::Forged(format!("author certificate: {e}")))?;
        let device = self.author_device()?;
        let key = public_key_of(&device).ok_or_else(|| OpError::Malformed("device key".into()))?;
        let sig = from_hex(&self.sig).ok_or_else(|| OpError::Malformed("signature".into()))?;
        if !key.verify(&self.signing_bytes(), &sig) {
            return Err(OpError::Forged("bad signature".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes as an operation: refused, or (if they parse) refused by
        /// `verify` for want of a valid signature; never a panic.
        #[test]
        fn arbitrary_ops_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            if let Ok(op) = Op::decode(&bytes) {
                prop_assert!(op.verify().is_err());
            }
        }
    }
}
