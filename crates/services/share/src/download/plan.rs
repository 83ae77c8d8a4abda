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
use kith_core::store::{Location, Op, Store};

use super::DownloadError;
use super::session::Session;
use crate::indexer::FileMeta;

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

pub(super) fn werr(p: &Path, e: std::io::Error) -> DownloadError {
    DownloadError::Write(p.display().to_string(), e)
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
    let (store, p) = (s.inner.store().clone(), plan.clone());
    let have = s
        .inner
        .tasks()
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
