//! The share journal: which paths are shared and which downloads run, kept in
//! `journal.json` beside the store. The store holds far more (where every chunk lives),
//! but all of it can be rebuilt from this: if the store is lost or was found damaged and
//! set aside, shared paths are indexed again and downloads resume from what is verified
//! in their output.

use std::path::{Path, PathBuf};

use kith_core::ContentId;
use kith_core::manifest::Manifest;
use kith_core::store::{Store, StoreError, now_secs};
use serde::{Deserialize, Serialize};

use crate::records::{self, DownloadRecord, DownloadState};
use crate::{Audience, Error, Share};

/// A shared path, and the group it is shared with (none: public). Journals written
/// before the content's ID and name were kept hold a path and a group, and those written
/// before groups existed bare paths.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Shared {
    Entry(Entry),
    Scoped(String, Option<String>),
    Path(String),
}

/// A share as the journal keeps it: enough to share it again under the same ID (a
/// download saved under another name keeps its content's name).
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// The content's ID when it was shared (a rebuild that finds other bytes says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<ContentId>,
    /// The root's name in its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    public_on_purpose: bool,
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
    let io = |e: std::io::Error| kith_core::store::io_err(dir.display(), e);
    let mut shares = Vec::new();
    for s in records::shares(store)? {
        let name = store
            .block(&s.id)?
            .and_then(|b| Manifest::decode(&b).ok())
            .map(|m| m.name().to_owned());
        shares.push(Shared::Entry(Entry {
            path: s.path,
            group: s.scope,
            id: Some(s.id),
            name,
            public_on_purpose: s.public_on_purpose,
        }));
    }
    let j = Journal {
        shares,
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
    let (store, dir) = (inner.store().clone(), inner.config().dir.clone());
    let (empty, journal) = inner
        .tasks()
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
        let e = match shared {
            Shared::Entry(e) => e,
            Shared::Scoped(path, group) => Entry::bare(path, group),
            Shared::Path(path) => Entry::bare(path, None),
        };
        let audience = match e.group {
            Some(g) => Audience::Group(g),
            None if e.public_on_purpose => Audience::Public,
            None => Audience::Inherit,
        };
        match share
            .share_as(PathBuf::from(&e.path), audience, e.name)
            .await
        {
            Ok(rec) if e.id.is_some_and(|id| id != rec.id) => {
                tracing::warn!(path = %e.path, was = ?e.id, now = %rec.id, "shared again, but its content changed")
            }
            Ok(rec) => tracing::info!(path = %e.path, id = %rec.id, "shared again"),
            Err(err) => tracing::warn!(path = %e.path, error = %err, "cannot share again"),
        }
    }
    Ok(())
}

impl Entry {
    /// An entry of an older journal: its ID and name are not known.
    fn bare(path: String, group: Option<String>) -> Self {
        Self {
            path,
            group,
            id: None,
            name: None,
            public_on_purpose: false,
        }
    }
}
