//! The owner's index: what it stored (objects: files and folders, each a list of chunk
//! hashes), where (segments: a key, a k-of-n shape, and the holder of each share), which
//! chunk lives in which segment, and how its holders have done. It is kept in
//! `index.json` and, sealed with the owner's index key, in the vault itself, so a new
//! device of the person restores it from the person key alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use kith_core::sync::write_atomic;
use serde::{Deserialize, Serialize};

/// The index could not be read, or does not hold what it should.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} does not decode: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("a segment key is malformed")]
    SegmentKey,
    #[error("chunk {0:.12} is in no segment")]
    NoSegment(String),
    #[error("segment {0} is missing")]
    SegmentMissing(u64),
    #[error("chunk {0:.12} does not match its hash")]
    ChunkMismatch(String),
    #[error("a stored path leaves the folder: {0}")]
    PathLeaves(String),
    #[error("share {share} of segment {seg} is gone")]
    ShareGone { seg: u64, share: usize },
    #[error("the rebuilt share does not match its name")]
    RebuiltMismatch,
    #[error("the group's record names another object")]
    OtherObject,
}

impl IndexError {
    pub(crate) fn decode(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Decode { what, source }
    }

    pub(crate) fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Encode { what, source }
    }
}

/// What an object is: `file`, `folder` or `backup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = VaultKind)]
pub enum Kind {
    File,
    Folder,
    Backup,
}

impl Kind {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Folder => "folder",
            Kind::Backup => "backup",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the object's root ("" for a single file).
    pub path: String,
    pub size: u64,
    /// BLAKE3 of each chunk (hex), in order.
    pub chunks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// Milliseconds since the Unix epoch (orders backups made within one second).
    #[serde(default)]
    pub created_ms: u64,
    pub size: u64,
    pub k: u8,
    pub n: u8,
    pub files: Vec<FileEntry>,
    /// Members of this group may restore it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLoc {
    /// The share's name (its hash-tree root, hex).
    pub name: String,
    pub holder: String,
    pub size: u64,
    /// When it was last audited, or placed (its holder checked it against its name then);
    /// what the audit found is in `missing_since` and `bad`.
    #[serde(default)]
    pub last_audit: u64,
    /// Since when its holder has been unreachable.
    #[serde(default)]
    pub missing_since: Option<u64>,
    /// It failed an audit or sent wrong bytes: repair it.
    #[serde(default)]
    pub bad: bool,
    /// The secret order its leaves are audited in (0: not chosen yet); see
    /// [`crate::audit::leaves_to_ask`].
    #[serde(default)]
    pub rotation: u64,
    /// Audits it passed: where the rotation is.
    #[serde(default)]
    pub cursor: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The segment's key (hex).
    pub key: String,
    /// Plain bytes in it.
    pub plain: u64,
    pub k: u8,
    pub n: u8,
    pub shares: Vec<ShareLoc>,
    #[serde(default)]
    pub repairs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLoc {
    pub seg: u64,
    pub offset: u32,
    pub len: u32,
}

/// How a holder has done for this owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRecord {
    /// Audits passed.
    pub passed: u64,
    /// Shares lost or wrong: a holder with a fault gets no more shares.
    pub faults: u64,
}

/// A folder backed up on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub dir: String,
    pub every: u64,
    pub last: u64,
    #[serde(default)]
    pub k: u8,
    #[serde(default)]
    pub n: u8,
}

/// Where a blob stored in the vault is (the index's copy, a group's descriptor): its
/// size and segments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct IndexRef {
    pub size: u64,
    pub segments: Vec<Segment>,
}

impl IndexRef {
    /// Each of its shares, as (holder, share).
    pub fn shares(&self) -> HashSet<(String, String)> {
        shares_of(&self.segments)
    }
}

/// Each share of these segments, as (holder, share).
pub(crate) fn shares_of(segments: &[Segment]) -> HashSet<(String, String)> {
    segments
        .iter()
        .flat_map(|g| &g.shares)
        .map(|s| (s.holder.clone(), s.name.clone()))
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    pub objects: BTreeMap<String, Object>,
    pub segments: BTreeMap<u64, Segment>,
    pub chunks: HashMap<String, ChunkLoc>,
    pub holders: BTreeMap<String, HolderRecord>,
    /// Objects removed (so a merge with another device's index does not bring them back).
    pub removed: BTreeSet<String>,
    pub plans: BTreeMap<String, Plan>,
    pub repairs: u64,
    pub last_audit: u64,
}

