//! One download: find providers (`finder`), fetch and verify the manifests (`manifests`),
//! plan every chunk and see what is already here (`plan`), then fetch the rest from every
//! provider at once (`scheduler`, `worker`, `work`). Every chunk is verified before it is
//! written; a provider that lies or breaks the protocol is shunned by every download.
//! Verified chunks are recorded as they land, so a download that is stopped (Ctrl-C,
//! crash) resumes without fetching them again.
//!
//! The patience is a deadline, not a wait that starts over: a download that makes no
//! progress (no manifest, no chunk) for that long fails with what it tried, however often
//! dead providers turn up again in the DHT.

mod finder;
mod finish;
mod manifests;
mod nearness;
mod plan;
mod replace;
mod scheduler;
mod session;
mod work;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_core::ContentId;
use kith_core::id::Hash;
use kith_core::manifest::{EntryKind, MAX_DEPTH, Manifest};
use kith_core::store::now_secs;
use kith_core::tasks::TaskError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::indexer::FileMeta;
use crate::records::{self, DownloadRecord, DownloadState};
use crate::running::Halt;
use crate::state::Inner;
use crate::{Event, Progress, State};
use plan::{ChunkTask, Plan};
use session::Session;

/// Where to put a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Exactly this path (the file, or the folder that gets the tree).
    Exact(PathBuf),
    /// Under this folder, named as the content is named.
    Under(PathBuf),
    /// Over this existing file: fetched beside it, then renamed over it (a new revision
    /// of what it holds; chunks it already has are not fetched).
    Replace(PathBuf),
}

/// A root manifest as [`crate::Share::read_root`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub manifest: Manifest,
    /// The peer it came from and its length in bytes; `None` when it was here already.
    pub fetched: Option<(kith_overlay::PeerId, u64)>,
}

#[derive(Debug, thiserror::Error)]
enum DownloadError {
    #[error("{0}")]
    GaveUp(String),
    #[error("{0} already exists (choose another output path or remove it)")]
    Exists(String),
    #[error("cannot write {0}: {1}")]
    Write(String, #[source] std::io::Error),
    #[error("cannot write {0}: {1}")]
    Replace(String, #[source] crate::indexer::IndexError),
    #[error("the download's chunk queue failed")]
    Broken,
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] kith_core::store::StoreError),
    #[error("{0}")]
    Service(#[from] crate::Error),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("stopped")]
    Stopped,
}

pub(crate) async fn run(
    inner: Arc<Inner>,
    id: ContentId,
    output: Output,
    patience: Duration,
    tx: watch::Sender<Progress>,
    control: crate::running::Control,
) {
    inner.metrics().downloads_active.inc();
    let span = tracing::info_span!("download", %id);
    let body = with_finder(&inner, id, output, patience, &tx, control.stop.clone());
    let result = tracing::Instrument::instrument(body, span).await;
    inner.metrics().downloads_active.dec();
    match (result, inner.running().halt_of(&id)) {
        (Err(DownloadError::Stopped), Some(Halt::Pause)) => {
            tracing::info!(%id, "download paused");
            set_state(&inner, id, DownloadState::Paused).await;
            tx.send_modify(|p| {
                p.state = State::Paused;
                p.rate = 0;
            });
        }
        (Err(DownloadError::Stopped), Some(Halt::Cancel)) => {
            tracing::info!(%id, "download cancelled");
            if let Err(e) = discard(&inner, id).await {
                tracing::warn!(%id, error = %e, "cannot remove a cancelled download's files");
            }
            tx.send_modify(|p| p.state = State::Cancelled);
        }
        (result, _) => ended(&inner, id, result, &tx).await,
    }
    // Last: whoever paused or cancelled it waits for this.
    inner.running().ended(&id, &control);
}

/// Records a download's state.
async fn set_state(inner: &Inner, id: ContentId, state: DownloadState) {
    let store = inner.store().clone();
    let _ = inner
        .tasks()
        .blocking(move || -> Result<(), kith_core::store::StoreError> {
            if let Some(mut rec) = records::download(&store, &id)? {
                rec.state = state;
                store.apply(vec![records::put_download(&rec)])?;
            }
            Ok(())
        })
        .await;
    inner.save_journal().await;
}

/// Forgets a download that did not finish and removes what it wrote (its output was
/// new: a download never writes into a path that was there before it).
pub(crate) async fn discard(inner: &Inner, id: ContentId) -> Result<(), crate::Error> {
    let store = inner.store().clone();
    inner
        .tasks()
        .blocking(move || -> Result<(), crate::Error> {
            let Some(rec) = records::download(&store, &id)? else {
                return Ok(());
            };
            if !rec.state.unfinished() {
                return Ok(());
            }
            let out = std::path::Path::new(&rec.output);
            let staged = replace::staging(out);
            let mut ops = vec![records::remove_download(&id)];
            for (path, _) in records::files(&store)?.into_iter().filter(|(p, _)| {
                std::path::Path::new(p).starts_with(out)
                    || std::path::Path::new(p).starts_with(&staged)
            }) {
                ops.push(records::remove_file(path));
            }
            store.apply(ops)?;
            remove_leftover(&staged);
            let removed = if out.is_dir() {
                std::fs::remove_dir_all(out)
            } else {
                std::fs::remove_file(out)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %out.display(), error = %e, "cannot remove a cancelled download's output");
            }
            Ok(())
        })
        .await??;
    inner.save_journal().await;
    Ok(())
}

