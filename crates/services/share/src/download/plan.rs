//! The plan of a download (every unique chunk and every place it goes), and the disk work
//! around it: creating the output tree, finding chunks already in place or elsewhere on
//! this machine, writing chunks, and the final records.

use std::collections::{HashSet, VecDeque};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_core::ContentId;
use kith_core::id::Hash;
use kith_core::manifest::Manifest;
use kith_core::store::{Location, Op, Store, now_secs};

use super::DownloadError;
use super::session::Session;
use crate::indexer::FileMeta;
use crate::origins::{Key, Origins};
use crate::records::{self, DownloadRecord, DownloadState, FileRecord, ShareKind, ShareRecord};

/// One unique chunk to fetch, and every place it goes.
#[derive(Debug)]
pub(crate) struct ChunkTask {
    pub hash: Hash,
    pub len: u32,
    pub targets: Vec<(Arc<str>, u64)>,
}

impl ChunkTask {
    pub fn new(hash: Hash, len: u32) -> Self {
        Self {
            hash,
            len,
            targets: Vec::new(),
        }
    }

    /// Store writes recording that this chunk now lives at each of its targets.
    pub fn locations(&self) -> impl Iterator<Item = Op> + '_ {
        self.targets.iter().map(|(p, off)| {
            Op::AddLocation(
                self.hash,
                Location {
                    path: p.to_string(),
                    offset: *off,
                    len: self.len,
                },
            )
        })
    }

    /// Bytes this chunk fills in the output (once per target).
    pub fn output_bytes(&self) -> u64 {
        u64::from(self.len) * self.targets.len() as u64
    }
}

pub(crate) struct Plan {
    pub root: PathBuf,
    /// Each file: where, its size, its manifest, and what its folder recorded of it.
    pub files: Vec<(PathBuf, u64, ContentId, FileMeta)>,
    pub dirs: Vec<PathBuf>,
    pub tasks: Vec<ChunkTask>,
    pub total: u64,
}

impl Plan {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            files: Vec::new(),
            dirs: Vec::new(),
            tasks: Vec::new(),
            total: 0,
        }
    }
}

fn werr(p: &Path, e: std::io::Error) -> DownloadError {
    DownloadError::Write(p.display().to_string(), e.to_string())
}

/// Creates the output tree at full size (keeping what a previous run wrote), records the
/// chunks already here (verified in the output when resuming, or elsewhere on this
/// machine) and returns the queue of chunks still to fetch.
pub(crate) async fn prepare_in_place(
    s: &Session,
    plan: &Arc<Plan>,
    resuming: bool,
) -> Result<VecDeque<usize>, DownloadError> {
    s.tx.send_modify(|p| {
        p.chunks_total = plan.tasks.len() as u64;
        p.total_bytes = plan.total;
    });
    let (store, p) = (s.inner.store.clone(), plan.clone());
    let have = s
        .inner
        .tasks
        .blocking(move || -> Result<HashSet<usize>, DownloadError> {
            let (have, ops) = prepare(&store, &p, resuming)?;
            store.apply(ops)?;
            Ok(have)
        })
        .await??;
    let have_bytes: u64 = have
        .iter()
        .filter_map(|&i| plan.tasks.get(i))
        .map(ChunkTask::output_bytes)
        .sum();
    s.tx.send_modify(|p| {
        p.chunks_done = have.len() as u64;
        p.done_bytes = have_bytes;
    });
    Ok((0..plan.tasks.len())
        .filter(|i| !have.contains(i))
        .collect())
}

