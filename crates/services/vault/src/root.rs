//! The root record: where an owner's index is, in the DHT under
//! `/kith/vault/root/<signer>`, sealed with the owner's index key and signed by the signer
//! (the person key where this device holds it, else the device key). Only the signer
//! can replace it, never with an older one; only a holder of the key can read it.

use std::sync::Arc;

use kith_core::person::{from_hex, public_key_of, to_hex};
use kith_overlay::{Keypair, PeerId, RecordValidator, Rejected};
use serde::{Deserialize, Serialize};

use crate::protocol::ROOT_PREFIX;

const KEY_INFO: &str = "kith vault index key v1";
/// Largest root record (a DHT packet is 64 KiB).
const MAX_RECORD: usize = 48 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRecord {
    pub seq: u64,
    /// The index's location, sealed with the index key (hex).
    pub sealed: String,
    pub sig: String,
}

/// Why the vault's key did not sign, or did not open, what it should have.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot sign: {0}")]
    Sign(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot encode the root record: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the root record is malformed")]
    Malformed,
    #[error("the vault index does not open with this device's key")]
    WrongKey,
}

fn signed_bytes(key: &[u8], seq: u64, sealed: &str) -> Vec<u8> {
    let mut b = key.to_vec();
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(sealed.as_bytes());
    b
}

/// The key that signs the root record and from which the index key comes.
#[derive(Clone)]
pub struct Signer {
    key: Keypair,
}

impl Signer {
    pub fn new(key: Keypair) -> Self {
        Self { key }
    }

    pub fn id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// The index key: the same on every device that holds the signing key (Ed25519
    /// signatures are deterministic), and known to nobody else.
    pub fn index_key(&self) -> Result<[u8; 32], KeyError> {
        let sig = self.sign(KEY_INFO.as_bytes())?;
        Ok(blake3::derive_key(KEY_INFO, &sig))
    }

    pub fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.key
            .sign(bytes)
            .map_err(|e| KeyError::Sign(Box::new(e)))
    }

    pub fn record_key(&self) -> Vec<u8> {
        format!("{ROOT_PREFIX}{}", self.id()).into_bytes()
    }

    /// A root record sealing `location` (already sealed bytes).
    pub fn record(&self, seq: u64, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let sealed = to_hex(sealed);
        let sig = self.sign(&signed_bytes(&self.record_key(), seq, &sealed))?;
        serde_json::to_vec(&RootRecord {
            seq,
            sealed,
            sig: to_hex(&sig),
        })
        .map_err(KeyError::Encode)
    }
}

/// Parses and checks a root record stored under `key`.
pub fn check(key: &[u8], value: &[u8]) -> Result<RootRecord, Rejected> {
    let bad = |w: &str| Rejected(format!("vault root: {w}"));
    if value.len() > MAX_RECORD {
        return Err(bad("too large"));
    }
    let id = std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix(ROOT_PREFIX))
        .and_then(|s| s.parse::<PeerId>().ok())
        .ok_or_else(|| bad("key is not a signer ID"))?;
    let public = public_key_of(&id).ok_or_else(|| bad("the signer ID carries no key"))?;
    let r: RootRecord = serde_json::from_slice(value).map_err(|e| bad(&e.to_string()))?;
    let sig = from_hex(&r.sig).ok_or_else(|| bad("signature is not hex"))?;
    if !public.verify(&signed_bytes(key, r.seq, &r.sealed), &sig) {
        return Err(bad("bad signature"));
    }
    Ok(r)
}

pub struct Validator;

impl RecordValidator for Validator {
    fn validate(&self, key: &[u8], value: &[u8], existing: Option<&[u8]>) -> Result<(), Rejected> {
        let r = check(key, value)?;
        if let Some(old) = existing.and_then(|e| check(key, e).ok())
            && old.seq > r.seq
        {
            return Err(Rejected("vault root: older than the one stored".into()));
        }
        Ok(())
    }
}

pub fn validator() -> Arc<dyn RecordValidator> {
    Arc::new(Validator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_verify_and_never_roll_back() -> Result<(), KeyError> {
        let s = Signer::new(Keypair::generate_ed25519());
        let key = s.record_key();
        let new = s.record(5, b"where")?;
        let old = s.record(4, b"before")?;
        let v = Validator;
        assert!(v.validate(&key, &new, None).is_ok());
        assert!(v.validate(&key, &old, Some(&new)).is_err());
        let other = Signer::new(Keypair::generate_ed25519());
        let forged = other.record(9, b"mine")?;
        assert!(
            v.validate(&key, &forged, None).is_err(),
            "signed by another key"
        );
        assert_eq!(s.index_key()?, Signer::new(s.key.clone()).index_key()?);
        assert_ne!(s.index_key()?, other.index_key()?);
        Ok(())
    }
}
