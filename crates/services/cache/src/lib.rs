//! kith cache service: content migrates to the area of use. A node started with a cache
//! (`kith up --cache 10G`) fetches popular content ahead for the readers of its region
//! when a source asks it to, keeps what the user pins, and evicts the least recently
//! served of the rest to stay within its size. Downloads prefer near providers (share's
//! scheduler), so readers of the region then fetch from the cache, not the distant
//! source.
//!
//! - [`Cache`]: the service handle (pin, unpin, status).
//! - [`Config`], [`Error`], [`Status`].
//! - [`protocol`]: the `/kith/cache/1.0.0` wire format.
//! - `hint`: the source's side: demand per region ([`demand`]), and asking a cache node
//!   of the region to prefetch.
//! - `server`: the cache node's side: reads the content's real size from its root
//!   manifest, and takes a prefetch only within the room and the budgets ([`budget`]: bytes
//!   per asking peer and per provider, per hour).
//! - `fill`: fetching into the cache (through share, which then provides it), stopped
//!   when it grows past the size read or a provider past its budget; eviction.
//! - [`entries`]: what the cache holds and why, kept in `cache.json`.

pub mod budget;
pub mod demand;
pub mod entries;
mod fill;
mod hint;
pub mod protocol;
mod server;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_core::ContentId;
use kith_core::tasks::{TaskError, Tasks};
use kith_overlay::{Overlay, PeerId};
use kith_share::Share;
use serde::Serialize;

pub use demand::{Asked, Hint};
pub use entries::{Entry, Fill, Why};
use kith_core::sync::lock;
use state::{FillSlot, Inner};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0} is not in the cache")]
    NotCached(ContentId),
    #[error("{0} is this node's own share: it is kept as long as it is shared")]
    Own(ContentId),
    #[error("{0} names a chunk, not a file or folder")]
    NotAManifest(ContentId),
    #[error("too many fetches into the cache at once; try again shortly")]
    Busy,
    /// The download failed: share's reason (share reports it as text).
    #[error("cannot fetch {id} into the cache: {reason}")]
    Fetch { id: ContentId, reason: String },
    #[error("cannot fetch {0} into the cache: the download ended")]
    DownloadEnded(ContentId),
    #[error("{id} grew past the {size} bytes its manifest said; stopped")]
    TooLarge { id: ContentId, size: u64 },
    #[error("{provider} has sent this node its {per_hour} bytes for this hour; stopped")]
    OverBudget { provider: PeerId, per_hour: u64 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is damaged: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the cache's entries: {0}")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Poisoned(#[from] kith_core::sync::Poisoned),
    #[error("stopped")]
    Stopped,
    #[error(transparent)]
    Share(#[from] kith_share::Error),
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
    #[error("peer: {0}")]
    Frame(#[from] kith_core::frame::FrameError),
    #[error(transparent)]
    Task(#[from] TaskError),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the cache keeps `cache.json` and the content (`data/`).
    pub dir: PathBuf,
    /// Bytes of content cached for others (0: no cache; pins are kept all the same).
    pub capacity: u64,
    /// Distinct peers of one region that ask for the same content (within `window`)
    /// before a cache node there is asked to fetch it ahead.
    pub demand: u32,
    pub window: Duration,
    /// Least time between two hints for the same content and region.
    pub cooldown: Duration,
    /// Bytes one asking peer can make this node fetch ahead per hour (`None`: the
    /// capacity, a cache's worth an hour).
    pub asker_budget: Option<u64>,
    /// Bytes this node fetches ahead from one provider per hour (`None`: the capacity).
    pub provider_budget: Option<u64>,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            capacity: 0,
            demand: 3,
            window: Duration::from_secs(3600),
            cooldown: Duration::from_secs(600),
            asker_budget: None,
            provider_budget: None,
        }
    }
}

/// What `kith cache status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub capacity: u64,
    pub used: u64,
    pub pinned_bytes: u64,
    pub entries: Vec<Entry>,
    /// Hints this node sent as a source, newest last.
    pub hints: Vec<Hint>,
    /// Content of this node's that regions asked for (within the window), most asked first.
    pub demand: Vec<Asked>,
}

pub(crate) use kith_core::store::now_ms;

/// The cache service handle. Cheap to clone.
impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

impl Cache {
    /// Serves prefetch requests, announces this node as a cache node when it has a
    /// capacity, watches the downloads that start here, and resumes fills the node was
    /// doing when it stopped.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        share: Share,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let inner = Arc::new(Inner::new(config, overlay, share, tasks)?);
        server::start(&inner)?;
        if inner.config.capacity > 0 {
            inner
                .overlay
                .start_providing(protocol::NODES_KEY.to_vec())
                .await?;
        }
        let i = inner.clone();
        inner.tasks.spawn(hint::watch(i));
        let cache = Self { inner };
        cache.resume().await?;
        Ok(cache)
    }

    /// Fills that were running when the node stopped start again (share resumes the
    /// download itself; this waits for it).
    async fn resume(&self) -> Result<(), Error> {
        let fetching: Vec<Entry> = lock(&self.inner.entries)?
            .list()
            .into_iter()
            .filter(|e| e.fill == Fill::Fetching)
            .collect();
        for e in fetching {
            let slot = FillSlot(self.inner.clone());
            *kith_core::sync::recover(&self.inner.fills) += 1;
            fill::start(&self.inner, e, slot, None).await?;
        }
        Ok(())
    }

    /// Keeps `id` on this node: an entry already cached is pinned (never evicted); else
    /// it is fetched into the cache, pinned.
    pub async fn pin(&self, id: ContentId) -> Result<Entry, Error> {
        if id.kind() != kith_core::id::Kind::Manifest {
            return Err(Error::NotAManifest(id));
        }
        if let Some(e) = self.inner.entry(&id)?
            && e.fill != Fill::Failed
        {
            return self
                .inner
                .update(|es| {
                    es.get_mut(&id).map(|e| {
                        e.pinned = true;
                        e.clone()
                    })
                })
                .await?
                .ok_or(Error::NotCached(id));
        }
        if fill::own(&self.inner, &id).await? {
            return Err(Error::Own(id));
        }
        if !self.inner.start_fill() {
            return Err(Error::Busy);
        }
        let slot = FillSlot(self.inner.clone());
        let entry = Entry::new(id, 0, true, Why::Pinned, now_ms());
        fill::start(&self.inner, entry.clone(), slot, None).await?;
        Ok(entry)
    }

    /// Lets `id` be evicted again (at once, when the cache is over its size).
    pub async fn unpin(&self, id: ContentId) -> Result<Entry, Error> {
        let e = self
            .inner
            .update(|es| {
                es.get_mut(&id).map(|e| {
                    e.pinned = false;
                    e.clone()
                })
            })
            .await?
            .ok_or(Error::NotCached(id))?;
        fill::evict(&self.inner).await?;
        Ok(e)
    }

    pub fn status(&self) -> Result<Status, Error> {
        let es = lock(&self.inner.entries)?;
        let d = lock(&self.inner.demand)?;
        Ok(Status {
            capacity: self.inner.config.capacity,
            used: es.used(),
            pinned_bytes: es.pinned_bytes(),
            entries: es.list(),
            hints: d.hints.iter().cloned().collect(),
            demand: d.top(20, tokio::time::Instant::now()),
        })
    }

    /// Waits for the service's tasks to stop after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.tasks.stopped().await;
    }
}
