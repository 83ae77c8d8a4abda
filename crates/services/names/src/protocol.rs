//! Wire format of names (see `docs/protocols/names.md`): `PEER_ID/name` points at the
//! newest revision of a document. Each revision is a record signed by the name's owner
//! (monotonic revision number, content ID, time), stored in the DHT under
//! `/kith/name/PEER_ID/name` and gossiped on the topic of the same name. Records are
//! checked everywhere they arrive: bad signatures, names or IDs, and revisions older than
//! the one already held (rollback) are refused.

use kith_core::person::{from_hex, public_key_of, to_hex};
use kith_overlay::{Keypair, PeerId};
use serde::{Deserialize, Serialize};

/// Prefix of DHT keys and gossip topics of names.
pub const NAME_PREFIX: &str = "/kith/name/";
/// Largest encoded name record accepted.
pub const MAX_RECORD_BYTES: usize = 4096;
/// Longest name (after the owner).
pub const MAX_NAME_CHARS: usize = 128;
/// Domain separation for signatures (the version of the record format).
const SIGNING_CONTEXT: &str = "kith-name-record-v1";

/// Why a name or a record is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("{0}")]
    BadName(String),
    #[error("record of {0} bytes is over the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed record: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("malformed record: owner {0:?} is not a peer ID")]
    BadOwner(String),
    #[error("malformed record: the owner's key is not an Ed25519 key")]
    OwnerKey,
    #[error("malformed record of {0}: bad content ID")]
    BadContentId(String),
    #[error("malformed record of {0}: a name must point at a file or folder")]
    NotAManifest(String),
    #[error("malformed record of {0}: the signature is not hex")]
    SignatureNotHex(String),
    #[error("forged record for {0}: bad signature")]
    Forged(String),
    #[error("record of {0} stored under another key")]
    WrongKey(String),
    #[error("rollback refused for {name}: revision {revision} is not newer than {held}")]
    Rollback {
        name: String,
        revision: u64,
        held: u64,
    },
    #[error("too many names known (at most {0})")]
    TooManyNames(usize),
    #[error("too many names followed (at most {0})")]
    TooManySubscriptions(usize),
    #[error("cannot sign: {0}")]
    Sign(#[source] libp2p_identity::SigningError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRecord {
    /// Peer ID of the owner: its key signs every revision.
    pub owner: String,
    pub name: String,
    pub revision: u64,
    /// Content ID of this revision.
    pub id: String,
    /// Seconds since the Unix epoch when it was published.
    pub time: u64,
    /// Ed25519 signature, hex.
    pub sig: String,
}

