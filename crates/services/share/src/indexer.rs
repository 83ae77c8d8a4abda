//! Indexing a file or folder for sharing: chunk every file, build manifests bottom-up, and
//! record where every chunk lives. Nothing is copied; unchanged files (same size and
//! modification time as when last indexed) are not read again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use kith_core::ContentId;
use kith_core::chunker::{self, ChunkError};
use kith_core::manifest::{self, Chunk, DirManifest, Entry, EntryKind, FileManifest, Manifest};
use kith_core::store::{Location, Op, Stamp, Store, StoreError, now_secs};

use crate::origins::{Audience, Key, Origins, Refusal, Tree};
use crate::records::{self, FileRecord, ShareKind, ShareRecord};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("{path}: {reason}")]
    Path { path: String, reason: String },
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

fn path_err(path: &Path, reason: impl ToString) -> IndexError {
    IndexError::Path {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Collects the writes of one indexing, committed in one go once the share is decided
/// (a refused share leaves nothing behind: no manifest, no chunk location to serve).
struct Batch<'a> {
    store: &'a Store,
    ops: Vec<Op>,
}

impl Batch<'_> {
    fn push(&mut self, op: Op) -> Result<(), StoreError> {
        self.ops.push(op);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.store.apply(std::mem::take(&mut self.ops))
    }
}

/// A file indexed for a share: where it is, its record, and the identity of its bytes.
#[derive(Clone)]
struct Indexed {
    path: String,
    rec: FileRecord,
    content: kith_core::id::Hash,
}

/// What a share is to be: for whom, under which root name, and what decides it.
pub(crate) struct Ask<'a> {
    pub audience: &'a Audience,
    /// The root's name (a copy keeps its content's ID); default: the path's last part.
    pub name: Option<String>,
    pub origins: &'a Origins,
    /// Whether this node is in a group.
    pub belongs: &'a (dyn Fn(&str) -> bool + Send + Sync),
}

/// Indexes `path` (a file or folder) and records it as a public share, with no regard to
/// where its content came from (for benchmarks and tools on a store of their own).
pub fn share_path(store: &Store, path: &Path) -> Result<ShareRecord, IndexError> {
    let ask = Ask {
        audience: &Audience::Public,
        name: None,
        origins: &Origins::empty(),
        belongs: &|_| false,
    };
    share_path_as(store, path, &ask)
}

/// Indexes `path` (a file or folder) and records it as a share for `audience`. Returns
/// the share; nothing is written when it is refused. Content shared with a group is
/// remembered as the group's ([`Origins`]).
pub(crate) fn share_path_as(
    store: &Store,
    path: &Path,
    ask: &Ask<'_>,
) -> Result<ShareRecord, IndexError> {
    let path = std::fs::canonicalize(path).map_err(|e| path_err(path, e))?;
    let meta = std::fs::metadata(&path).map_err(|e| path_err(&path, e))?;
    let name = match &ask.name {
        Some(n) => {
            manifest::check_name(n).map_err(|e| path_err(&path, e))?;
            n.clone()
        }
        None => display_name(&path)?,
    };
    let mut batch = Batch {
        store,
        ops: Vec::new(),
    };
    let mut files = Vec::new();
    let root = if meta.is_dir() {
        index_dir(&mut batch, &path, name.clone(), 0, &mut files)?
    } else if meta.is_file() {
        let (m, f) = index_file(&mut batch, &path, name.clone())?;
        files.push(f);
        m
    } else {
        return Err(path_err(&path, "not a regular file or folder"));
    };
    let id = root.id();
    let shown = path.display().to_string();
    let tree = Tree {
        path: &shown,
        root: ask.origins.groups(&Key::Root(id)),
        files: files
            .iter()
            .filter(|f| f.rec.size > 0)
            .map(|f| (f.path.clone(), ask.origins.groups(&Key::File(f.content))))
            .collect(),
    };
    let scope = tree.scope(ask.audience, ask.belongs)?;
    if let Some(g) = &scope {
        let keys: Vec<Key> = std::iter::once(Key::Root(id))
            .chain(
                files
                    .iter()
                    .filter(|f| f.rec.size > 0)
                    .map(|f| Key::File(f.content)),
            )
            .collect();
        ask.origins
            .record(&keys, g)
            .map_err(|e| path_err(Path::new("origins.jsonl"), e))?;
    }
    for mut f in files.iter().cloned() {
        f.rec.share = id;
        batch.push(records::put_file(f.path, &f.rec))?;
    }
    let record = ShareRecord {
        id,
        path: shown,
        name,
        kind: if meta.is_dir() {
            ShareKind::Dir
        } else {
            ShareKind::File
        },
        size: root.size(),
        files: files.len() as u64,
        added: now_secs(),
        scope,
        public_on_purpose: *ask.audience == Audience::Public,
    };
    batch.push(records::put_share(&record))?;
    batch.flush()?;
    Ok(record)
}

