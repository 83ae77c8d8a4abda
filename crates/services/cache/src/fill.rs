//! Filling the cache: fetch content through share into the cache's folder (share then
//! provides it, so readers near this node find it), then evict what no longer fits.

use std::sync::Arc;
use std::time::Duration;

use kith_core::ContentId;
use kith_share::{Output, State};

use crate::Error;
use crate::entries::{Entry, Fill};
use crate::state::{FillSlot, Inner};

/// How long a fill may go without progress.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Whether this node shares `id` of its own (not as a cache entry).
pub(crate) async fn own(inner: &Inner, id: &ContentId) -> Result<bool, Error> {
    let cached = inner.entry(id)?.is_some();
    let shared = inner.share.list().await?.iter().any(|s| s.id == *id);
    Ok(shared && !cached)
}

/// Records `entry` and fetches its content in the background.
pub(crate) async fn start(inner: &Arc<Inner>, entry: Entry, slot: FillSlot) -> Result<(), Error> {
    let id = entry.id;
    inner.update(|es| es.insert(entry)).await?;
    let i = inner.clone();
    inner.tasks.spawn(async move {
        let r = run(&i, id).await;
        drop(slot);
        if let Err(e) = &r {
            tracing::warn!(%id, error = %e, "cache fill failed");
        }
        let res = i
            .update(|es| {
                if let Some(e) = es.get_mut(&id) {
                    match &r {
                        Ok((name, bytes)) => {
                            e.fill = Fill::Ready;
                            e.name = Some(name.clone());
                            e.bytes = *bytes;
                            e.error = None;
                        }
                        Err(err) => {
                            e.fill = Fill::Failed;
                            e.error = Some(err.to_string());
                        }
                    }
                }
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(%id, error = %e, "cannot record the cache fill");
        }
        if let Err(e) = evict(&i).await {
            tracing::warn!(error = %e, "cache eviction failed");
        }
    });
    Ok(())
}

/// Fetches `id` into the cache's folder; its name and size once it is here.
async fn run(inner: &Inner, id: ContentId) -> Result<(String, u64), Error> {
    let dir = inner.data_dir();
    inner
        .tasks
        .blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| Error::Io(dir.display().to_string(), e))
        })
        .await??;
    let mut rx = inner
        .share
        .get(id, Output::Exact(inner.path_of(&id)), Some(PATIENCE))
        .await?;
    tracing::info!(%id, "cache fill started");
    loop {
        let p = rx.borrow_and_update().clone();
        match p.state {
            State::Done => {
                tracing::info!(%id, bytes = p.total_bytes, providers = ?p.providers, "cached");
                return Ok((p.name.unwrap_or_default(), p.total_bytes));
            }
            State::Failed => {
                return Err(Error::Fetch(p.error.unwrap_or_else(|| "failed".into())));
            }
            _ => {}
        }
        tokio::select! {
            () = inner.tasks.shutdown().cancelled() => return Err(Error::Stopped),
            r = rx.changed() => if r.is_err() {
                return Err(Error::Fetch("the download ended".into()));
            },
        }
    }
}

/// Evicts what no longer fits within the capacity (least recently served first; never a
/// pinned entry or one being fetched), and failed entries.
pub(crate) async fn evict(inner: &Arc<Inner>) -> Result<(), Error> {
    let ids = crate::state::lock(&inner.entries)?.to_evict(inner.config.capacity);
    for id in ids {
        drop_entry(inner, id).await?;
        tracing::info!(%id, "evicted from the cache");
    }
    Ok(())
}

/// Stops providing an entry's content, removes its files and forgets it.
pub(crate) async fn drop_entry(inner: &Arc<Inner>, id: ContentId) -> Result<(), Error> {
    let path = inner.path_of(&id);
    let ours = inner
        .share
        .list()
        .await?
        .iter()
        .any(|s| s.id == id && std::path::Path::new(&s.path) == path);
    if ours {
        inner.share.unshare(id).await?;
    }
    let p = path.clone();
    inner
        .tasks
        .blocking(move || {
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match r {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::Io(p.display().to_string(), e))
                }
                _ => Ok(()),
            }
        })
        .await??;
    inner.update(|es| es.remove(&id)).await?;
    Ok(())
}