/// A download that ran to its end (or was stopped by the node's shutdown).
async fn ended(
    inner: &Arc<Inner>,
    id: ContentId,
    result: Result<(), DownloadError>,
    tx: &watch::Sender<Progress>,
) {
    match result {
        Ok(()) => {
            inner.metrics().downloads_done.inc();
            tx.send_modify(|p| p.state = State::Done);
            let _ = inner.events().send(Event::DownloadDone { id });
        }
        Err(DownloadError::Stopped) => {
            tracing::info!(%id, "download paused by shutdown; it resumes on restart");
            tx.send_modify(|p| {
                p.state = State::Failed;
                p.error =
                    Some("the node is shutting down; the download resumes when it restarts".into());
            });
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "download failed");
            let error = e.to_string();
            set_state(inner, id, DownloadState::Failed(error.clone())).await;
            tx.send_modify(|p| {
                p.state = State::Failed;
                p.error = Some(error.clone());
            });
            let _ = inner.events().send(Event::DownloadFailed { id, error });
        }
    }
}

/// Runs the download with its finder beside it; the finder stops when the download ends.
async fn with_finder(
    inner: &Arc<Inner>,
    id: ContentId,
    output: Output,
    patience: Duration,
    tx: &watch::Sender<Progress>,
    stop: CancellationToken,
) -> Result<(), DownloadError> {
    let (found_tx, found) = mpsc::channel(64);
    let round = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finder = std::pin::pin!(finder::run(inner, id, found_tx, &round));
    let mut session = Session::new(inner.clone(), id, tx.clone(), found, patience);
    session.first_round = round.clone();
    session.stop = stop;
    let body = std::pin::pin!(download(&mut session, output));
    match futures::future::select(body, finder).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right(((), body)) => body.await,
    }
}

/// The root manifest of `id`, found as a download finds it (within `patience`), kept
/// nowhere.
pub(crate) async fn root(
    inner: &Arc<Inner>,
    id: ContentId,
    patience: Duration,
) -> Result<Root, crate::Error> {
    let (found_tx, found) = mpsc::channel(64);
    let round = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finder = std::pin::pin!(finder::run(inner, id, found_tx, &round));
    let (tx, _) = watch::channel(Progress::new(id));
    let mut session = Session::new(inner.clone(), id, tx, found, patience);
    session.first_round = round.clone();
    let body = std::pin::pin!(manifests::read(&mut session, &id));
    let read = match futures::future::select(body, finder).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right(((), body)) => body.await,
    };
    match read {
        Ok((manifest, fetched)) => Ok(Root {
            manifest,
            fetched: fetched.map(|(peer, bytes)| (peer, bytes.len() as u64)),
        }),
        Err(DownloadError::Service(e)) => Err(e),
        Err(DownloadError::Task(e)) => Err(crate::Error::Task(e)),
        Err(DownloadError::Stopped) => Err(crate::Error::stopped()),
        Err(e) => Err(crate::Error::Manifest {
            id,
            source: Box::new(e),
        }),
    }
}

fn resolve_output(output: &Output, name: &str) -> PathBuf {
    match output {
        Output::Exact(p) => p.clone(),
        Output::Under(dir) => dir.join(name),
        Output::Replace(target) => replace::staging(target),
    }
}

