//! The owner of the index: the index in memory behind one lock, `index.json` (written
//! from a snapshot), whether the index's copy in the vault lags behind it
//! (`unpublished`), and where that copy is (`root.json`).
//!
//! The index has invariants across its tables (a chunk points to a segment that is
//! there, an object's chunks all have one), so a poisoned lock is an error
//! ([`kith_core::sync::lock`]), never taken back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use kith_core::sync::{Poisoned, lock, write_atomic};
use kith_core::tasks::Tasks;

use crate::Error;
use crate::index::{Index, IndexRef};

/// The file that says the index has changes its copy in the vault lacks.
const UNPUBLISHED: &str = "unpublished";
/// Where the index's copy in the vault is, as the root record last pointed to it.
const ROOT: &str = "root.json";

pub(crate) struct Catalog {
    dir: PathBuf,
    index: Mutex<Index>,
    /// The index changed since its copy in the vault was last stored (the file
    /// [`UNPUBLISHED`] says so across restarts).
    unpublished: AtomicBool,
}

impl Catalog {
    /// Loads `index.json` (or an empty index) from `dir`. Blocking.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        Ok(Self {
            dir: dir.to_path_buf(),
            index: Mutex::new(Index::load(dir)?),
            unpublished: AtomicBool::new(dir.join(UNPUBLISHED).exists()),
        })
    }

    /// The index, for memory work only (never held across I/O or `.await`).
    pub fn index(&self) -> Result<MutexGuard<'_, Index>, Poisoned> {
        lock(&self.index)
    }

    /// Every (holder, share) the index points to.
    pub fn referenced(&self) -> Result<HashSet<(String, String)>, Poisoned> {
        Ok(self
            .index()?
            .segments
            .values()
            .flat_map(|g| &g.shares)
            .map(|s| (s.holder.clone(), s.name.clone()))
            .collect())
    }

    /// Bytes this node stores with `peer` (what it lends back, for fairness).
    pub fn lent_to(&self, peer: &str) -> Result<u64, Poisoned> {
        Ok(self
            .index()?
            .segments
            .values()
            .flat_map(|s| &s.shares)
            .filter(|s| s.holder == peer)
            .map(|s| s.size)
            .sum())
    }

    /// Marks a share found lost or wrong (it is repaired, and its holder gets no more).
    /// Returns its holder when it was not marked already.
    pub fn strike(&self, seg: u64, share: usize) -> Result<Option<String>, Poisoned> {
        let mut ix = self.index()?;
        let Some(s) = ix
            .segments
            .get_mut(&seg)
            .and_then(|g| g.shares.get_mut(share))
            .filter(|s| !s.bad)
        else {
            return Ok(None);
        };
        s.bad = true;
        let holder = s.holder.clone();
        ix.holders.entry(holder.clone()).or_default().faults += 1;
        Ok(Some(holder))
    }

    /// Writes `index.json` from a snapshot of the index.
    pub async fn save(&self, tasks: &Tasks) -> Result<(), Error> {
        let snapshot = self.index()?.clone();
        let dir = self.dir.clone();
        tasks
            .blocking(move || snapshot.save(&dir))
            .await?
            .map_err(|e| Error::io(&self.dir.join("index.json"), e))
    }

    pub fn unpublished(&self) -> bool {
        self.unpublished.load(Ordering::Relaxed)
    }

    /// Notes whether the index's copy in the vault lags behind it (kept across restarts).
    pub async fn set_unpublished(&self, tasks: &Tasks, lags: bool) {
        if self.unpublished.swap(lags, Ordering::Relaxed) == lags {
            return;
        }
        let path = self.dir.join(UNPUBLISHED);
        let done = tasks
            .blocking(move || {
                if lags {
                    std::fs::create_dir_all(path.parent().unwrap_or(&path))?;
                    std::fs::write(&path, b"")
                } else {
                    std::fs::remove_file(&path).or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })
                }
            })
            .await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!("cannot record whether the vault index is published");
        }
    }

    /// The shares of the index's copy in the vault that the root record points to.
    pub async fn root_shares(&self, tasks: &Tasks) -> HashSet<(String, String)> {
        let path = self.dir.join(ROOT);
        let old: Option<IndexRef> = tasks
            .blocking(move || {
                std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
            })
            .await
            .ok()
            .flatten();
        old.map(|r| r.shares()).unwrap_or_default()
    }

    /// Records where the index's copy now is (`json`, an [`IndexRef`]); returns where
    /// the copy it replaces was.
    pub async fn replace_root(
        &self,
        tasks: &Tasks,
        json: Vec<u8>,
    ) -> Result<Option<IndexRef>, Error> {
        let path = self.dir.join(ROOT);
        Ok(tasks
            .blocking(move || {
                let old = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if let Err(e) = write_atomic(&path, &json) {
                    // The record in the DHT points to the new copy all the same.
                    tracing::warn!(path = %path.display(), error = %e, "cannot write root.json");
                }
                old
            })
            .await?)
    }
}
