//! Landing a download under its name: every download is fetched into a hidden staging
//! file (or folder) beside its output and renamed into place once every chunk is
//! verified, so nothing is ever left under the output's name that is not the content
//! asked for. Updating a file in place (`kith get PEER/NAME -o EXISTING_FILE`) is the
//! same: chunks the old file already has are copied, not fetched, and the new revision is
//! renamed over the old one, so readers see the old file or the new one, never a mix. The
//! old revision is no longer shared from that path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_core::ContentId;
use kith_core::store::{Op, Store};

use super::DownloadError;
use super::plan::{ChunkTask, Plan};
use crate::{indexer, records};

/// The hidden file (or folder) a download to `target` is fetched into.
pub(crate) fn staging(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.kith-part"))
}

/// Makes the chunks of the file at `target` known to the store, if they are not (it was
/// not shared or fetched by this node), so the new revision copies what it shares with
/// the old one instead of fetching it (blocking).
pub(crate) fn locate_old(store: &Store, target: &Path) -> Result<(), DownloadError> {
    if records::file(store, &target.display().to_string())?.is_some() {
        return Ok(());
    }
    let ops = indexer::locations(target)
        .map_err(|e| DownloadError::Replace(target.display().to_string(), e))?;
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

/// The group the revision at `target` was shared with, if any (its next revision stays in
/// that group).
pub(crate) fn scope_at(
    store: &Store,
    target: &Path,
    id: ContentId,
) -> Result<Option<String>, DownloadError> {
    let target = target.display().to_string();
    Ok(records::shares(store)?
        .into_iter()
        .filter(|s| s.path == target && s.id != id)
        .find_map(|s| s.scope))
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
    let target_str = target.display().to_string();
    let mut forgotten = Vec::new();
    for old in records::shares(store)? {
        if old.path == target_str && old.id != id {
            let gone = indexer::unshare(store, &old.id)
                .map_err(|e| DownloadError::Replace(target_str.clone(), e))?;
            forgotten.extend(gone);
        }
    }
    let (plan, ops) = land(plan, target)?;
    Ok(Swapped {
        plan,
        ops,
        forgotten,
    })
}

/// Renames what was fetched into `plan.root` to `to`: the plan as it now lies, and the
/// store writes that move its chunks' locations there (blocking).
pub(crate) fn land(plan: &Plan, to: &Path) -> Result<(Plan, Vec<Op>), DownloadError> {
    let werr = |e: std::io::Error| DownloadError::Write(to.display().to_string(), e);
    // What was written reaches the disk before it takes the name.
    for (p, ..) in &plan.files {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(werr)?;
    }
    std::fs::rename(&plan.root, to).map_err(werr)?;
    let now = moved(plan, to);
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
    Ok((now, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staging_file_is_hidden_beside_the_target() {
        assert_eq!(
            staging(Path::new("/data/report.pdf")),
            PathBuf::from("/data/.report.pdf.kith-part")
        );
    }
}
