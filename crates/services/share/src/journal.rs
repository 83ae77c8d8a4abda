//! The share journal: which paths are shared and which downloads run, kept in
//! `journal.json` beside the store. The store holds far more (where every chunk lives),
//! but all of it can be rebuilt from this: if the store is lost or was found damaged and
//! set aside, shared paths are indexed again and downloads resume from what is verified
//! in their output.

use std::path::{Path, PathBuf};

use kith_core::store::{Store, StoreError, now_secs};
use serde::{Deserialize, Serialize};

use crate::records::{self, DownloadRecord, DownloadState};
use crate::{Error, Share};

/// A shared path, and the group it is shared with (none: public). Journals written
/// before groups existed hold bare paths.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Shared {
    Scoped(String, Option<String>),
    Path(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    shares: Vec<Shared>,
    /// Downloads not finished (they resume), by ID and output.
    downloads: Vec<(String, String)>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join("journal.json")
}

/// Writes the journal from the store (blocking).
pub(crate) fn save(store: &Store, dir: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Db(format!("{}: {e}", dir.display()));
    let j = Journal {
        shares: records::shares(store)?
            .into_iter()
            .map(|s| Shared::Scoped(s.path, s.scope))
            .collect(),
        downloads: records::downloads(store)?
            .into_iter()
            .filter(|d| d.state == DownloadState::Running)
            .map(|d| (d.id.to_string(), d.output))
            .collect(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join("journal.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&j).unwrap_or_default()).map_err(io)?;
    std::fs::rename(&tmp, path(dir)).map_err(io)
}

fn load(dir: &Path) -> Journal {
    std::fs::read(path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// When the store knows no share and no download but the journal does (the store was
/// lost or set aside as damaged), shares every journalled path again and puts back the
/// downloads, which then resume.
pub(crate) async fn rebuild_if_lost(share: &Share) -> Result<(), Error> {
    let inner = &share.inner;
    let (store, dir) = (inner.store.clone(), inner.config.dir.clone());
    let (empty, journal) = inner
        .tasks
        .blocking(move || -> Result<_, StoreError> {
            let empty =
                records::shares(&store)?.is_empty() && records::downloads(&store)?.is_empty();
            Ok((empty, load(&dir)))
        })
        .await??;
    if !empty || (journal.shares.is_empty() && journal.downloads.is_empty()) {
        return Ok(());
    }
    tracing::warn!(
        shares = journal.shares.len(),
        downloads = journal.downloads.len(),
        "the store holds nothing the journal lists; rebuilding"
    );
    let mut ops = Vec::new();
    for (id, output) in &journal.downloads {
        if let Ok(id) = id.parse() {
            ops.push(records::put_download(&DownloadRecord {
                id,
                output: output.clone(),
                state: DownloadState::Running,
                added: now_secs(),
            }));
        }
    }
    inner.apply(ops).await?;
    for shared in journal.shares {
        let (p, scope) = match shared {
            Shared::Scoped(p, s) => (p, s),
            Shared::Path(p) => (p, None),
        };
        match share.share(PathBuf::from(&p), scope).await {
            Ok(rec) => tracing::info!(path = %p, id = %rec.id, "shared again"),
            Err(e) => tracing::warn!(path = %p, error = %e, "cannot share again"),
        }
    }
    Ok(())
}
