//! kith share service: share files and folders by content ID, fetch them from whoever
//! has them.
//!
//! - [`Share`]: the service handle (share, unshare, list, get, downloads).
//! - [`protocol`]: the `/kith/share/1.0.0` wire format.
//! - `server`: answers peers' requests, verified on read, with per-peer limits.
//! - `download`: multi-provider, verified, resumable downloads.
//! - [`limit::RateLimit`]: upload and download caps.

mod download;
pub mod limit;
pub mod protocol;
mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kith_core::ContentId;
use kith_core::id::Kind;
use kith_core::index;
use kith_core::store::{DownloadState, ShareRecord, Store};
use kith_overlay::{Overlay, PeerId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use download::Output;
use limit::RateLimit;

/// Most downloads running at once.
pub const MAX_DOWNLOADS: usize = 64;
/// Most content IDs with provider hints kept.
const MAX_HINTS: usize = 4096;
/// How long a provider hint is used.
const HINT_TIME: Duration = Duration::from_secs(600);
/// How long a peer caught sending wrong bytes is shunned.
pub const BAN_TIME: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error(transparent)]
    Store(#[from] kith_core::store::StoreError),
    #[error("{0} is not shared")]
    NotShared(ContentId),
    #[error("too many downloads running (at most {MAX_DOWNLOADS})")]
    TooManyDownloads,
    #[error("{0} names a chunk, not a file or folder")]
    NotAManifest(ContentId),
    #[error("the share service has stopped")]
    Stopped,
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Upload cap in bytes per second (0 = unlimited).
    pub upload_limit: u64,
    /// Download cap in bytes per second (0 = unlimited).
    pub download_limit: u64,
    /// How often shared files are checked for changes.
    pub rescan: Duration,
    /// How long a download waits for a provider before giving up.
    pub patience: Duration,
    /// Streams opened to each provider during a download.
    pub streams_per_provider: usize,
    /// Test hook: flip a byte of every chunk sent (a misbehaving provider).
    #[doc(hidden)]
    pub corrupt_uploads: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            upload_limit: 0,
            download_limit: 0,
            rescan: Duration::from_secs(30),
            patience: Duration::from_secs(60),
            streams_per_provider: 4,
            corrupt_uploads: false,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    pub blocks_served: Counter,
    pub chunks_fetched: Counter,
    pub bad_chunks: Counter,
    pub downloads_done: Counter,
    pub downloads_active: Gauge,
}

impl Metrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("kith_share");
        r.register(
            "sent_bytes",
            "Content bytes sent to peers",
            self.bytes_sent.clone(),
        );
        r.register(
            "received_bytes",
            "Verified content bytes received",
            self.bytes_received.clone(),
        );
        r.register(
            "blocks_served",
            "Chunks and manifests served",
            self.blocks_served.clone(),
        );
        r.register(
            "chunks_fetched",
            "Chunks fetched and verified",
            self.chunks_fetched.clone(),
        );
        r.register(
            "bad_chunks",
            "Chunks that failed verification",
            self.bad_chunks.clone(),
        );
        r.register(
            "downloads_completed",
            "Downloads completed",
            self.downloads_done.clone(),
        );
        r.register(
            "downloads_active",
            "Downloads running",
            self.downloads_active.clone(),
        );
    }
}

/// Where a download stands.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Progress {
    pub id: ContentId,
    pub name: Option<String>,
    pub output: Option<String>,
    /// `finding`, `downloading`, `waiting` (for providers), `done` or `failed`.
    pub state: &'static str,
    pub error: Option<String>,
    pub total_bytes: u64,
    pub done_bytes: u64,
    /// Bytes that came over the network (the rest were already here).
    pub fetched_bytes: u64,
    pub chunks_total: u64,
    pub chunks_done: u64,
    /// Peers that sent verified content.
    pub providers: Vec<String>,
    /// Providers reachable only through a circuit relay (slower, and capped by the relay).
    pub relayed: Vec<String>,
    /// Something the user should know (e.g. that a transfer goes through a relay).
    pub notice: Option<String>,
}

impl Progress {
    fn new(id: ContentId) -> Self {
        Self {
            id,
            name: None,
            output: None,
            state: "finding",
            error: None,
            total_bytes: 0,
            done_bytes: 0,
            fetched_bytes: 0,
            chunks_total: 0,
            chunks_done: 0,
            providers: Vec::new(),
            relayed: Vec::new(),
            notice: None,
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self.state, "done" | "failed")
    }
}