async fn download(s: &mut Session, output: Output) -> Result<(), DownloadError> {
    let id = s.id;
    let root = manifests::fetch(s, &id).await?;
    let out = resolve_output(&output, root.name());
    let out_str = out.display().to_string();
    let target = match &output {
        Output::Replace(t) if matches!(root, Manifest::Dir(_)) => {
            return Err(DownloadError::Exists(t.display().to_string()));
        }
        Output::Replace(t) => {
            let (store, t2) = (s.inner.store().clone(), t.clone());
            s.inner
                .tasks()
                .blocking(move || replace::locate_old(&store, &t2))
                .await??;
            Some(t.clone())
        }
        _ => None,
    };
    let (resuming, work) = record_start(s, &out, &out_str, target.is_some()).await?;
    s.tx.send_modify(|p| {
        p.name = Some(root.name().to_owned());
        p.output = Some(out_str.clone());
        p.total_bytes = root.size();
        p.state = State::Downloading;
    });
    let plan = Arc::new(plan_tree(s, root, work.clone()).await?);
    // Content of a group (its manifests came from the group's members only, or it came
    // in the group before) is served to nobody else while it arrives.
    let came_in = s.inner.origins().groups(&crate::origins::Key::Root(id));
    if let Some(g) = s.scope().or_else(|| came_in.into_iter().next()) {
        s.inner.hold_private(id, g).await;
    }
    let queue = plan::prepare_in_place(s, &plan, resuming).await?;
    tracing::info!(
        chunks = plan.tasks.len(),
        to_fetch = queue.len(),
        "download planned"
    );
    if !queue.is_empty() {
        scheduler::Scheduler::new(s, plan.clone(), queue)
            .run()
            .await?;
    }
    let landing = match target {
        Some(t) => finish::Landing::Over(t),
        None if work != out => finish::Landing::Rename(out),
        None => finish::Landing::InPlace,
    };
    finish::finish(s, &plan, &out_str, landing).await?;
    let mut providers: Vec<String> = s.providers.iter().map(|p| p.to_string()).collect();
    providers.sort();
    s.tx.send_modify(|p| p.providers = providers);
    tracing::info!(
        bytes = plan.total,
        providers = s.providers.len(),
        "download complete"
    );
    Ok(())
}

/// Records the download as running. Returns whether it resumes one to the same output,
/// and where it writes: a hidden staging path beside the output, renamed into place once
/// everything is verified (or the output itself, when an earlier run already completed
/// it there).
async fn record_start(
    s: &Session,
    out: &std::path::Path,
    out_str: &str,
    staged: bool,
) -> Result<(bool, PathBuf), DownloadError> {
    let (store, id, out, out_str) = (
        s.inner.store().clone(),
        s.id,
        out.to_owned(),
        out_str.to_owned(),
    );
    let started = s
        .inner
        .tasks()
        .blocking(move || -> Result<(bool, PathBuf), DownloadError> {
            let existing = records::download(&store, &id)?;
            let resuming = existing.as_ref().is_some_and(|r| r.output == out_str);
            let there = std::fs::symlink_metadata(&out).is_ok();
            if !resuming && there {
                // A staging file no download owns is left over from an earlier attempt.
                if !staged || std::fs::remove_file(&out).is_err() {
                    return Err(DownloadError::Exists(out_str));
                }
            }
            let work = if staged || (resuming && there) {
                out.clone()
            } else {
                replace::staging(&out)
            };
            if !resuming && work != out {
                remove_leftover(&work);
            }
            let rec = DownloadRecord {
                id,
                output: out_str,
                state: DownloadState::Running,
                added: existing.map_or_else(now_secs, |r| r.added),
            };
            store.apply(vec![records::put_download(&rec)])?;
            Ok((resuming, work))
        })
        .await??;
    s.inner.save_journal().await;
    Ok(started)
}

/// Removes a staging file or folder that no download owns (blocking).
fn remove_leftover(path: &std::path::Path) {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(e) = removed {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover staging file");
    }
}

/// Walks the tree, fetching sub-manifests, and plans every unique chunk.
async fn plan_tree(s: &mut Session, root: Manifest, out: PathBuf) -> Result<Plan, DownloadError> {
    let mut plan = Plan::new(out.clone());
    let mut index: HashMap<Hash, usize> = HashMap::new();
    let mut stack = VecDeque::from([(root, out, s.id, 0usize, FileMeta::default())]);
    while let Some((m, path, mid, depth, meta)) = stack.pop_back() {
        if depth > MAX_DEPTH {
            return Err(DownloadError::Invalid("folders nested too deep".into()));
        }
        match m {
            Manifest::File(f) => {
                let key: Arc<str> = Arc::from(path.display().to_string());
                let mut offset = 0u64;
                for c in &f.chunks {
                    let i = *index.entry(c.hash).or_insert_with(|| {
                        plan.tasks.push(ChunkTask::new(c.hash, c.size));
                        plan.tasks.len() - 1
                    });
                    if let Some(t) = plan.tasks.get_mut(i) {
                        t.targets.push((key.clone(), offset));
                    }
                    offset += u64::from(c.size);
                }
                plan.total += f.size;
                plan.files.push((path, f.size, mid, meta));
            }
            Manifest::Dir(d) => {
                plan.dirs.push(path.clone());
                for e in d.entries {
                    let sub = manifests::fetch(s, &e.id).await?;
                    let ok = matches!(
                        (&sub, e.kind),
                        (Manifest::File(_), EntryKind::File) | (Manifest::Dir(_), EntryKind::Dir)
                    );
                    if !ok {
                        return Err(DownloadError::Invalid(format!(
                            "entry {:?} has the wrong type",
                            e.name
                        )));
                    }
                    let meta = FileMeta {
                        mtime: e.mtime,
                        exec: e.exec,
                    };
                    stack.push_back((sub, path.join(&e.name), e.id, depth + 1, meta));
                }
            }
        }
    }
    Ok(plan)
}
