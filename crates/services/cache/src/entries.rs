//! What the cache holds and why, kept in `cache.json`, and what it evicts: the least
//! recently served entry first, never a pinned one, never one still being fetched. Content
//! this node shares of its own is never an entry, so it is never evicted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kith_core::ContentId;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Why an entry is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// The user pinned it.
    Pinned,
    /// `source` saw `demand` peers of `region` ask for it and asked this node, in that
    /// region, to fetch it ahead.
    Prefetch {
        source: String,
        region: String,
        demand: u32,
    },
}

/// Where the entry's content stands: `fetching`, `ready` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = CacheState)]
pub enum Fill {
    Fetching,
    Ready,
    Failed,
}

impl Fill {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Fill::Fetching => "fetching",
            Fill::Ready => "ready",
            Fill::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: ContentId,
    pub name: Option<String>,
    /// Its size: for a prefetch, as its root manifest says (read before it is fetched;
    /// the most its fill may bring); for a pin, 0 until it is here; once it is here, as
    /// fetched.
    pub bytes: u64,
    pub pinned: bool,
    pub why: Why,
    pub fill: Fill,
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub added_ms: u64,
    pub last_served_ms: u64,
    /// Downloads of it that started here.
    pub served: u64,
}

impl Entry {
    pub fn new(id: ContentId, bytes: u64, pinned: bool, why: Why, now: u64) -> Self {
        Self {
            id,
            name: None,
            bytes,
            pinned,
            why,
            fill: Fill::Fetching,
            error: None,
            added_ms: now,
            last_served_ms: now,
            served: 0,
        }
    }
}

/// Every entry, by content ID.
#[derive(Debug, Default, Clone)]
pub struct Entries {
    map: BTreeMap<ContentId, Entry>,
}

impl Entries {
    /// The entries saved in `path` (none when there is no file yet).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let list: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            map: list.into_iter().map(|e| (e.id, e)).collect(),
        })
    }

    pub fn list(&self) -> Vec<Entry> {
        self.map.values().cloned().collect()
    }

    pub fn get(&self, id: &ContentId) -> Option<&Entry> {
        self.map.get(id)
    }

    pub fn get_mut(&mut self, id: &ContentId) -> Option<&mut Entry> {
        self.map.get_mut(id)
    }

    pub fn insert(&mut self, e: Entry) {
        self.map.insert(e.id, e);
    }

    pub fn remove(&mut self, id: &ContentId) -> Option<Entry> {
        self.map.remove(id)
    }

    /// Bytes the entries take (or will, once fetched); failed ones take none.
    pub fn used(&self) -> u64 {
        self.map
            .values()
            .filter(|e| e.fill != Fill::Failed)
            .map(|e| e.bytes)
            .sum()
    }

    pub fn pinned_bytes(&self) -> u64 {
        self.map
            .values()
            .filter(|e| e.pinned && e.fill != Fill::Failed)
            .map(|e| e.bytes)
            .sum()
    }

    /// Notes a download of `id` starting here; false when it is no entry.
    pub fn served(&mut self, id: &ContentId, now: u64) -> bool {
        match self.map.get_mut(id) {
            Some(e) => {
                e.served += 1;
                e.last_served_ms = now;
                true
            }
            None => false,
        }
    }

    /// Whether `bytes` more fit within `capacity` once every entry that may go is gone.
    pub fn room_for(&self, bytes: u64, capacity: u64) -> bool {
        let kept: u64 = self
            .map
            .values()
            .filter(|e| e.pinned || e.fill == Fill::Fetching)
            .map(|e| e.bytes)
            .sum();
        kept.saturating_add(bytes) <= capacity
    }

    /// The entries to evict so that the rest fit within `capacity`: failed ones, then
    /// ready, unpinned ones, least recently served first.
    pub fn to_evict(&self, capacity: u64) -> Vec<ContentId> {
        let mut out: Vec<ContentId> = self
            .map
            .values()
            .filter(|e| e.fill == Fill::Failed && !e.pinned)
            .map(|e| e.id)
            .collect();
        let mut used = self.used();
        if used <= capacity {
            return out;
        }
        let mut lru: Vec<&Entry> = self
            .map
            .values()
            .filter(|e| !e.pinned && e.fill == Fill::Ready)
            .collect();
        lru.sort_by_key(|e| (e.last_served_ms, e.added_ms));
        for e in lru {
            if used <= capacity {
                break;
            }
            used = used.saturating_sub(e.bytes);
            out.push(e.id);
        }
        out
    }
}

/// Writes the entries to `path` (a new file, then renamed over the old one).
pub fn save(path: &Path, list: &[Entry]) -> Result<(), Error> {
    let io = |e| Error::io(path, e);
    let tmp: PathBuf = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(list).map_err(Error::Encode)?;
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, bytes: u64, served_at: u64, pinned: bool, fill: Fill) -> Entry {
        let mut e = Entry::new(ContentId::manifest(&[n]), bytes, pinned, Why::Pinned, 0);
        e.last_served_ms = served_at;
        e.fill = fill;
        e
    }

    #[test]
    fn evicts_least_recently_served_and_never_pinned_or_fetching() {
        let mut es = Entries::default();
        let old = entry(1, 40, 10, false, Fill::Ready);
        let pinned_old = entry(2, 40, 5, true, Fill::Ready);
        let recent = entry(3, 40, 30, false, Fill::Ready);
        let fetching = entry(4, 40, 1, false, Fill::Fetching);
        for e in [&old, &pinned_old, &recent, &fetching] {
            es.insert(e.clone());
        }
        assert_eq!(es.used(), 160);
        assert!(es.to_evict(160).is_empty());
        assert_eq!(es.to_evict(150), vec![old.id]);
        assert_eq!(es.to_evict(80), vec![old.id, recent.id]);
        // Nothing else may go, even when the pinned and fetching ones are over capacity.
        assert_eq!(es.to_evict(0), vec![old.id, recent.id]);
        // Served again: it becomes the most recent.
        assert!(es.served(&old.id, 100));
        assert_eq!(es.to_evict(150), vec![recent.id]);
        assert!(!es.served(&ContentId::manifest(b"none"), 1));
    }

    #[test]
    fn room_counts_what_cannot_be_evicted() {
        let mut es = Entries::default();
        es.insert(entry(1, 60, 1, true, Fill::Ready));
        es.insert(entry(2, 30, 1, false, Fill::Ready));
        assert!(es.room_for(40, 100));
        assert!(!es.room_for(41, 100));
        es.insert(entry(3, 10, 1, false, Fill::Failed));
        assert_eq!(es.used(), 90);
        assert_eq!(es.to_evict(1000), vec![ContentId::manifest(&[3])]);
    }

    #[test]
    fn saved_entries_load_back_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cache.json");
        assert!(
            Entries::load(&path)
                .map(|e| e.list().is_empty())
                .unwrap_or(false)
        );
        let e = entry(7, 5, 9, false, Fill::Ready);
        save(&path, std::slice::from_ref(&e)).unwrap_or_else(|e| panic!("{e}"));
        let back = Entries::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.list(), vec![e]);
        std::fs::write(&path, b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(Entries::load(&path), Err(Error::Corrupt { .. })));
    }
}
