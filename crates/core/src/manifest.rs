//! Manifests: JSON documents that name a file's chunks or a folder's entries.
//!
//! A file manifest lists its chunks in order; a folder manifest lists its entries, each by
//! the ID of its own manifest, so a whole tree has one ID. The format is described in
//! `docs/protocols/manifest.md`. Everything decoded here may come from a hostile peer, so
//! every field is checked.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::chunker::MAX_CHUNK;
use crate::id::{ContentId, Hash, Kind};

/// Largest manifest accepted (about 100k chunks, i.e. files up to ~25 GiB on average).
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// Deepest folder nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Longest entry name, in bytes.
pub const MAX_NAME: usize = 255;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest is not valid: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Manifest {
    File(FileManifest),
    Dir(DirManifest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileManifest {
    pub name: String,
    pub size: u64,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    #[serde(with = "hex32")]
    pub hash: Hash,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirManifest {
    pub name: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub id: ContentId,
    /// Total bytes of file data under this entry.
    pub size: u64,
    /// A file's modification time, seconds since the Unix epoch; fetched files get it.
    /// (Here, in the folder, and not in the file's manifest: the same bytes have the same
    /// ID whenever and wherever they were written.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<u64>,
    /// The file is executable; fetched files get the bit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub exec: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Manifest {
    pub fn name(&self) -> &str {
        match self {
            Manifest::File(f) => &f.name,
            Manifest::Dir(d) => &d.name,
        }
    }

    /// Bytes of file data this manifest stands for. A folder's is what its entries say,
    /// added without overflow: entries that claim more than a `u64` holds do not wrap
    /// around to a small size.
    pub fn size(&self) -> u64 {
        match self {
            Manifest::File(f) => f.size,
            Manifest::Dir(d) => d
                .entries
                .iter()
                .fold(0u64, |sum, e| sum.saturating_add(e.size)),
        }
    }

    /// Canonical encoding; its BLAKE3 hash is the manifest's ID.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn id(&self) -> ContentId {
        ContentId::manifest(&self.encode())
    }

    /// Decodes and checks a manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), ManifestError> {
        check_name(self.name())?;
        match self {
            Manifest::File(f) => {
                let mut total = 0u64;
                for c in &f.chunks {
                    if c.size == 0 || c.size > MAX_CHUNK {
                        return Err(ManifestError::Invalid(format!("chunk size {}", c.size)));
                    }
                    total += u64::from(c.size);
                }
                if total != f.size {
                    return Err(ManifestError::Invalid(format!(
                        "chunks add up to {total} bytes, file says {}",
                        f.size
                    )));
                }
            }
            Manifest::Dir(d) => {
                let mut seen = HashSet::new();
                for e in &d.entries {
                    check_name(&e.name)?;
                    if !seen.insert(e.name.as_str()) {
                        return Err(ManifestError::Invalid(format!(
                            "duplicate entry {:?}",
                            e.name
                        )));
                    }
                    if e.id.kind() != Kind::Manifest {
                        return Err(ManifestError::Invalid(format!(
                            "entry {:?} does not name a manifest",
                            e.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

impl FileManifest {
    /// The identity of the file's bytes, whatever the file is called: the same bytes under
    /// two names have two manifest IDs but one content hash (chunking is deterministic).
    pub fn content_hash(&self) -> Hash {
        let mut h = blake3::Hasher::new_derive_key("kith 2026 file content");
        h.update(&self.size.to_le_bytes());
        for c in &self.chunks {
            h.update(&c.hash);
            h.update(&c.size.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }
}

/// A name is one safe path component.
pub fn check_name(name: &str) -> Result<(), ManifestError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0']);
    if bad {
        return Err(ManifestError::Invalid(format!("unsafe name {name:?}")));
    }
    Ok(())
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&blake3::Hash::from_bytes(*h).to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        blake3::Hash::from_hex(s.as_bytes())
            .map(|h| *h.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Manifest {
        Manifest::File(FileManifest {
            name: "a.txt".into(),
            size: 5,
            chunks: vec![Chunk {
                hash: [7; 32],
                size: 5,
            }],
        })
    }

    #[test]
    fn round_trip_and_stable_id() {
        let m = file();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).ok(), Some(m.clone()));
        assert_eq!(m.id(), ContentId::manifest(&bytes));
        assert_eq!(m.id().kind(), Kind::Manifest);
    }

    #[test]
    fn content_hash_ignores_the_name_only() {
        let Manifest::File(a) = file() else {
            return;
        };
        let renamed = FileManifest {
            name: "other.txt".into(),
            ..a.clone()
        };
        assert_eq!(a.content_hash(), renamed.content_hash());
        let changed = FileManifest {
            chunks: vec![Chunk {
                hash: [8; 32],
                size: 5,
            }],
            ..a.clone()
        };
        assert_ne!(a.content_hash(), changed.content_hash());
    }

    #[test]
    fn rejects_hostile_manifests() {
        let bad = [
            r#"{"type":"file","name":"../x","size":0,"chunks":[]}"#,
            r#"{"type":"file","name":"x","size":9,"chunks":[]}"#,
            r#"{"type":"file","name":"x/y","size":0,"chunks":[]}"#,
            r#"{"type":"dir","name":"d","entries":[{"name":"..","kind":"file","id":"bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4","size":1}]}"#,
            r#"{"type":"blob"}"#,
            "not json",
        ];
        for b in bad {
            assert!(Manifest::decode(b.as_bytes()).is_err(), "{b}");
        }
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::decode(&huge),
            Err(ManifestError::TooLarge)
        ));
    }

    proptest::proptest! {
        /// Arbitrary bytes (and arbitrary JSON shapes) as a manifest from a peer: a valid
        /// manifest or an error, never a panic.
        #[test]
        fn arbitrary_bytes_are_a_manifest_or_an_error(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            if let Ok(m) = Manifest::decode(&bytes) {
                proptest::prop_assert!(m.encode().len() <= MAX_MANIFEST_BYTES);
            }
        }

        #[test]
        fn arbitrary_entries_are_checked(name in ".{0,300}", size in proptest::prelude::any::<u64>(), n in 0usize..4) {
            let entries: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"name":{:?},"kind":"file","id":"{}","size":{size}}}"#, format!("{name}{i}"), ContentId::manifest(&[i as u8])))
                .collect();
            let json = format!(r#"{{"type":"dir","name":{name:?},"entries":[{}]}}"#, entries.join(","));
            if let Ok(m) = Manifest::decode(json.as_bytes()) {
                // A folder is never smaller than any of its entries.
                proptest::prop_assert!(n == 0 || m.size() >= size);
            }
        }
    }

    #[test]
    fn a_folder_whose_entries_overflow_is_as_large_as_can_be() {
        let entry = |i: u8| Entry {
            name: format!("f{i}"),
            kind: EntryKind::File,
            id: ContentId::manifest(&[i]),
            size: u64::MAX / 2 + 1,
            mtime: None,
            exec: false,
        };
        let d = Manifest::Dir(DirManifest {
            name: "d".into(),
            entries: vec![entry(1), entry(2), entry(3)],
        });
        assert_eq!(d.size(), u64::MAX, "not wrapped around to a small size");
    }
}
