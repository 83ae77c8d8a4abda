//! Content IDs: CIDv1 with a BLAKE3-256 multihash, written in base32 (`b…`).
//!
//! Two codecs are used: `raw` (0x55) for chunks and `json` (0x0200) for manifests.

use std::fmt;
use std::str::FromStr;

use cid::Cid;
use multihash::Multihash;

/// Multicodec code of the BLAKE3 hash function.
pub const BLAKE3: u64 = 0x1e;
/// Multicodec code for raw bytes (chunks).
pub const RAW: u64 = 0x55;
/// Multicodec code for JSON (manifests).
pub const JSON: u64 = 0x0200;
/// Longest binary CID accepted from the network or a user.
pub const MAX_CID_BYTES: usize = 64;

/// A 32-byte BLAKE3 digest.
pub type Hash = [u8; 32];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    #[error("not a content ID: {0}")]
    Malformed(String),
    #[error("unsupported content ID: {0}")]
    Unsupported(String),
}

/// What the bytes behind an ID are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A chunk of file data.
    Raw,
    /// A file or folder manifest.
    Manifest,
}

/// A self-verifying content ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId {
    kind: Kind,
    hash: Hash,
}

impl ContentId {
    pub fn new(kind: Kind, hash: Hash) -> Self {
        Self { kind, hash }
    }

    /// The ID of `bytes` as a chunk.
    pub fn raw(bytes: &[u8]) -> Self {
        Self::new(Kind::Raw, *blake3::hash(bytes).as_bytes())
    }

    /// The ID of `bytes` as a manifest.
    pub fn manifest(bytes: &[u8]) -> Self {
        Self::new(Kind::Manifest, *blake3::hash(bytes).as_bytes())
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    /// True when `bytes` are exactly the content this ID names.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        blake3::hash(bytes).as_bytes() == &self.hash
    }

    fn to_cid(self) -> Cid {
        let codec = match self.kind {
            Kind::Raw => RAW,
            Kind::Manifest => JSON,
        };
        // A 32-byte digest always fits the 64-byte multihash.
        let mh = Multihash::<64>::wrap(BLAKE3, &self.hash).unwrap_or_default();
        Cid::new_v1(codec, mh)
    }

    fn from_cid(cid: &Cid) -> Result<Self, IdError> {
        if cid.version() != cid::Version::V1 {
            return Err(IdError::Unsupported("only CIDv1 is used".into()));
        }
        let kind = match cid.codec() {
            RAW => Kind::Raw,
            JSON => Kind::Manifest,
            c => return Err(IdError::Unsupported(format!("codec 0x{c:x}"))),
        };
        let mh = cid.hash();
        if mh.code() != BLAKE3 {
            return Err(IdError::Unsupported(format!(
                "hash 0x{:x} (kith uses BLAKE3)",
                mh.code()
            )));
        }
        let hash: Hash = mh
            .digest()
            .try_into()
            .map_err(|_| IdError::Malformed("BLAKE3 digest must be 32 bytes".into()))?;
        Ok(Self { kind, hash })
    }

    /// Binary CID, as sent on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_cid().to_bytes()
    }

    /// Parses a binary CID received from the network.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        if bytes.len() > MAX_CID_BYTES {
            return Err(IdError::Malformed("too long".into()));
        }
        let cid = Cid::try_from(bytes).map_err(|e| IdError::Malformed(e.to_string()))?;
        Self::from_cid(&cid)
    }

    /// The DHT key under which providers of this content are announced: the multihash,
    /// as IPFS and other libp2p implementations key provider records, so a standard
    /// `findProviders(cid)` finds kith's providers.
    pub fn dht_key(&self) -> Vec<u8> {
        self.to_cid().hash().to_bytes()
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_cid(), f)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.len() > 2 * MAX_CID_BYTES {
            return Err(IdError::Malformed(format!("{s:?} has the wrong length")));
        }
        let cid = Cid::try_from(s).map_err(|e| IdError::Malformed(format!("{s:?}: {e}")))?;
        Self::from_cid(&cid)
    }
}

impl serde::Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_bytes() {
        let id = ContentId::raw(b"hello");
        let s = id.to_string();
        assert!(s.starts_with('b'), "{s}");
        assert_eq!(s.parse::<ContentId>(), Ok(id));
        assert_eq!(ContentId::from_bytes(&id.to_bytes()), Ok(id));
        let m = ContentId::manifest(b"hello");
        assert_ne!(m.to_string(), s);
        assert_eq!(m.to_string().parse::<ContentId>(), Ok(m));
    }

    #[test]
    fn verifies_content() {
        let id = ContentId::raw(b"abc");
        assert!(id.verify(b"abc"));
        assert!(!id.verify(b"abd"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "hello",
            "bafy",
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            &"b".repeat(500),
        ] {
            assert!(bad.parse::<ContentId>().is_err(), "{bad}");
        }
        assert!(ContentId::from_bytes(&[0xff; 10]).is_err());
        assert!(ContentId::from_bytes(&[1u8; 100]).is_err());
        // A sha2-256 CIDv1 is well formed but not ours.
        let sha = Cid::new_v1(
            RAW,
            Multihash::<64>::wrap(0x12, &[0u8; 32]).unwrap_or_default(),
        );
        assert!(matches!(
            sha.to_string().parse::<ContentId>(),
            Err(IdError::Unsupported(_))
        ));
    }

    proptest::proptest! {
        /// Arbitrary bytes as a binary CID from the network, and arbitrary text as one from
        /// a user: an ID or an error, never a panic.
        #[test]
        fn arbitrary_ids_parse_or_fail(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), text in ".{0,120}") {
            if let Ok(id) = ContentId::from_bytes(&bytes) {
                proptest::prop_assert_eq!(ContentId::from_bytes(&id.to_bytes()).ok(), Some(id));
            }
            let _ = text.parse::<ContentId>();
        }
    }
}
