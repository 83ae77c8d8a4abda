//! The store engine (redb): manifests and other content blocks, where each chunk's bytes
//! live, and record tables that services define for their own state ([`Table`]). File
//! data itself is never copied in: shared files are read in place and verified on every
//! read; downloaded files are written straight to their destination.
//!
//! The database is checked when it is opened. A damaged one is moved aside by
//! [`Store::open_or_recover`] so the node can start again and services rebuild what they
//! can (see `docs/architecture.md`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::chunker::MAX_CHUNK;
use crate::id::{ContentId, Hash};
use crate::manifest::MAX_MANIFEST_BYTES;

mod error;
pub use error::{Damage, StoreError, io_err};

const BLOCKS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("blocks");
const LOCS: MultimapTableDefinition<[u8; 32], &[u8]> = MultimapTableDefinition::new("locations");

/// A record table a service keeps in the store: string keys, byte values (the service
/// chooses the encoding). Names are namespaced by the service, e.g. `share/files`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Table(&'static str);

impl Table {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub fn name(&self) -> &'static str {
        self.0
    }

    fn def(&self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.0)
    }
}

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

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    PutBlock(ContentId, Vec<u8>),
    RemoveBlock(ContentId),
    AddLocation(Hash, Location),
    RemoveLocation(Hash, Location),
    /// A record in a service's table.
    Put(Table, String, Vec<u8>),
    Remove(Table, String),
}

pub struct Store {
    db: redb::Database,
    path: PathBuf,
    /// Files found changed on read; drained by the re-indexer.
    stale: Mutex<HashSet<String>>,
    /// Files whose every chunk was verified while the file had this stamp: those chunks
    /// are served without hashing them again as long as the stamp is unchanged.
    trusted: Mutex<Trusted>,
}

/// Chunk locations found wrong while reading chunks, to forget together.
#[derive(Debug, Default)]
pub struct Sweep {
    bad: Vec<(Hash, Location)>,
    /// Files found missing: their other locations are wrong too.
    missing: HashSet<String>,
}

impl Sweep {
    /// Treats the file at `path` as missing: its recorded chunks are forgotten unread
    /// (a file the caller just created in place of a deleted one holds none of them).
    pub fn assume_missing(&mut self, path: String) {
        self.missing.insert(path);
    }
}

/// Most chunks trusted at once (16 bytes each: 4 MiB, 64 GiB of files at the average
/// chunk size); chunks of files beyond it are hashed on every read.
const MAX_TRUSTED: usize = 1 << 18;

#[derive(Default)]
struct Trusted {
    files: HashMap<String, (Stamp, Vec<(u64, u64)>)>,
    chunks: usize,
}

impl Trusted {
    /// True when `loc` is one of the verified chunks of its file and the file still has
    /// the stamp it had then.
    fn covers(&self, loc: &Location, hash: &Hash, stamp: Stamp) -> bool {
        self.files.get(&loc.path).is_some_and(|(s, chunks)| {
            *s == stamp
                && chunks
                    .binary_search_by_key(&loc.offset, |(o, _)| *o)
                    .ok()
                    .and_then(|i| chunks.get(i))
                    .is_some_and(|(_, h)| *h == prefix(hash))
        })
    }

    fn remove(&mut self, path: &str) {
        if let Some((_, c)) = self.files.remove(path) {
            self.chunks -= c.len();
        }
    }
}

fn prefix(hash: &Hash) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(hash.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(b)
}

/// What identifies one version of a file on disk: any write changes the change time, and
/// a replaced file has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    pub fn of_path(path: &Path) -> std::io::Result<Self> {
        Ok(Self::of(&std::fs::metadata(path)?))
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Runs `f`, turning a panic inside the database library into an error: a damaged file
/// can make redb panic instead of returning one.
fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let _quiet = crate::tasks::HandledPanics::enter();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(StoreError::Corrupt(panic_text(p.as_ref()))))
}

/// What a panic said.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the database library panicked".to_owned())
}