fn display_name(path: &Path) -> Result<String, IndexError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .unwrap_or_else(|| "root".to_owned());
    manifest::check_name(&name).map_err(|e| path_err(path, e))?;
    Ok(name)
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// What a folder records of a file besides its content.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Seconds since the Unix epoch.
    pub mtime: Option<u64>,
    pub exec: bool,
}

fn file_meta(meta: &std::fs::Metadata) -> FileMeta {
    use std::os::unix::fs::PermissionsExt;
    FileMeta {
        mtime: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        exec: meta.permissions().mode() & 0o111 != 0,
    }
}

/// Gives a fetched file the modification time and executable bit its folder recorded
/// (blocking). Read bits that are set get their execute bit.
pub fn apply_meta(file: &std::fs::File, meta: FileMeta) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(secs) = meta.mtime {
        file.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs))?;
    }
    if meta.exec {
        let mut p = file.metadata()?.permissions();
        let mode = p.mode();
        p.set_mode(mode | ((mode & 0o444) >> 2));
        file.set_permissions(p)?;
    }
    Ok(())
}

fn index_dir(
    batch: &mut Batch<'_>,
    path: &Path,
    name: String,
    depth: usize,
    files: &mut Vec<Indexed>,
) -> Result<Manifest, IndexError> {
    if depth >= manifest::MAX_DEPTH {
        return Err(path_err(path, "folders nested too deep"));
    }
    let mut children: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| path_err(path, e))?
        .filter_map(Result::ok)
        .collect();
    children.sort_by_key(|e| e.file_name());
    let mut entries = Vec::new();
    for child in children {
        let cpath = child.path();
        let Some(cname) = child.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %cpath.display(), "skipping file whose name is not UTF-8");
            continue;
        };
        // Symlinks and special files are skipped: a share holds what is under it.
        let Ok(ft) = child.file_type() else { continue };
        let (m, kind, meta) = if ft.is_dir() {
            (
                index_dir(batch, &cpath, cname.clone(), depth + 1, files)?,
                EntryKind::Dir,
                FileMeta::default(),
            )
        } else if ft.is_file() {
            let (m, f) = index_file(batch, &cpath, cname.clone())?;
            let meta = child.metadata().map(|m| file_meta(&m)).unwrap_or_default();
            files.push(f);
            (m, EntryKind::File, meta)
        } else {
            tracing::debug!(path = %cpath.display(), "skipping symlink or special file");
            continue;
        };
        entries.push(Entry {
            name: cname,
            kind,
            id: m.id(),
            size: m.size(),
            mtime: meta.mtime,
            exec: meta.exec,
        });
    }
    let m = Manifest::Dir(DirManifest { name, entries });
    put_manifest(batch, &m)?;
    Ok(m)
}

fn put_manifest(batch: &mut Batch<'_>, m: &Manifest) -> Result<(), IndexError> {
    let bytes = m.encode();
    if bytes.len() > manifest::MAX_MANIFEST_BYTES {
        return Err(IndexError::Path {
            path: m.name().to_owned(),
            reason: "too many entries for one manifest".into(),
        });
    }
    batch.push(Op::PutBlock(ContentId::manifest(&bytes), bytes))?;
    Ok(())
}

/// Where each chunk of the file at `path` lies, as store writes (the file is chunked, not
/// shared): lets a download copy chunks from a file this node never shared (blocking).
pub fn locations(path: &Path) -> Result<Vec<Op>, IndexError> {
    let key = path.display().to_string();
    Ok(chunker::chunk_file(path)?
        .iter()
        .map(|c| {
            Op::AddLocation(
                c.hash,
                Location {
                    path: key.clone(),
                    offset: c.offset,
                    len: c.len,
                },
            )
        })
        .collect())
}