/// Creates the output tree and returns the chunks already in place, plus store writes for
/// chunks found there or copied from elsewhere on this machine (blocking).
fn prepare(
    store: &Store,
    plan: &Plan,
    resuming: bool,
) -> Result<(HashSet<usize>, Vec<Op>), DownloadError> {
    for d in &plan.dirs {
        std::fs::create_dir_all(d).map_err(|e| werr(d, e))?;
    }
    // Locations found wrong (a deleted earlier copy, say) are forgotten in one go.
    let mut sweep = kith_core::store::Sweep::default();
    for (path, size, _, _) in &plan.files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| werr(parent, e))?;
        }
        // A file made now holds nothing yet: the store's records of chunks there (an
        // earlier download to the same path, since deleted) are not read back as zeros.
        if !path.exists() {
            sweep.assume_missing(path.display().to_string());
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| werr(path, e))?;
        f.set_len(*size).map_err(|e| werr(path, e))?;
    }
    let mut have = HashSet::new();
    let mut ops = Vec::new();
    let mut writer = Writer::default();
    for (i, t) in plan.tasks.iter().enumerate() {
        // Resuming: whatever a previous run wrote and verified is still in the output,
        // recorded or not (a crash can come between the write and its record).
        let in_place = resuming
            && t.targets
                .iter()
                .all(|(p, off)| read_verified(p, *off, t.len, &t.hash));
        if in_place {
            ops.extend(t.locations());
            have.insert(i);
            continue;
        }
        if let Some(bytes) = store.read_chunk_in(&t.hash, &mut sweep)? {
            writer.write(&t.targets, &bytes)?;
            ops.extend(t.locations());
            have.insert(i);
        }
    }
    store.forget(sweep)?;
    Ok((have, ops))
}

fn read_verified(path: &str, offset: u64, len: u32, hash: &Hash) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).is_ok() && blake3::hash(&buf).as_bytes() == hash
}

/// Writes chunks to their places, keeping the last file written open: a worker's chunks
/// mostly go to one file, and opening it for each chunk cost two system calls per chunk.
#[derive(Default)]
pub(crate) struct Writer {
    open: Option<(Arc<str>, std::fs::File)>,
}

impl Writer {
    /// Writes a verified chunk to every place it goes (blocking).
    pub fn write(
        &mut self,
        targets: &[(Arc<str>, u64)],
        bytes: &[u8],
    ) -> Result<(), DownloadError> {
        for (p, off) in targets {
            let err = |e: std::io::Error| werr(Path::new(&**p), e);
            let f = match self.open.take() {
                Some((q, f)) if q == *p => f,
                _ => OpenOptions::new().write(true).open(&**p).map_err(err)?,
            };
            let (_, f) = self.open.insert((p.clone(), f));
            f.write_all_at(bytes, *off).map_err(err)?;
        }
        Ok(())
    }
}