fn open_db(path: &Path) -> Result<redb::Database, StoreError> {
    let shown = path.display().to_string();
    let mut db = match redb::Database::create(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::InUse { path: shown });
        }
        Err(e @ redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))) => {
            return Err(StoreError::Damaged {
                path: shown,
                why: e.into(),
            });
        }
        Err(source) => {
            return Err(StoreError::Open {
                path: shown,
                source,
            });
        }
    };
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _quiet = crate::tasks::HandledPanics::enter();
        db.check_integrity()
    }));
    match check {
        Ok(Ok(true)) => Ok(db),
        Ok(Ok(false)) => Err(StoreError::Damaged {
            path: shown,
            why: Damage::Integrity,
        }),
        Ok(Err(e)) => Err(StoreError::Damaged {
            path: shown,
            why: e.into(),
        }),
        Err(p) => Err(StoreError::Damaged {
            path: shown,
            why: Damage::Panicked(panic_text(p.as_ref())),
        }),
    }
}

impl Store {
    /// Opens (or creates) the database at `path` and checks its integrity.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = guarded(|| open_db(path)).map_err(|e| match e {
            StoreError::Corrupt(reason) => StoreError::Damaged {
                path: path.display().to_string(),
                why: Damage::Panicked(reason),
            },
            e => e,
        })?;
        let store = Self {
            db,
            path: path.to_owned(),
            stale: Mutex::new(HashSet::new()),
            trusted: Mutex::new(Trusted::default()),
        };
        // Create the engine's tables so reads never meet a missing table.
        let tx = store.db.begin_write()?;
        tx.open_table(BLOCKS)?;
        tx.open_multimap_table(LOCS)?;
        tx.commit()?;
        Ok(store)
    }

    /// Opens the database; a damaged one (or one that is not a database at all) is moved
    /// aside to `NAME.damaged-SECONDS` and a new one is created in its place. Returns
    /// where the damaged file went, so the caller can say so and rebuild.
    pub fn open_or_recover(path: &Path) -> Result<(Self, Option<PathBuf>), StoreError> {
        match Self::open(path) {
            Ok(s) => Ok((s, None)),
            Err(StoreError::Damaged { .. } | StoreError::Open { .. }) if path.exists() => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(format!(".damaged-{}", now_secs()));
                let aside = PathBuf::from(aside);
                std::fs::rename(path, &aside).map_err(|source| StoreError::MoveAside {
                    path: path.display().to_string(),
                    source,
                })?;
                Ok((Self::open(path)?, Some(aside)))
            }
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `ops` in one durable transaction: all of them or none.
    pub fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        guarded(|| {
            let tx = self.db.begin_write()?;
            {
                let mut blocks = tx.open_table(BLOCKS)?;
                let mut locs = tx.open_multimap_table(LOCS)?;
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
                        Op::Put(t, k, v) => {
                            tx.open_table(t.def())?.insert(k.as_str(), v.as_slice())?;
                        }
                        Op::Remove(t, k) => {
                            tx.open_table(t.def())?.remove(k.as_str())?;
                        }
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// A record of a service's table.
    pub fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(|| {
            let tx = self.db.begin_read()?;
            let t = match tx.open_table(table.def()) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    /// Every record of a service's table, in key order.
    pub fn scan(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        guarded(|| {
            let tx = self.db.begin_read()?;
            let t = match tx.open_table(table.def()) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// A stored manifest block, checked against its ID.
    pub fn block(&self, id: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = guarded(|| {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(BLOCKS)?;
            Ok(t.get(*id.hash())?.map(|v| v.value().to_vec()))
        })?;
        let Some(bytes) = bytes else { return Ok(None) };
        if bytes.len() > MAX_MANIFEST_BYTES || !id.verify(&bytes) {
            return Err(StoreError::Corrupt(format!(
                "block {id} does not match its ID"
            )));
        }
        Ok(Some(bytes))
    }

    pub fn locations(&self, hash: &Hash) -> Result<Vec<Location>, StoreError> {
        guarded(|| {
            let tx = self.db.begin_read()?;
            let t = tx.open_multimap_table(LOCS)?;
            let mut out = Vec::new();
            for v in t.get(*hash)? {
                if let Some(l) = Location::decode(v?.value()) {
                    out.push(l);
                }
            }
            Ok(out)
        })
    }

    /// Reads a chunk from wherever it lives and verifies it (a chunk of a trusted file
    /// whose stamp is the same before and after the read is not hashed again). Locations
    /// whose bytes no longer match are forgotten and their files queued for re-indexing;
    /// wrong bytes are never returned.
    pub fn read_chunk(&self, hash: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        let mut sweep = Sweep::default();
        let found = self.read_chunk_in(hash, &mut sweep)?;
        self.forget(sweep)?;
        Ok(found)
    }

    /// [`Store::read_chunk`] for one of many chunks read together: the locations found
    /// wrong are gathered in `sweep` and forgotten in one transaction by
    /// [`Store::forget`] (one commit per chunk made reading a deleted file's chunks cost
    /// a disk sync each). A file already found missing is not opened again.
    pub fn read_chunk_in(
        &self,
        hash: &Hash,
        sweep: &mut Sweep,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        for loc in self.locations(hash)? {
            if loc.len > MAX_CHUNK || sweep.missing.contains(&loc.path) {
                sweep.bad.push((*hash, loc));
                continue;
            }
            match read_at(&loc) {
                Ok((buf, before, after))
                    if before == after
                        && crate::sync::recover(&self.trusted).covers(&loc, hash, before) =>
                {
                    return Ok(Some(buf));
                }
                Ok((buf, _, _)) if blake3::hash(&buf).as_bytes() == hash => {
                    return Ok(Some(buf));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    sweep.missing.insert(loc.path.clone());
                    sweep.bad.push((*hash, loc));
                }
                _ => sweep.bad.push((*hash, loc)),
            }
        }
        Ok(None)
    }

    /// Forgets the locations a sweep found wrong (one transaction), stops trusting their
    /// files and queues them for re-indexing.
    pub fn forget(&self, sweep: Sweep) -> Result<(), StoreError> {
        if sweep.bad.is_empty() {
            return Ok(());
        }
        {
            let mut t = crate::sync::recover(&self.trusted);
            for (_, l) in &sweep.bad {
                t.remove(&l.path);
            }
        }
        crate::sync::recover(&self.stale).extend(sweep.bad.iter().map(|(_, l)| l.path.clone()));
        self.apply(
            sweep
                .bad
                .into_iter()
                .map(|(h, l)| Op::RemoveLocation(h, l))
                .collect(),
        )
    }

    /// The `chunks` (hash, offset) of the file at `path` were verified while the file had
    /// `stamp` (read in full between two equal stamps). Replaces what was trusted there.
    pub fn trust(&self, path: &str, stamp: Stamp, chunks: &[(Hash, u64)]) {
        let mut t = crate::sync::recover(&self.trusted);
        t.remove(path);
        if t.chunks + chunks.len() > MAX_TRUSTED {
            return;
        }
        let mut list: Vec<(u64, u64)> = chunks.iter().map(|(h, o)| (*o, prefix(h))).collect();
        list.sort_unstable();
        t.chunks += list.len();
        t.files.insert(path.to_owned(), (stamp, list));
    }

    /// Forgets that `path` was verified (it is no longer shared from there).
    pub fn distrust(&self, path: &str) {
        crate::sync::recover(&self.trusted).remove(path);
    }

    /// True when some location holds this chunk (not verified).
    pub fn has_chunk(&self, hash: &Hash) -> Result<bool, StoreError> {
        guarded(|| {
            let tx = self.db.begin_read()?;
            let t = tx.open_multimap_table(LOCS)?;
            Ok(!t.get(*hash)?.is_empty())
        })
    }

    /// Files found changed since they were indexed.
    pub fn take_stale(&self) -> Vec<String> {
        crate::sync::recover(&self.stale).drain().collect()
    }
}

/// The chunk's bytes and the file's stamp before and after reading them. The buffer is
/// filled by the read itself (no zeroing first).
fn read_at(loc: &Location) -> std::io::Result<(Vec<u8>, Stamp, Stamp)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(&loc.path)?;
    let before = Stamp::of(&f.metadata()?);
    f.seek(SeekFrom::Start(loc.offset))?;
    let mut buf = Vec::with_capacity(loc.len as usize);
    (&mut f).take(u64::from(loc.len)).read_to_end(&mut buf)?;
    if buf.len() != loc.len as usize {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let after = Stamp::of(&f.metadata()?);
    Ok((buf, before, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    const RECORDS: Table = Table::new("test/records");

    #[test]
    fn never_serves_changed_bytes() -> Result<(), StoreError> {
        let d = tempfile::tempdir().map_err(|e| io_err("test", e))?;
        let file = d.path().join("f");
        let _ = std::fs::write(&file, b"hello world");
        let store = Store::open(&d.path().join("db"))?;
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
        Ok(())
    }

    #[test]
    fn a_sweep_forgets_a_deleted_files_chunks_together_and_keeps_the_rest() -> Result<(), StoreError>
    {
        let err = |e: std::io::Error| io_err("test", e);
        let d = tempfile::tempdir().map_err(err)?;
        let (gone, kept) = (d.path().join("gone"), d.path().join("kept"));
        std::fs::write(&gone, b"abcdef").map_err(err)?;
        std::fs::write(&kept, b"cd").map_err(err)?;
        let store = Store::open(&d.path().join("db"))?;
        let at = |f: &std::path::Path, offset, len| Location {
            path: f.display().to_string(),
            offset,
            len,
        };
        let h = |b: &[u8]| *blake3::hash(b).as_bytes();
        store.apply(vec![
            Op::AddLocation(h(b"ab"), at(&gone, 0, 2)),
            Op::AddLocation(h(b"cd"), at(&gone, 2, 2)),
            Op::AddLocation(h(b"cd"), at(&kept, 0, 2)),
            Op::AddLocation(h(b"ef"), at(&gone, 4, 2)),
        ])?;
        std::fs::remove_file(&gone).map_err(err)?;
        let mut sweep = Sweep::default();
        assert_eq!(store.read_chunk_in(&h(b"ab"), &mut sweep)?, None);
        // The other copy of a chunk is still found; nothing is forgotten before the end.
        assert_eq!(
            store.read_chunk_in(&h(b"cd"), &mut sweep)?.as_deref(),
            Some(&b"cd"[..])
        );
        assert_eq!(store.read_chunk_in(&h(b"ef"), &mut sweep)?, None);
        assert!(store.has_chunk(&h(b"ef"))?);
        store.forget(sweep)?;
        assert!(!store.has_chunk(&h(b"ab"))? && !store.has_chunk(&h(b"ef"))?);
        let kept_path = kept.display().to_string();
        assert!(
            store
                .locations(&h(b"cd"))?
                .iter()
                .any(|l| l.path == kept_path)
        );
        assert_eq!(store.take_stale(), vec![gone.display().to_string()]);
        Ok(())
    }

    #[test]
    fn a_file_assumed_missing_is_not_read() -> Result<(), StoreError> {
        let err = |e: std::io::Error| io_err("test", e);
        let d = tempfile::tempdir().map_err(err)?;
        let file = d.path().join("new");
        std::fs::write(&file, b"abcd").map_err(err)?;
        let store = Store::open(&d.path().join("db"))?;
        let hash = *blake3::hash(b"abcd").as_bytes();
        let path = file.display().to_string();
        let loc = Location {
            path: path.clone(),
            offset: 0,
            len: 4,
        };
        store.apply(vec![Op::AddLocation(hash, loc)])?;
        let mut sweep = Sweep::default();
        sweep.assume_missing(path);
        // The bytes there match, but the caller knows the file is new: not read, forgotten.
        assert_eq!(store.read_chunk_in(&hash, &mut sweep)?, None);
        store.forget(sweep)?;
        assert!(!store.has_chunk(&hash)?);
        Ok(())
    }

    #[test]
    fn trusted_chunks_skip_the_hash_only_while_the_file_is_unchanged() -> Result<(), StoreError> {
        let err = |e: std::io::Error| io_err("test", e);
        let d = tempfile::tempdir().map_err(err)?;
        let file = d.path().join("f");
        std::fs::write(&file, b"hello world").map_err(err)?;
        let store = Store::open(&d.path().join("db"))?;
        let path = file.display().to_string();
        let world = *blake3::hash(b"world").as_bytes();
        let at = |offset, len| Location {
            path: path.clone(),
            offset,
            len,
        };
        // "world" at 6 was verified; a record claiming "world" at 0 was not.
        store.apply(vec![
            Op::AddLocation(world, at(0, 5)),
            Op::AddLocation(world, at(6, 5)),
        ])?;
        let stamp = Stamp::of_path(&file).map_err(err)?;
        store.trust(&path, stamp, &[(world, 6)]);
        assert_eq!(store.read_chunk(&world)?.as_deref(), Some(&b"world"[..]));
        // The unverified location was hashed, found wrong and dropped, trust or not.
        assert_eq!(store.locations(&world)?, vec![at(6, 5)]);

        // Trust means no hash: a location trusted by mistake is served as is...
        let hello = *blake3::hash(b"hello").as_bytes();
        store.apply(vec![Op::AddLocation(hello, at(6, 5))])?;
        store.trust(&path, stamp, &[(hello, 6)]);
        assert_eq!(store.read_chunk(&hello)?.as_deref(), Some(&b"world"[..]));
        // ...until the file changes: then every read is verified again.
        std::fs::write(&file, b"hello WORLD").map_err(err)?;
        assert_eq!(store.read_chunk(&hello)?, None);
        assert_eq!(store.read_chunk(&world)?, None);
        assert!(!store.has_chunk(&world)?);
        Ok(())
    }

    #[test]
    fn records_survive_reopen() -> Result<(), StoreError> {
        let d = tempfile::tempdir().map_err(|e| io_err("test", e))?;
        let id = ContentId::manifest(b"m");
        {
            let store = Store::open(&d.path().join("db"))?;
            assert_eq!(store.get(RECORDS, "k")?, None, "a table not yet written");
            assert!(store.scan(RECORDS)?.is_empty());
            store.apply(vec![
                Op::PutBlock(id, b"m".to_vec()),
                Op::Put(RECORDS, "k".into(), b"v".to_vec()),
                Op::Put(RECORDS, "j".into(), b"w".to_vec()),
            ])?;
            store.apply(vec![Op::Remove(RECORDS, "j".into())])?;
        }
        let store = Store::open(&d.path().join("db"))?;
        assert_eq!(store.block(&id)?, Some(b"m".to_vec()));
        assert_eq!(store.get(RECORDS, "k")?, Some(b"v".to_vec()));
        assert_eq!(store.scan(RECORDS)?, vec![("k".to_owned(), b"v".to_vec())]);
        Ok(())
    }

    #[test]
    fn a_file_that_is_no_database_is_moved_aside() -> Result<(), StoreError> {
        let d = tempfile::tempdir().map_err(|e| io_err("test", e))?;
        let p = d.path().join("db");
        let _ = std::fs::write(&p, vec![0xabu8; 8192]);
        let e = Store::open(&p).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("metadata database")));
        let (store, aside) = Store::open_or_recover(&p)?;
        let aside = aside.ok_or(StoreError::Corrupt("not moved aside".into()))?;
        assert_eq!(std::fs::read(&aside).ok(), Some(vec![0xabu8; 8192]));
        assert!(store.scan(RECORDS)?.is_empty());
        Ok(())
    }

    /// Overwrites pages in the middle of a database with garbage, as a failing disk or a
    /// stray write would.
    fn damage(p: &Path) -> std::io::Result<()> {
        let len = std::fs::metadata(p)?.len();
        let f = std::fs::OpenOptions::new().write(true).open(p)?;
        let mut at = 4096u64;
        while at + 4096 < len {
            f.write_all_at(&[0x5au8; 4096], at)?;
            at += 3 * 4096;
        }
        f.sync_all()
    }

    #[test]
    fn damaged_pages_are_found_at_open_not_by_a_panic_later() -> Result<(), StoreError> {
        let d = tempfile::tempdir().map_err(|e| io_err("test", e))?;
        let p = d.path().join("db");
        {
            let store = Store::open(&p)?;
            for batch in 0..20u32 {
                let ops = (0..500u32)
                    .map(|i| {
                        let h = *blake3::hash(&(batch * 1000 + i).to_le_bytes()).as_bytes();
                        Op::AddLocation(
                            h,
                            Location {
                                path: format!("/some/file/{batch}/{i}"),
                                offset: u64::from(i),
                                len: 1,
                            },
                        )
                    })
                    .collect();
                store.apply(ops)?;
            }
        }
        damage(&p).map_err(|e| io_err("test", e))?;
        let (_, aside) = Store::open_or_recover(&p)?;
        assert!(aside.is_some(), "the damage was not noticed");
        Ok(())
    }
}