fn index_file(
    batch: &mut Batch<'_>,
    path: &Path,
    name: String,
) -> Result<(Manifest, Indexed), IndexError> {
    let meta = std::fs::metadata(path).map_err(|e| path_err(path, e))?;
    let key = path.display().to_string();
    let mtime = mtime_ns(&meta);
    // Unchanged since last indexed: reuse the manifest without reading the file.
    if let Some(old) = records::file(batch.store, &key)?
        && old.size == meta.len()
        && old.mtime_ns == mtime
        && let Some(bytes) = batch.store.block(&old.manifest)?
        && let Ok(Manifest::File(mut f)) = Manifest::decode(&bytes)
    {
        if f.name != name {
            f.name = name;
        }
        // Verified when indexed and still the same file: its chunks need no re-hashing.
        if old.stamp.is_some_and(|s| s == Stamp::of(&meta)) {
            let mut offset = 0u64;
            let chunks: Vec<_> = f
                .chunks
                .iter()
                .map(|c| {
                    let at = offset;
                    offset += u64::from(c.size);
                    (c.hash, at)
                })
                .collect();
            batch.store.trust(&key, Stamp::of(&meta), &chunks);
        }
        let content = f.content_hash();
        let m = Manifest::File(f);
        put_manifest(batch, &m)?;
        let rec = FileRecord {
            manifest: m.id(),
            ..old
        };
        return Ok((
            m,
            Indexed {
                path: key,
                rec,
                content,
            },
        ));
    }
    let chunks = chunker::chunk_file(path)?;
    let size: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
    // Every chunk was just hashed: trust them while the file keeps the stamp it had
    // before and after the read.
    let stamp = Some(Stamp::of(&meta))
        .filter(|s| s.size == size && Stamp::of_path(path).is_ok_and(|now| now == *s));
    if let Some(s) = stamp {
        let list: Vec<_> = chunks.iter().map(|c| (c.hash, c.offset)).collect();
        batch.store.trust(&key, s, &list);
    }
    for c in &chunks {
        batch.push(Op::AddLocation(
            c.hash,
            Location {
                path: key.clone(),
                offset: c.offset,
                len: c.len,
            },
        ))?;
    }
    let f = FileManifest {
        name,
        size,
        chunks: chunks
            .iter()
            .map(|c| Chunk {
                hash: c.hash,
                size: c.len,
            })
            .collect(),
    };
    let content = f.content_hash();
    let m = Manifest::File(f);
    put_manifest(batch, &m)?;
    let rec = FileRecord {
        size,
        mtime_ns: mtime,
        manifest: m.id(),
        share: m.id(),
        stamp,
    };
    Ok((
        m,
        Indexed {
            path: key,
            rec,
            content,
        },
    ))
}

/// Shares whose files changed on disk since they were indexed (size or modification
/// time differ, or a read found wrong bytes).
pub fn changed_shares(store: &Store) -> Result<Vec<ShareRecord>, IndexError> {
    let stale = store.take_stale();
    // Shares with at least one file that differs from its record (one pass over files).
    let mut changed_ids = HashSet::new();
    for (path, rec) in records::files(store)? {
        if changed_ids.contains(&rec.share) {
            continue;
        }
        let now = std::fs::metadata(&path).ok();
        let same = now
            .as_ref()
            .is_some_and(|m| m.len() == rec.size && mtime_ns(m) == rec.mtime_ns);
        if !same || stale.contains(&path) {
            changed_ids.insert(rec.share);
        }
    }
    let mut out = Vec::new();
    for share in records::shares(store)? {
        let changed = changed_ids.contains(&share.id);
        if changed || (share.kind == ShareKind::Dir && dir_listing_changed(store, &share)?) {
            out.push(share);
        }
    }
    Ok(out)
}