/// Flushes the files and builds the records of what was downloaded (blocking).
fn finish_records(
    plan: &Plan,
    id: ContentId,
    out: &str,
    scope: Option<String>,
) -> Result<Vec<Op>, DownloadError> {
    let mut ops = Vec::new();
    for (path, size, mid, meta) in &plan.files {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| werr(path, e))?;
        f.sync_all().map_err(|e| werr(path, e))?;
        crate::indexer::apply_meta(&f, *meta).map_err(|e| werr(path, e))?;
        let meta = f.metadata().map_err(|e| werr(path, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let rec = FileRecord {
            size: *size,
            mtime_ns,
            manifest: *mid,
            share: id,
            // Every chunk written was verified: after a restart the indexer trusts the
            // file's chunks while it keeps this stamp.
            stamp: Some(kith_core::store::Stamp::of(&meta)),
        };
        ops.push(records::put_file(path.display().to_string(), &rec));
    }
    let name = plan
        .root
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("download")
        .to_owned();
    ops.push(records::put_share(&ShareRecord {
        id,
        path: out.to_owned(),
        name,
        kind: if plan.dirs.is_empty() {
            ShareKind::File
        } else {
            ShareKind::Dir
        },
        size: plan.total,
        files: plan.files.len() as u64,
        added: now_secs(),
        scope,
        public_on_purpose: false,
    }));
    ops.push(records::put_download(&DownloadRecord {
        id,
        output: out.to_owned(),
        state: DownloadState::Done,
        added: now_secs(),
    }));
    Ok(ops)
}

/// The group a finished download is shared with: the group whose members sent it; else
/// the group it (or any file in it) came in before, here; else the group of the revision
/// it replaces; else none (public). Content that came in a group is remembered as the
/// group's (blocking).
fn scope_of(
    store: &Store,
    origins: &Origins,
    plan: &Plan,
    id: ContentId,
    sent_by: Option<String>,
    replaced: Option<&str>,
) -> Result<Option<String>, DownloadError> {
    let mut contents = Vec::new();
    for (_, size, mid, _) in &plan.files {
        if *size > 0
            && let Some(Ok(Manifest::File(f))) = store.block(mid)?.map(|b| Manifest::decode(&b))
        {
            contents.push(f.content_hash());
        }
    }
    let came_in = std::iter::once(Key::Root(id))
        .chain(contents.iter().map(|c| Key::File(*c)))
        .find_map(|k| origins.groups(&k).into_iter().next());
    let scope = sent_by.or(came_in).or_else(|| replaced.map(str::to_owned));
    if let Some(g) = &scope {
        let keys: Vec<Key> = std::iter::once(Key::Root(id))
            .chain(contents.into_iter().map(Key::File))
            .collect();
        origins
            .record(&keys, g)
            .map_err(|e| DownloadError::Write("origins.jsonl".into(), e.to_string()))?;
    }
    Ok(scope)
}

/// Where a finished download goes.
pub(crate) enum Landing {
    /// It was written where it stays (an earlier run completed it there).
    InPlace,
    /// From its staging path to its output.
    Rename(PathBuf),
    /// Over an older revision of the file.
    Over(PathBuf),
}

/// Flushes the files, puts them under their name, records the result as a share (this
/// node now provides it) and announces it.
pub(crate) async fn finish(
    s: &Session,
    plan: &Arc<Plan>,
    out: &str,
    landing: Landing,
) -> Result<(), DownloadError> {
    let sent_by = s.scope();
    let (inner, p, id, o) = (s.inner.clone(), plan.clone(), s.id, out.to_owned());
    let (replace, rename) = match landing {
        Landing::Over(t) => (Some(t), None),
        Landing::Rename(to) => (None, Some(to)),
        Landing::InPlace => (None, None),
    };
    let target = replace.as_ref().map(|t| t.display().to_string());
    let (scope, forgotten) = s
        .inner
        .tasks
        .blocking(move || -> Result<_, DownloadError> {
            let store = &inner.store;
            let replaced = match &replace {
                Some(t) => super::replace::scope_at(store, t, id)?,
                None => None,
            };
            let scope = scope_of(store, &inner.origins, &p, id, sent_by, replaced.as_deref())?;
            let sc = scope.clone();
            let (mut ops, records, forgotten) = match (&replace, &rename) {
                (Some(t), _) => {
                    let sw = super::replace::swap_in(store, &p, id, t)?;
                    let o = t.display().to_string();
                    (sw.ops, finish_records(&sw.plan, id, &o, sc)?, sw.forgotten)
                }
                (None, Some(to)) => {
                    if std::fs::symlink_metadata(to).is_ok() {
                        return Err(DownloadError::Exists(o));
                    }
                    let (now, ops) = super::replace::land(&p, to)?;
                    (ops, finish_records(&now, id, &o, sc)?, Vec::new())
                }
                (None, None) => (Vec::new(), finish_records(&p, id, &o, sc)?, Vec::new()),
            };
            ops.extend(records);
            store.apply(ops)?;
            Ok((scope, forgotten))
        })
        .await??;
    for old in forgotten {
        tracing::info!(old = %old.id, path = %old.path, "an older revision is no longer shared");
        s.inner.withdraw(old.id, old.scope.as_deref()).await;
    }
    if let Some(t) = target {
        s.tx.send_modify(|p| p.output = Some(t));
    }
    s.inner.changed().await;
    s.inner.announce(s.id, scope.as_deref()).await;
    Ok(())
}