pub(crate) struct Inner {
    pub config: Config,
    pub store: Arc<Store>,
    pub overlay: Overlay,
    pub upload_limit: RateLimit,
    pub download_limit: RateLimit,
    pub metrics: Metrics,
    downloads: Mutex<HashMap<ContentId, watch::Receiver<Progress>>>,
    banned: Mutex<HashMap<PeerId, Instant>>,
    hints: Mutex<HashMap<ContentId, (Vec<PeerId>, Instant)>>,
    changes: watch::Sender<u64>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Inner {
    /// A block (manifest or chunk) from the local store, verified. Runs off the async
    /// threads since it reads files and hashes.
    pub(crate) async fn load_block(&self, id: ContentId) -> Result<Option<Vec<u8>>, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || match id.kind() {
            Kind::Manifest => store.block(&id),
            Kind::Raw => store.read_chunk(id.hash()),
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned
            .lock()
            .map(|mut b| {
                b.retain(|_, t| t.elapsed() < BAN_TIME);
                b.contains_key(peer)
            })
            .unwrap_or(false)
    }

    /// Peers said to have `id` (by a search), tried before the DHT.
    pub(crate) fn hinted(&self, id: &ContentId) -> Vec<PeerId> {
        self.hints
            .lock()
            .ok()
            .and_then(|h| {
                h.get(id)
                    .filter(|(_, t)| t.elapsed() < HINT_TIME)
                    .map(|(p, _)| p.clone())
            })
            .unwrap_or_default()
    }

    /// Tells services that the set of shared content changed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|g| *g += 1);
    }

    pub(crate) fn ban(&self, peer: PeerId) {
        if let Ok(mut b) = self.banned.lock() {
            b.insert(peer, Instant::now());
        }
    }
}

/// The share service handle. Cheap to clone.
#[derive(Clone)]
pub struct Share {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share").finish_non_exhaustive()
    }
}

