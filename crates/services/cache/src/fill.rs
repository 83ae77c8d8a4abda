//! Filling the cache: fetch content through share into the cache's folder (share then
//! provides it, so readers near this node find it), then evict what no longer fits. A
//! prefetch's fill is stopped (and what it wrote removed) when it grows past the size read
//! from its root manifest (its download's plan, or the bytes that came, say more), or when
//! a provider goes past its budget for the hour.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kith_core::ContentId;
use kith_core::sync::{lock, recover};
use kith_share::{Output, Progress, State};
use tokio::time::Instant;

use crate::Error;
use crate::budget::{Meter, Reservation};
use crate::entries::{Entry, Fill, Why};
use crate::state::{FillSlot, Inner};

/// How long a fill may go without progress.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Whether this node shares `id` of its own (not as a cache entry).
pub(crate) async fn own(inner: &Inner, id: &ContentId) -> Result<bool, Error> {
    let cached = inner.entry(id)?.is_some();
    let shared = inner.share.list().await?.iter().any(|s| s.id == *id);
    Ok(shared && !cached)
}

/// A prefetch's fill: capped at the size its entry says (read from the root manifest),
/// each provider charged as its bytes come, and what was reserved but not fetched given
/// back at the end.
struct Metered {
    size: u64,
    reservation: Option<Reservation>,
    meter: Meter,
    fetched: u64,
}

impl Metered {
    /// Pins are the user's own: neither capped nor budgeted.
    fn of(entry: &Entry, reservation: Option<Reservation>) -> Option<Self> {
        matches!(entry.why, Why::Prefetch { .. }).then(|| Self {
            size: entry.bytes,
            meter: Meter::new(reservation.as_ref()),
            reservation,
            fetched: 0,
        })
    }

    /// Charges each provider what it sent since the last look; an error when the fill
    /// must stop.
    fn check(&mut self, inner: &Inner, p: &Progress) -> Result<(), Error> {
        self.fetched = p.fetched_bytes;
        let now = Instant::now();
        let sent = self.meter.since(&p.fetched_from);
        let mut providers = recover(&inner.providers);
        for (peer, n) in &sent {
            providers.charge(*peer, *n, now);
        }
        if let Some((peer, _)) = sent.iter().find(|(peer, _)| providers.over(peer, now)) {
            return Err(Error::OverBudget {
                provider: *peer,
                per_hour: providers.per_hour(),
            });
        }
        if p.total_bytes.max(p.done_bytes).max(p.fetched_bytes) > self.size {
            return Err(Error::TooLarge {
                id: p.id,
                size: self.size,
            });
        }
        Ok(())
    }

    /// Gives back what was reserved and not fetched.
    fn settle(&self, inner: &Inner) {
        let Some(r) = &self.reservation else {
            return;
        };
        let now = Instant::now();
        let unfetched = r.bytes.saturating_sub(self.fetched);
        recover(&inner.askers).refund(&r.asker, unfetched, now);
        if let Some((provider, unsent)) = self.meter.unused() {
            recover(&inner.providers).refund(&provider, unsent, now);
        }
    }
}

/// Records `entry` and fetches its content in the background. `reservation`: what a
/// prefetch was charged when it was taken.
pub(crate) async fn start(
    inner: &Arc<Inner>,
    entry: Entry,
    slot: FillSlot,
    reservation: Option<Reservation>,
) -> Result<(), Error> {
    let id = entry.id;
    let mut metered = Metered::of(&entry, reservation);
    inner.update(|es| es.insert(entry)).await?;
    let i = inner.clone();
    inner.tasks.spawn(async move {
        let r = run(&i, id, metered.as_mut()).await;
        if let Some(m) = &metered {
            m.settle(&i);
        }
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
async fn run(
    inner: &Inner,
    id: ContentId,
    mut metered: Option<&mut Metered>,
) -> Result<(String, u64), Error> {
    let dir = inner.data_dir();
    inner
        .tasks
        .blocking(move || std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e)))
        .await??;
    let path = inner.path_of(&id);
    let mut rx = inner
        .share
        .get(id, Output::Exact(path.clone()), Some(PATIENCE))
        .await?;
    tracing::info!(%id, "cache fill started");
    loop {
        let p = rx.borrow_and_update().clone();
        if let Some(m) = metered.as_deref_mut()
            && let Err(e) = m.check(inner, &p)
        {
            stop(inner, &p, &path).await;
            return Err(e);
        }
        match p.state {
            State::Done => {
                tracing::info!(%id, bytes = p.total_bytes, providers = ?p.providers, "cached");
                return Ok((p.name.unwrap_or_default(), p.total_bytes));
            }
            State::Failed => {
                let reason = p.error.unwrap_or_else(|| "failed".into());
                return Err(Error::Fetch { id, reason });
            }
            _ => {}
        }
        tokio::select! {
            () = inner.tasks.shutdown().cancelled() => return Err(Error::Stopped),
            r = rx.changed() => if r.is_err() {
                return Err(Error::DownloadEnded(id));
            },
        }
    }
}

/// Cancels a fill's download and removes what it wrote, when the download is the fill's
/// own (one the user started to another path is left alone).
async fn stop(inner: &Inner, p: &Progress, path: &Path) {
    let ours = p.output.as_deref().is_some_and(|o| Path::new(o) == path);
    if ours && let Err(e) = inner.share.cancel(p.id).await {
        tracing::warn!(id = %p.id, error = %e, "cannot stop a cache fill");
    }
}

/// Evicts what no longer fits within the capacity (least recently served first; never a
/// pinned entry or one being fetched), and failed entries.
pub(crate) async fn evict(inner: &Arc<Inner>) -> Result<(), Error> {
    let ids = lock(&inner.entries)?.to_evict(inner.config.capacity);
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
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&p, e)),
                _ => Ok(()),
            }
        })
        .await??;
    inner.update(|es| es.remove(&id)).await?;
    Ok(())
}