/// Checks a name (the part after `PEER_ID/`).
pub fn check_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(RecordError::BadName(format!(
            "a name has 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(RecordError::BadName(format!(
            "bad name {:?}: use letters, digits, '-', '_' and '.'",
            name.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Splits `PEER_ID/name` (or a bare `name`, owned by `own`).
pub fn parse_full_name(s: &str, own: PeerId) -> Result<(PeerId, String), RecordError> {
    let (owner, name) = match s.split_once('/') {
        Some((p, n)) => (
            p.parse::<PeerId>().map_err(|_| {
                RecordError::BadName(format!(
                    "{:?} is not a peer ID",
                    p.chars().take(64).collect::<String>()
                ))
            })?,
            n,
        ),
        None => (own, s),
    };
    check_name(name)?;
    Ok((owner, name.to_owned()))
}

pub fn full_name(owner: &PeerId, name: &str) -> String {
    format!("{owner}/{name}")
}

/// DHT key (and gossip topic) of a name.
pub fn name_key(owner: &PeerId, name: &str) -> String {
    format!("{NAME_PREFIX}{owner}/{name}")
}

impl NameRecord {
    fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "{SIGNING_CONTEXT}\n{}\n{}\n{}\n{}\n{}",
            self.owner, self.name, self.revision, self.id, self.time
        )
        .into_bytes()
    }

    /// A new revision signed by `key`.
    pub fn sign(
        key: &Keypair,
        name: &str,
        revision: u64,
        id: &kith_core::ContentId,
        time: u64,
    ) -> Result<Self, RecordError> {
        check_name(name)?;
        let mut r = Self {
            owner: key.public().to_peer_id().to_string(),
            name: name.to_owned(),
            revision,
            id: id.to_string(),
            time,
            sig: String::new(),
        };
        let sig = key.sign(&r.signing_bytes()).map_err(RecordError::Sign)?;
        r.sig = to_hex(&sig);
        Ok(r)
    }

    pub fn owner_id(&self) -> Result<PeerId, RecordError> {
        self.owner
            .parse()
            .map_err(|_| RecordError::BadOwner(self.owner.chars().take(64).collect()))
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn key(&self) -> Result<String, RecordError> {
        Ok(name_key(&self.owner_id()?, &self.name))
    }

    pub fn content_id(&self) -> Result<kith_core::ContentId, RecordError> {
        self.id
            .parse()
            .map_err(|_| RecordError::BadContentId(self.full_name()))
    }

    /// Checks the name, the content ID and the owner's signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        check_name(&self.name)?;
        let id = self.content_id()?;
        if id.kind() != kith_core::id::Kind::Manifest {
            return Err(RecordError::NotAManifest(self.full_name()));
        }
        let owner = self.owner_id()?;
        let key = public_key_of(&owner).ok_or(RecordError::OwnerKey)?;
        let sig =
            from_hex(&self.sig).ok_or_else(|| RecordError::SignatureNotHex(self.full_name()))?;
        if !key.verify(&self.signing_bytes(), &sig) {
            return Err(RecordError::Forged(self.full_name()));
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a record (not yet verified); bounded in size.
    pub fn decode(b: &[u8]) -> Result<Self, RecordError> {
        if b.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(b.len()));
        }
        serde_json::from_slice(b).map_err(RecordError::Decode)
    }

    /// Decodes and verifies a record received under `key`.
    pub fn decode_verified(key: &[u8], b: &[u8]) -> Result<Self, RecordError> {
        let r = Self::decode(b)?;
        r.verify()?;
        if r.key()?.as_bytes() != key {
            return Err(RecordError::WrongKey(r.full_name()));
        }
        Ok(r)
    }

    /// Whether `self` may replace `old` (same name): a strictly newer revision, or the very
    /// same record again (republishing).
    pub fn replaces(&self, old: &NameRecord) -> Result<(), RecordError> {
        if self == old || self.revision > old.revision {
            Ok(())
        } else {
            Err(RecordError::Rollback {
                name: self.full_name(),
                revision: self.revision,
                held: old.revision,
            })
        }
    }
}

/// Checks a record arriving under `key` against the one held there, if any.
pub fn validate(key: &[u8], value: &[u8], existing: Option<&[u8]>) -> Result<(), RecordError> {
    let new = NameRecord::decode_verified(key, value)?;
    if let Some(old) = existing.and_then(|b| NameRecord::decode(b).ok()) {
        new.replaces(&old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_undecodable_record_keeps_the_decoder_error() {
        let Err(e) = NameRecord::decode(b"{\"owner\": 1}") else {
            panic!("decoded a record from nonsense");
        };
        let cause = std::error::Error::source(&e);
        assert!(
            cause.is_some_and(|c| c.is::<serde_json::Error>()),
            "no decoder error under {e}"
        );
    }

    fn cid() -> kith_core::ContentId {
        kith_core::ContentId::manifest(b"{}")
    }

    #[test]
    fn signed_records_verify_and_forgeries_do_not() -> Result<(), RecordError> {
        let key = Keypair::generate_ed25519();
        let r = NameRecord::sign(&key, "notes.txt", 3, &cid(), 100)?;
        r.verify()?;
        let k = r.key()?;
        validate(k.as_bytes(), &r.encode(), None)?;

        let mut forged = r.clone();
        forged.revision = 4;
        assert!(matches!(forged.verify(), Err(RecordError::Forged(_))));
        assert!(validate(k.as_bytes(), &forged.encode(), None).is_err());

        // Signed by someone else, claiming the owner's name.
        let other = Keypair::generate_ed25519();
        let mut stolen = NameRecord::sign(&other, "notes.txt", 9, &cid(), 100)?;
        stolen.owner = r.owner.clone();
        assert!(stolen.verify().is_err());

        // Under another key.
        assert!(validate(b"/kith/name/x/y", &r.encode(), None).is_err());
        // Oversized and garbage.
        assert!(validate(k.as_bytes(), &vec![b'x'; 5000], None).is_err());
        assert!(validate(k.as_bytes(), b"garbage", None).is_err());
        Ok(())
    }

    #[test]
    fn rollback_is_refused() -> Result<(), RecordError> {
        let key = Keypair::generate_ed25519();
        let r3 = NameRecord::sign(&key, "doc", 3, &cid(), 100)?;
        let r2 = NameRecord::sign(&key, "doc", 2, &cid(), 200)?;
        let k = r3.key()?;
        let err = validate(k.as_bytes(), &r2.encode(), Some(&r3.encode()));
        assert!(matches!(err, Err(RecordError::Rollback { .. })), "{err:?}");
        // The same record again is fine; a newer one too.
        validate(k.as_bytes(), &r3.encode(), Some(&r3.encode()))?;
        validate(k.as_bytes(), &r3.encode(), Some(&r2.encode()))?;
        Ok(())
    }

    #[test]
    fn names_parse() -> Result<(), RecordError> {
        let me = Keypair::generate_ed25519().public().to_peer_id();
        assert_eq!(parse_full_name("doc", me)?, (me, "doc".into()));
        let other = Keypair::generate_ed25519().public().to_peer_id();
        assert_eq!(
            parse_full_name(&format!("{other}/a.b"), me)?,
            (other, "a.b".into())
        );
        assert!(parse_full_name("nope/doc", me).is_err());
        assert!(parse_full_name("bad name", me).is_err());
        assert!(parse_full_name("", me).is_err());
        Ok(())
    }

    proptest! {
        /// Any bytes under any key: an error or a valid record, never a panic.
        #[test]
        fn arbitrary_records_are_refused_not_a_panic(
            key in proptest::collection::vec(any::<u8>(), 0..80),
            value in proptest::collection::vec(any::<u8>(), 0..6000),
        ) {
            prop_assert!(validate(&key, &value, Some(&value)).is_err());
        }

        #[test]
        fn arbitrary_json_records_are_refused(
            owner in ".{0,60}", name in ".{0,140}", revision in any::<u64>(),
            id in ".{0,70}", time in any::<u64>(), sig in "[0-9a-f]{0,200}",
        ) {
            let r = NameRecord { owner, name, revision, id, time, sig };
            let key = r.key().unwrap_or_default();
            prop_assert!(validate(key.as_bytes(), &r.encode(), None).is_err());
        }
    }
}