impl Share {
    /// Starts serving, announcing every share, re-checking shared files for changes and
    /// resuming downloads that were running when the node last stopped.
    pub fn start(
        config: Config,
        store: Arc<Store>,
        overlay: Overlay,
        registry: &mut Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, ShareError> {
        let incoming = overlay
            .streams()
            .accept(protocol::PROTOCOL)
            .map_err(|_| ShareError::Stopped)?;
        let inner = Arc::new(Inner {
            upload_limit: RateLimit::new(config.upload_limit),
            download_limit: RateLimit::new(config.download_limit),
            config,
            store,
            overlay,
            metrics: Metrics::default(),
            downloads: Mutex::default(),
            banned: Mutex::default(),
            hints: Mutex::default(),
            changes: watch::channel(0).0,
            tasks: TaskTracker::new(),
            shutdown: shutdown.clone(),
        });
        inner.metrics.register(registry);
        inner
            .tasks
            .spawn(server::run(inner.clone(), incoming, shutdown.clone()));
        let share = Self { inner };
        let s = share.clone();
        share.inner.tasks.spawn(async move { s.background().await });
        Ok(share)
    }

    async fn background(&self) {
        if let Ok(shares) = self.list().await {
            for s in shares {
                let _ = self.inner.overlay.start_providing(s.id.dht_key()).await;
            }
        }
        if let Ok(downloads) = self.inner.store.downloads() {
            for d in downloads
                .into_iter()
                .filter(|d| d.state == DownloadState::Running)
            {
                tracing::info!(id = %d.id, output = %d.output, "resuming download");
                if let Err(e) = self
                    .get(d.id, Output::Exact(PathBuf::from(&d.output)), None)
                    .await
                {
                    tracing::warn!(id = %d.id, error = %e, "cannot resume download");
                }
            }
        }
        let mut tick = tokio::time::interval(self.inner.config.rescan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.rescan().await {
                        tracing::warn!(error = %e, "rescan of shared files failed");
                    }
                }
            }
        }
    }

    /// Re-indexes shares whose files changed on disk; returns the new records.
    pub async fn rescan(&self) -> Result<Vec<ShareRecord>, ShareError> {
        let store = self.inner.store.clone();
        let changed = tokio::task::spawn_blocking(move || index::changed_shares(&store))
            .await
            .map_err(|_| ShareError::Stopped)??;
        let mut out = Vec::new();
        for old in changed {
            tracing::info!(id = %old.id, path = %old.path, "shared content changed; re-indexing");
            self.unshare(old.id).await?;
            match self.share(PathBuf::from(&old.path)).await {
                Ok(new) => {
                    tracing::info!(old = %old.id, new = %new.id, "re-shared under a new ID");
                    out.push(new);
                }
                Err(e) => tracing::warn!(path = %old.path, error = %e, "shared path is gone"),
            }
        }
        Ok(out)
    }

    /// Indexes and shares a file or folder in place, and announces it.
    pub async fn share(&self, path: PathBuf) -> Result<ShareRecord, ShareError> {
        let store = self.inner.store.clone();
        let rec = tokio::task::spawn_blocking(move || index::share_path(&store, &path))
            .await
            .map_err(|_| ShareError::Stopped)??;
        self.inner.overlay.start_providing(rec.id.dht_key()).await?;
        self.inner.changed();
        tracing::info!(id = %rec.id, path = %rec.path, bytes = rec.size, "shared");
        Ok(rec)
    }

    pub async fn unshare(&self, id: ContentId) -> Result<ShareRecord, ShareError> {
        let store = self.inner.store.clone();
        let rec = tokio::task::spawn_blocking(move || index::unshare(&store, &id))
            .await
            .map_err(|_| ShareError::Stopped)??
            .ok_or(ShareError::NotShared(id))?;
        self.inner.changed();
        self.inner.overlay.stop_providing(id.dht_key()).await?;
        Ok(rec)
    }

    pub async fn list(&self) -> Result<Vec<ShareRecord>, ShareError> {
        let store = self.inner.store.clone();
        let mut v = tokio::task::spawn_blocking(move || store.shares())
            .await
            .map_err(|_| ShareError::Stopped)??;
        v.sort_by_key(|s| std::cmp::Reverse(s.added));
        Ok(v)
    }

    /// Starts fetching `id` (or joins the download already running) and returns its
    /// progress. The download runs in the node, whoever watches it.
    pub async fn get(
        &self,
        id: ContentId,
        output: Output,
        patience: Option<Duration>,
    ) -> Result<watch::Receiver<Progress>, ShareError> {
        if id.kind() != Kind::Manifest {
            return Err(ShareError::NotAManifest(id));
        }
        let mut map = self
            .inner
            .downloads
            .lock()
            .map_err(|_| ShareError::Stopped)?;
        map.retain(|_, rx| !rx.borrow().finished());
        if let Some(rx) = map.get(&id) {
            return Ok(rx.clone());
        }
        if map.len() >= MAX_DOWNLOADS {
            return Err(ShareError::TooManyDownloads);
        }
        let (tx, rx) = watch::channel(Progress::new(id));
        map.insert(id, rx.clone());
        drop(map);
        let inner = self.inner.clone();
        let patience = patience.unwrap_or(self.inner.config.patience);
        self.inner
            .tasks
            .spawn(download::run(inner, id, output, patience, tx));
        Ok(rx)
    }

    /// Remembers peers that are said to have `id` (e.g. from a search): downloads of
    /// `id` ask them first.
    pub fn hint(&self, id: ContentId, peers: Vec<PeerId>) {
        if let Ok(mut h) = self.inner.hints.lock() {
            if h.len() >= MAX_HINTS {
                h.retain(|_, (_, t)| t.elapsed() < HINT_TIME);
                if h.len() >= MAX_HINTS {
                    h.clear();
                }
            }
            let e = h.entry(id).or_insert_with(|| (Vec::new(), Instant::now()));
            e.1 = Instant::now();
            for p in peers.into_iter().take(32) {
                if !e.0.contains(&p) && e.0.len() < 32 {
                    e.0.push(p);
                }
            }
        }
    }

    /// A counter that goes up whenever the set of shared content changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Downloads running now.
    pub fn downloads(&self) -> Vec<Progress> {
        self.inner
            .downloads
            .lock()
            .map(|m| {
                m.values()
                    .map(|rx| rx.borrow().clone())
                    .filter(|p| !p.finished())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for the service's tasks to stop after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
