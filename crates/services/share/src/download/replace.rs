//! Updating a file in place: `kith get PEER/NAME -o EXISTING_FILE` fetches the newest
//! revision into a hidden file beside it (chunks the old file already has are copied, not
//! fetched), then renames it over the old one: readers see the old file or the new one,
//! never a mix. The old revision is no longer shared from that path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_core::ContentId;
use kith_core::store::{Op, Store};

use super::DownloadError;
use super::plan::{ChunkTask, Plan};
use crate::{indexer, records};

/// The hidden file a new revision of `target` is fetched into.
pub(crate) fn staging(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.kith-new"))
}

/// Makes the chunks of the file at `target` known to the store, if they are not (it was
/// not shared or fetched by this node), so the new revision copies what it shares with
/// the old one instead of fetching it (blocking).
pub(crate) fn locate_old(store: &Store, target: &Path) -> Result<(), DownloadError> {
    if records::file(store, &target.display().to_string())?.is_some() {
        return Ok(());
    }
    let ops = indexer::locations(target)
        .map_err(|e| DownloadError::Write(target.display().to_string(), e.to_string()))?;
    Ok(store.apply(ops)?)
}

/// The plan with every path under its root moved to `to`.
fn moved(plan: &Plan, to: &Path) -> Plan {
    let re = |p: &Path| -> PathBuf {
        match p.strip_prefix(&plan.root) {
            Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
            Ok(rest) => to.join(rest),
            Err(_) => p.to_path_buf(),
        }
    };
    Plan {
        root: to.to_path_buf(),
        files: plan
            .files
            .iter()
            .map(|(p, size, id, meta)| (re(p), *size, *id, *meta))
            .collect(),
        dirs: plan.dirs.iter().map(|d| re(d)).collect(),
        tasks: plan
            .tasks
            .iter()
            .map(|t| {
                let mut n = ChunkTask::new(t.hash, t.len);
                n.targets = t
                    .targets
                    .iter()
                    .map(|(p, off)| (Arc::from(re(Path::new(&**p)).display().to_string()), *off))
                    .collect();
                n
            })
            .collect(),
        total: plan.total,
    }
}

/// What [`swap_in`] did: the plan as it now lies, the store writes that move its chunks'
/// locations there, and the shares of older revisions it forgot (to stop announcing).
pub(crate) struct Swapped {
    pub plan: Plan,
    pub ops: Vec<Op>,
    pub forgotten: Vec<records::ShareRecord>,
}

/// Renames the fetched file over `target`. Shares of older revisions at `target` are
/// forgotten first (blocking).
pub(crate) fn swap_in(
    store: &Store,
    plan: &Plan,
    id: ContentId,
    target: &Path,
) -> Result<Swapped, DownloadError> {
    let staged = &plan.root;
    let werr =
        |e: std::io::Error| DownloadError::Write(target.display().to_string(), e.to_string());
    std::fs::File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(werr)?;
    let target_str = target.display().to_string();
    let mut forgotten = Vec::new();
    for old in records::shares(store)? {
        if old.path == target_str && old.id != id {
            indexer::unshare(store, &old.id)
                .map_err(|e| DownloadError::Write(target_str.clone(), e.to_string()))?;
            forgotten.push(old);
        }
    }
    std::fs::rename(staged, target).map_err(werr)?;
    let now = moved(plan, target);
    let mut ops: Vec<Op> = plan
        .tasks
        .iter()
        .flat_map(|t| t.locations())
        .filter_map(|op| match op {
            Op::AddLocation(h, l) => Some(Op::RemoveLocation(h, l)),
            _ => None,
        })
        .collect();
    ops.extend(now.tasks.iter().flat_map(|t| t.locations()));
    Ok(Swapped {
        plan: now,
        ops,
        forgotten,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staging_file_is_hidden_beside_the_target() {
        assert_eq!(
            staging(Path::new("/data/report.pdf")),
            PathBuf::from("/data/.report.pdf.kith-new")
        );
    }
}
