//! The end of a download: its files flushed and put under their name (over an older
//! revision, or renamed from staging), the scope it is shared with worked out, and the
//! result recorded as a share and announced.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;

use kith_core::ContentId;
use kith_core::manifest::Manifest;
use kith_core::store::{Op, Store, now_secs};

use super::DownloadError;
use super::plan::{Plan, werr};
use super::session::Session;
use crate::origins::{Key, Origins};
use crate::records::{self, DownloadRecord, DownloadState, FileRecord, ShareKind, ShareRecord};

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
            .map_err(|e| DownloadError::Write("origins.jsonl".into(), e))?;
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
        .tasks()
        .blocking(move || -> Result<_, DownloadError> {
            let store = inner.store();
            let replaced = match &replace {
                Some(t) => super::replace::scope_at(store, t, id)?,
                None => None,
            };
            let scope = scope_of(store, inner.origins(), &p, id, sent_by, replaced.as_deref())?;
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