/// Where else this node holds a copy of `share` (the root of each other copy: a file
/// fetched twice, a folder fetched to two places), from its file records: a copy's files
/// sit at the same paths under its root as the recorded copy's under the share's path.
pub fn other_copies(store: &Store, share: &ShareRecord) -> Result<Vec<PathBuf>, IndexError> {
    let root = Path::new(&share.path);
    let files = records::files_of(store, &share.id)?;
    let rels: HashSet<PathBuf> = files
        .iter()
        .filter_map(|(p, _)| Path::new(p).strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    let mut out: Vec<PathBuf> = Vec::new();
    for (p, _) in &files {
        let p = Path::new(p);
        if p.starts_with(root) {
            continue;
        }
        let copy = rels.iter().find_map(|rel| {
            if rel.as_os_str().is_empty() {
                return Some(p.to_path_buf());
            }
            let s = p.to_str()?.strip_suffix(rel.to_str()?)?.strip_suffix('/')?;
            Some(PathBuf::from(s))
        });
        if let Some(c) = copy
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    Ok(out)
}

/// A folder share changed if files were added or removed under it.
fn dir_listing_changed(store: &Store, share: &ShareRecord) -> Result<bool, IndexError> {
    let Some(bytes) = store.block(&share.id)? else {
        return Ok(true);
    };
    let Ok(m) = Manifest::decode(&bytes) else {
        return Ok(true);
    };
    Ok(!listing_matches(store, &m, Path::new(&share.path))?)
}

fn listing_matches(store: &Store, m: &Manifest, path: &Path) -> Result<bool, IndexError> {
    let Manifest::Dir(d) = m else { return Ok(true) };
    let Ok(rd) = std::fs::read_dir(path) else {
        return Ok(false);
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type()
                .map(|t| t.is_dir() || t.is_file())
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    let listed: Vec<&str> = d.entries.iter().map(|e| e.name.as_str()).collect();
    if names != listed {
        return Ok(false);
    }
    for e in &d.entries {
        if e.kind == EntryKind::Dir {
            let Some(bytes) = store.block(&e.id)? else {
                return Ok(false);
            };
            let Ok(sub) = Manifest::decode(&bytes) else {
                return Ok(false);
            };
            if !listing_matches(store, &sub, &path.join(&e.name))? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Forgets every share of content `id` (publicly and with groups): the records, their
/// file records and where their chunks live. Returns the records forgotten.
pub fn unshare(store: &Store, id: &ContentId) -> Result<Vec<ShareRecord>, IndexError> {
    let shares = records::shares_of(store, id)?;
    if shares.is_empty() {
        return Ok(shares);
    }
    let mut ops: Vec<Op> = shares.iter().map(records::remove_share).collect();
    for (path, rec) in records::files_of(store, id)? {
        if let Some(bytes) = store.block(&rec.manifest)?
            && let Ok(Manifest::File(f)) = Manifest::decode(&bytes)
        {
            let mut offset = 0u64;
            for c in &f.chunks {
                ops.push(Op::RemoveLocation(
                    c.hash,
                    Location {
                        path: path.clone(),
                        offset,
                        len: c.size,
                    },
                ));
                offset += u64::from(c.size);
            }
        }
        ops.push(records::remove_file(path));
    }
    // Forget its manifests too, unless another share or a running download uses them:
    // unshared content is not served, not even its listing.
    let mut live = HashSet::new();
    for other in records::shares(store)?.iter().filter(|s| s.id != *id) {
        live.extend(manifest_tree(store, &other.id)?);
    }
    for d in records::downloads(store)?
        .iter()
        .filter(|d| d.state.unfinished())
    {
        live.extend(manifest_tree(store, &d.id)?);
    }
    for m in manifest_tree(store, id)? {
        if !live.contains(&m) {
            ops.push(Op::RemoveBlock(m));
        }
    }
    store.apply(ops)?;
    Ok(shares)
}

/// The IDs of a manifest and every manifest under it that the store holds.
fn manifest_tree(store: &Store, root: &ContentId) -> Result<Vec<ContentId>, IndexError> {
    let mut out = Vec::new();
    let mut stack = vec![*root];
    while let Some(id) = stack.pop() {
        let Some(bytes) = store.block(&id)? else {
            continue;
        };
        out.push(id);
        if let Ok(Manifest::Dir(d)) = Manifest::decode(&bytes) {
            stack.extend(d.entries.iter().map(|e| e.id));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shares `path` publicly, as `kith share` does, remembering origins in `dir`.
    fn share_in(store: &Store, path: &Path, dir: &Path) -> Result<ShareRecord, IndexError> {
        let ask = Ask {
            audience: &Audience::Inherit,
            name: None,
            origins: &Origins::load(dir),
            belongs: &|_| true,
        };
        share_path_as(store, path, &ask)
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kith-index-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[test]
    fn folder_has_one_id_and_detects_changes() -> Result<(), IndexError> {
        let d = tmp("folder");
        let root = d.join("tree");
        let _ = std::fs::create_dir_all(root.join("sub"));
        let _ = std::fs::write(root.join("a.txt"), b"alpha");
        let _ = std::fs::write(root.join("sub/b.bin"), vec![9u8; 300_000]);
        let store = Store::open(&d.join("db"))?;
        let s1 = share_in(&store, &root, &d)?;
        assert_eq!(s1.files, 2);
        assert_eq!(s1.size, 300_005);
        assert!(changed_shares(&store)?.is_empty());
        // Re-sharing the unchanged tree gives the same ID.
        assert_eq!(share_in(&store, &root, &d)?.id, s1.id);
        let _ = std::fs::write(root.join("new.txt"), b"new");
        assert_eq!(changed_shares(&store)?.len(), 1);
        let s2 = share_in(&store, &root, &d)?;
        assert_ne!(s2.id, s1.id);
        assert_eq!(unshare(&store, &s2.id)?.len(), 1);
        assert!(records::shares_of(&store, &s2.id)?.is_empty());
        assert!(
            store.block(&s2.id)?.is_none(),
            "unshared manifests are forgotten"
        );
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }

    #[test]
    fn missing_path_is_an_error() {
        let d = tmp("missing");
        let store = Store::open(&d.join("db"));
        let r = store.map(|s| share_in(&s, &d.join("nope"), &d).is_err());
        assert!(matches!(r, Ok(true)));
        let _ = std::fs::remove_dir_all(&d);
    }
}
