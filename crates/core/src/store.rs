//! The metadata database (redb): where each chunk's bytes live, manifests, shares and
//! download state. File data itself is never copied in: shared files are read in place
//! and verified on every read; downloaded files are written straight to their destination.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::chunker::MAX_CHUNK;
use crate::id::{ContentId, Hash};
use crate::manifest::MAX_MANIFEST_BYTES;

const BLOCKS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("blocks");
const LOCS: MultimapTableDefinition<[u8; 32], &[u8]> = MultimapTableDefinition::new("locations");
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
const SHARES: TableDefinition<&str, &[u8]> = TableDefinition::new("shares");
const DOWNLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("downloads");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("metadata database {path} cannot be opened: {reason}")]
    Open { path: String, reason: String },
    #[error("metadata database error: {0}")]
    Db(String),
    #[error("corrupt record in metadata database: {0}")]
    Corrupt(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Where the bytes of one chunk can be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub path: String,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12 + self.path.len());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(self.path.as_bytes());
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let offset = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
        let len = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
        let path = std::str::from_utf8(b.get(12..)?).ok()?.to_owned();
        Some(Self { path, offset, len })
    }
}

/// What the store knows of one indexed file on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub size: u64,
    pub mtime_ns: u128,
    pub manifest: ContentId,
    /// The share (root ID) this file belongs to.
    pub share: ContentId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareKind {
    File,
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub id: ContentId,
    pub path: String,
    pub name: String,
    pub kind: ShareKind,
    pub size: u64,
    pub files: u64,
    /// Seconds since the Unix epoch.
    pub added: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "error")]
pub enum DownloadState {
    Running,
    Done,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRecord {
    pub id: ContentId,
    pub output: String,
    pub state: DownloadState,
    pub added: u64,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    PutBlock(ContentId, Vec<u8>),
    RemoveBlock(ContentId),
    AddLocation(Hash, Location),
    RemoveLocation(Hash, Location),
    PutFile(String, FileRecord),
    RemoveFile(String),
    PutShare(ShareRecord),
    RemoveShare(ContentId),
    PutDownload(DownloadRecord),
    RemoveDownload(ContentId),
}

pub struct Store {
    db: redb::Database,
    path: PathBuf,
    /// Files found changed on read; drained by the re-indexer.
    stale: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn unjson<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let store = Self {
            db,
            path: path.to_owned(),
            stale: Mutex::new(HashSet::new()),
        };
        // Create the tables so reads never meet a missing table.
        let tx = store.db.begin_write()?;
        tx.open_table(BLOCKS)?;
        tx.open_multimap_table(LOCS)?;
        tx.open_table(FILES)?;
        tx.open_table(SHARES)?;
        tx.open_table(DOWNLOADS)?;
        tx.commit()?;
        Ok(store)
    }