impl Index {
    /// Loads `index.json`, or an empty index. Blocking.
    pub fn load(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join("index.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(IndexError::decode("index.json")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(IndexError::Read { path, source }),
        }
    }

    /// Writes `index.json` atomically. Blocking.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let b = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::create_dir_all(dir)?;
        write_atomic(&dir.join("index.json"), &b)
    }

    /// Objects with this ID, or else with this name (newest first).
    pub fn find(&self, what: &str) -> Option<&Object> {
        self.objects.get(what).or_else(|| {
            self.objects
                .values()
                .filter(|o| o.name == what)
                .max_by_key(|o| o.created)
        })
    }

    /// Bytes of shares each holder keeps for this owner.
    pub fn stored_at(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in self.segments.values().flat_map(|s| &s.shares) {
            *out.entry(s.holder.clone()).or_insert(0) += s.size;
        }
        out
    }

    /// The segments an object's chunks live in.
    pub fn segments_of(&self, o: &Object) -> BTreeSet<u64> {
        o.files
            .iter()
            .flat_map(|f| &f.chunks)
            .filter_map(|c| self.chunks.get(c).map(|l| l.seg))
            .collect()
    }

    /// Removes an object; returns the segments no other object needs any more (their
    /// chunks are forgotten with them).
    pub fn remove(&mut self, id: &str) -> Vec<(u64, Segment)> {
        if self.objects.remove(id).is_none() {
            return Vec::new();
        }
        self.removed.insert(id.to_owned());
        let live: BTreeSet<u64> = self
            .objects
            .values()
            .flat_map(|o| self.segments_of(o))
            .collect();
        let dead: Vec<u64> = self
            .segments
            .keys()
            .filter(|s| !live.contains(s))
            .copied()
            .collect();
        self.chunks.retain(|_, l| live.contains(&l.seg));
        dead.into_iter()
            .filter_map(|s| self.segments.remove(&s).map(|g| (s, g)))
            .collect()
    }

    /// Takes in another device's index: objects, segments and chunks it has that this one
    /// lacks (removals win). Returns true when anything changed.
    pub fn merge(&mut self, other: Index) -> bool {
        let before = (self.objects.len(), self.segments.len(), self.removed.len());
        self.removed.extend(other.removed);
        for (id, o) in other.objects {
            if !self.removed.contains(&id) {
                self.objects.entry(id).or_insert(o);
            }
        }
        let removed = self.removed.clone();
        self.objects.retain(|id, _| !removed.contains(id));
        for (s, g) in other.segments {
            self.segments.entry(s).or_insert(g);
        }
        for (c, l) in other.chunks {
            self.chunks.entry(c).or_insert(l);
        }
        for (h, r) in other.holders {
            self.holders.entry(h).or_insert(r);
        }
        for (d, p) in other.plans {
            self.plans.entry(d).or_insert(p);
        }
        self.repairs = self.repairs.max(other.repairs);
        before != (self.objects.len(), self.segments.len(), self.removed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(id: &str, chunks: &[&str]) -> Object {
        Object {
            id: id.into(),
            name: id.into(),
            kind: Kind::File,
            created: 1,
            created_ms: 1000,
            group: None,
            size: 0,
            k: 1,
            n: 2,
            files: vec![FileEntry {
                path: String::new(),
                size: 0,
                chunks: chunks.iter().map(|c| (*c).to_owned()).collect(),
            }],
        }
    }

    fn segment() -> Segment {
        Segment {
            key: String::new(),
            plain: 0,
            k: 1,
            n: 2,
            shares: Vec::new(),
            repairs: 0,
        }
    }

    #[test]
    fn removing_an_object_frees_only_segments_nobody_else_needs() {
        let mut ix = Index::default();
        ix.objects.insert("a".into(), object("a", &["c1", "c2"]));
        ix.objects.insert("b".into(), object("b", &["c2", "c3"]));
        for (c, s) in [("c1", 1), ("c2", 2), ("c3", 2)] {
            ix.chunks.insert(
                c.into(),
                ChunkLoc {
                    seg: s,
                    offset: 0,
                    len: 1,
                },
            );
        }
        ix.segments.insert(1, segment());
        ix.segments.insert(2, segment());
        let freed: Vec<u64> = ix.remove("a").into_iter().map(|(s, _)| s).collect();
        assert_eq!(freed, vec![1]);
        assert!(ix.chunks.contains_key("c2") && !ix.chunks.contains_key("c1"));
        let mut other = Index::default();
        other.objects.insert("a".into(), object("a", &["c1"]));
        ix.merge(other);
        assert!(!ix.objects.contains_key("a"), "a removal wins over a merge");
    }
}