    /// Applies `ops` in one durable transaction: all of them or none.
    pub fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut blocks = tx.open_table(BLOCKS)?;
            let mut locs = tx.open_multimap_table(LOCS)?;
            let mut files = tx.open_table(FILES)?;
            let mut shares = tx.open_table(SHARES)?;
            let mut downloads = tx.open_table(DOWNLOADS)?;
            for op in ops {
                match op {
                    Op::PutBlock(id, bytes) => {
                        blocks.insert(*id.hash(), bytes.as_slice())?;
                    }
                    Op::RemoveBlock(id) => {
                        blocks.remove(*id.hash())?;
                    }
                    Op::AddLocation(h, l) => {
                        locs.insert(h, l.encode().as_slice())?;
                    }
                    Op::RemoveLocation(h, l) => {
                        locs.remove(h, l.encode().as_slice())?;
                    }
                    Op::PutFile(p, r) => {
                        files.insert(p.as_str(), json(&r).as_slice())?;
                    }
                    Op::RemoveFile(p) => {
                        files.remove(p.as_str())?;
                    }
                    Op::PutShare(r) => {
                        shares.insert(r.id.to_string().as_str(), json(&r).as_slice())?;
                    }
                    Op::RemoveShare(id) => {
                        shares.remove(id.to_string().as_str())?;
                    }
                    Op::PutDownload(r) => {
                        downloads.insert(r.id.to_string().as_str(), json(&r).as_slice())?;
                    }
                    Op::RemoveDownload(id) => {
                        downloads.remove(id.to_string().as_str())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A stored manifest block, checked against its ID.
    pub fn block(&self, id: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BLOCKS)?;
        let Some(v) = t.get(*id.hash())? else {
            return Ok(None);
        };
        let bytes = v.value().to_vec();
        if bytes.len() > MAX_MANIFEST_BYTES || !id.verify(&bytes) {
            return Err(StoreError::Corrupt(format!(
                "block {id} does not match its ID"
            )));
        }
        Ok(Some(bytes))
    }

    pub fn locations(&self, hash: &Hash) -> Result<Vec<Location>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_multimap_table(LOCS)?;
        let mut out = Vec::new();
        for v in t.get(*hash)? {
            if let Some(l) = Location::decode(v?.value()) {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// Reads a chunk from wherever it lives and verifies it. Locations whose bytes no
    /// longer match are forgotten and their files queued for re-indexing; wrong bytes are
    /// never returned.
    pub fn read_chunk(&self, hash: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        let mut bad = Vec::new();
        let mut found = None;
        for loc in self.locations(hash)? {
            if loc.len > MAX_CHUNK {
                bad.push(loc);
                continue;
            }
            match read_at(&loc) {
                Ok(buf) if blake3::hash(&buf).as_bytes() == hash => {
                    found = Some(buf);
                    break;
                }
                Ok(_) | Err(_) => bad.push(loc),
            }
        }
        if !bad.is_empty() {
            tracing::warn!(
                chunks = bad.len(),
                "shared file changed on disk; not serving it"
            );
            if let Ok(mut stale) = self.stale.lock() {
                stale.extend(bad.iter().map(|l| l.path.clone()));
            }
            self.apply(
                bad.into_iter()
                    .map(|l| Op::RemoveLocation(*hash, l))
                    .collect(),
            )?;
        }
        Ok(found)
    }

    /// True when some location holds this chunk (not verified).
    pub fn has_chunk(&self, hash: &Hash) -> Result<bool, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_multimap_table(LOCS)?;
        Ok(!t.get(*hash)?.is_empty())
    }

    /// Files found changed since they were indexed.
    pub fn take_stale(&self) -> Vec<String> {
        self.stale
            .lock()
            .map(|mut s| s.drain().collect())
            .unwrap_or_default()
    }

    pub fn file(&self, path: &str) -> Result<Option<FileRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(FILES)?;
        t.get(path)?.map(|v| unjson(v.value())).transpose()
    }

    /// All indexed files that belong to `share`.
    pub fn files_of(&self, share: &ContentId) -> Result<Vec<(String, FileRecord)>, StoreError> {
        let mut all = self.files()?;
        all.retain(|(_, r)| &r.share == share);
        Ok(all)
    }

    /// Every indexed file, in one pass over the table.
    pub fn files(&self) -> Result<Vec<(String, FileRecord)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(FILES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_owned(), unjson(v.value())?));
        }
        Ok(out)
    }

    pub fn share(&self, id: &ContentId) -> Result<Option<ShareRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SHARES)?;
        t.get(id.to_string().as_str())?
            .map(|v| unjson(v.value()))
            .transpose()
    }

    pub fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SHARES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(unjson(row?.1.value())?);
        }
        Ok(out)
    }

    pub fn download(&self, id: &ContentId) -> Result<Option<DownloadRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DOWNLOADS)?;
        t.get(id.to_string().as_str())?
            .map(|v| unjson(v.value()))
            .transpose()
    }

    pub fn downloads(&self) -> Result<Vec<DownloadRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DOWNLOADS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(unjson(row?.1.value())?);
        }
        Ok(out)
    }
}

fn read_at(loc: &Location) -> std::io::Result<Vec<u8>> {
    let f = File::open(&loc.path)?;
    let mut buf = vec![0u8; loc.len as usize];
    f.read_exact_at(&mut buf, loc.offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kith-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[test]
    fn never_serves_changed_bytes() -> Result<(), StoreError> {
        let d = tmp("changed");
        let file = d.join("f");
        let _ = std::fs::write(&file, b"hello world");
        let store = Store::open(&d.join("db"))?;
        let hash = *blake3::hash(b"world").as_bytes();
        let loc = Location {
            path: file.display().to_string(),
            offset: 6,
            len: 5,
        };
        store.apply(vec![Op::AddLocation(hash, loc)])?;
        assert_eq!(store.read_chunk(&hash)?.as_deref(), Some(&b"world"[..]));
        let _ = std::fs::write(&file, b"hello WORLD");
        assert_eq!(store.read_chunk(&hash)?, None);
        assert!(!store.has_chunk(&hash)?);
        assert_eq!(store.take_stale(), vec![file.display().to_string()]);
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }

    #[test]
    fn records_survive_reopen() -> Result<(), StoreError> {
        let d = tmp("reopen");
        let id = ContentId::manifest(b"m");
        {
            let store = Store::open(&d.join("db"))?;
            store.apply(vec![
                Op::PutBlock(id, b"m".to_vec()),
                Op::PutDownload(DownloadRecord {
                    id,
                    output: "/x".into(),
                    state: DownloadState::Running,
                    added: 1,
                }),
            ])?;
        }
        let store = Store::open(&d.join("db"))?;
        assert_eq!(store.block(&id)?, Some(b"m".to_vec()));
        assert_eq!(store.downloads()?.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }

    #[test]
    fn corrupt_database_is_a_clear_error() {
        let d = tmp("corrupt");
        let p = d.join("db");
        let _ = std::fs::write(&p, vec![0xabu8; 8192]);
        let e = Store::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cannot be opened"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
