//! kith share service: share files and folders by content ID, fetch them from whoever
//! has them. It is the template the other services follow (`docs/architecture.md`).
//!
//! - [`Share`]: the service handle (share, unshare, list, catalogue, get, downloads).
//! - [`Config`], [`Error`], [`Event`], [`Progress`].
//! - [`protocol`]: the `/kith/share/1.0.0` wire format.
//! - `server`: answers peers' requests, verified on read, behind the overlay's inbound
//!   limits; `client`: one request on a stream, checked and timed.
//! - `download`: multi-provider, verified, resumable downloads (finder, manifests, plan,
//!   scheduler, workers).
//! - `strikes`: providers caught breaking the protocol or sending wrong bytes, shunned by
//!   every download.
//! - State: [`records`] (its tables in the store), `indexer`, [`catalogue`], `journal` (what
//!   to rebuild from if the store is lost), [`rate::RateLimit`].

pub mod catalogue;
mod client;
mod download;
pub mod indexer;
mod journal;
mod origins;
pub mod protocol;
pub mod rate;
pub mod records;
mod running;
mod scoped;
mod server;
mod state;
mod strikes;
mod traffic;
mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_core::ContentId;
use kith_core::id::Kind;
use kith_core::store::Store;
use kith_core::tasks::{TaskError, Tasks};
use kith_overlay::{Overlay, PeerId};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

pub use download::{Output, Root};
pub use indexer::IndexError;
pub use origins::{Audience, Refusal};
pub use records::{DownloadRecord, DownloadState, ShareKind, ShareRecord};
use state::Inner;
pub use view::{FileView, Span};

/// Most downloads running at once.
pub const MAX_DOWNLOADS: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Index(#[from] indexer::IndexError),
    #[error(transparent)]
    Store(#[from] kith_core::store::StoreError),
    #[error("{0} is not shared")]
    NotShared(ContentId),
    #[error("too many downloads running (at most {MAX_DOWNLOADS})")]
    TooManyDownloads,
    #[error("{0} names a chunk, not a file or folder")]
    NotAManifest(ContentId),
    #[error("no download of {0} is running or paused")]
    NotDownloading(ContentId),
    #[error("the download of {0} is not paused")]
    NotPaused(ContentId),
    #[error("{0} is not here: it is neither shared nor fetched by this node")]
    NotHere(ContentId),
    #[error("{0} is a folder: name a file inside it (ID/path)")]
    IsAFolder(ContentId),
    #[error("no file {0:?} in that folder")]
    NoSuchPath(String),
    #[error("this device is not in group {0}")]
    NotInScope(String),
    #[error("cannot read the manifest of {id}: {source}")]
    Manifest {
        id: ContentId,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
    #[error("cannot record where content came from: {0}")]
    Origins(#[source] std::io::Error),
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl Error {
    pub(crate) fn stopped() -> Self {
        Error::Task(TaskError::Stopped("share"))
    }
}

impl From<kith_core::sync::Poisoned> for Error {
    fn from(_: kith_core::sync::Poisoned) -> Self {
        Error::stopped()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the service keeps its own files (the recovery journal).
    pub dir: PathBuf,
    /// Upload cap in bytes per second (0 = unlimited).
    pub upload_limit: u64,
    /// Download cap in bytes per second (0 = unlimited).
    pub download_limit: u64,
    /// How often shared files are checked for changes.
    pub rescan: Duration,
    /// How long a download may go without progress (no provider, or none that sends)
    /// before it fails.
    pub patience: Duration,
    /// Streams opened to each provider during a download.
    pub streams_per_provider: usize,
    /// Longest time a response may make no progress at all before the provider counts as
    /// stalled (one 256 KiB read step in 20 s is about 13 KiB/s).
    pub stall_timeout: Duration,
    /// Test hook: flip a byte of every chunk sent (a misbehaving provider).
    #[doc(hidden)]
    pub corrupt_uploads: bool,
    /// Test hook: a bug in the indexer (it panics), to check that a panic stops the node.
    #[doc(hidden)]
    pub panic_on_share: bool,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            upload_limit: 0,
            download_limit: 0,
            rescan: Duration::from_secs(30),
            patience: Duration::from_secs(60),
            streams_per_provider: 4,
            stall_timeout: Duration::from_secs(20),
            corrupt_uploads: false,
            panic_on_share: false,
        }
    }
}

/// Something the share service did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The set of shared content changed (shared, unshared, re-indexed, downloaded).
    SharesChanged,
    /// A download finished: everything is verified and written.
    DownloadDone { id: ContentId },
    /// A download failed.
    DownloadFailed { id: ContentId, error: String },
    /// A peer asked for the manifest of something this node shares publicly: a download
    /// of it starts (or goes on) there.
    Requested { id: ContentId, peer: PeerId },
}

/// Where a download stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ProgressState)]
pub enum State {
    /// Looking for providers and the manifests.
    Finding,
    Downloading,
    /// Every provider has gone; waiting for one (up to the patience).
    Waiting,
    /// Stopped by the user; verified chunks are kept and it resumes when asked.
    Paused,
    Done,
    Failed,
    /// Stopped by the user; what it had written is removed.
    Cancelled,
}

impl State {
    /// Its name in the API (`finding`, `paused`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Finding => "finding",
            State::Downloading => "downloading",
            State::Waiting => "waiting",
            State::Paused => "paused",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A download's progress: one line of `POST /downloads` and an item of `GET /downloads`
/// in the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Progress {
    /// The content ID.
    #[schema(value_type = String)]
    pub id: ContentId,
    pub name: Option<String>,
    pub output: Option<String>,
    /// `finding`, `downloading`, `waiting` (for providers), `paused`, `done`, `failed` or
    /// `cancelled`.
    pub state: State,
    pub error: Option<String>,
    pub total_bytes: u64,
    pub done_bytes: u64,
    /// Bytes that came over the network (the rest were already here).
    pub fetched_bytes: u64,
    pub chunks_total: u64,
    pub chunks_done: u64,
    /// Peers that sent verified content.
    pub providers: Vec<String>,
    /// Verified bytes of chunks each provider sent, in the order they first sent one
    /// (the node's own accounting; not in the API).
    #[serde(skip)]
    pub fetched_from: Vec<(String, u64)>,
    /// Providers reachable only through a circuit relay (slower, and capped by the relay).
    pub relayed: Vec<String>,
    /// Something the user should know (e.g. that a transfer goes through a relay).
    pub notice: Option<String>,
    /// Bytes per second fetched over the last half second.
    #[serde(default)]
    pub rate: u64,
}

impl Progress {
    fn new(id: ContentId) -> Self {
        Self {
            id,
            name: None,
            output: None,
            state: State::Finding,
            error: None,
            total_bytes: 0,
            done_bytes: 0,
            fetched_bytes: 0,
            chunks_total: 0,
            chunks_done: 0,
            providers: Vec::new(),
            fetched_from: Vec::new(),
            relayed: Vec::new(),
            notice: None,
            rate: 0,
        }
    }

    /// It ended (done, failed, cancelled) or is paused: no more progress comes.
    pub fn finished(&self) -> bool {
        matches!(
            self.state,
            State::Done | State::Failed | State::Paused | State::Cancelled
        )
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
    /// Starts serving, rebuilds shares from the journal if the store lost them, announces
    /// every share, re-checks shared files for changes and resumes the downloads that were
    /// running when the node last stopped.
    pub fn start(
        config: Config,
        store: Arc<Store>,
        overlay: Overlay,
        scopes: Arc<dyn kith_core::scope::Scopes>,
        registry: &mut Registry,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let inner = Inner::new(config, store, overlay, scopes, registry, tasks);
        server::start(&inner)?;
        let share = Self { inner };
        let s = share.clone();
        share
            .inner
            .tasks()
            .spawn(async move { s.background().await });
        Ok(share)
    }

    async fn background(&self) {
        let inner = self.inner.clone();
        let upgraded = self
            .inner
            .tasks()
            .blocking(move || -> Result<(), Error> {
                records::migrate(inner.store())?;
                Ok(scoped::seed_origins(inner.store(), inner.origins())?)
            })
            .await;
        if let Err(e) = upgraded.map_err(Error::from).and_then(|r| r) {
            tracing::warn!(error = %e, "cannot bring share records up to date");
        }
        if let Err(e) = journal::rebuild_if_lost(self).await {
            tracing::warn!(error = %e, "cannot rebuild shares from the journal");
        }
        self.inner.changed().await;
        self.announce_all().await;
        self.resume_downloads().await;
        let mut tick = tokio::time::interval(self.inner.config().rescan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = self.inner.tasks().shutdown().cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.rescan().await {
                        tracing::warn!(error = %e, "rescan of shared files failed");
                    }
                }
            }
        }
    }

    async fn resume_downloads(&self) {
        let store = self.inner.store().clone();
        let Ok(Ok(downloads)) = self
            .inner
            .tasks()
            .blocking(move || records::downloads(&store))
            .await
        else {
            return;
        };
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

    /// Announces every share again, each under its current key (a group's content under
    /// the group's locator, which changes with the group's key).
    pub async fn announce_all(&self) {
        if let Ok(shares) = self.list().await {
            for s in shares {
                self.inner.announce(s.id, s.scope.as_deref()).await;
            }
        }
    }

    /// Re-indexes shares whose files changed on disk; returns the new records.
    pub async fn rescan(&self) -> Result<Vec<ShareRecord>, Error> {
        let store = self.inner.store().clone();
        let changed = self
            .inner
            .tasks()
            .blocking(move || indexer::changed_shares(&store))
            .await??;
        let mut out = Vec::new();
        for old in changed {
            tracing::info!(id = %old.id, path = %old.path, "shared content changed; re-indexing");
            // Every copy stays shared: the recorded one, and others fetched elsewhere.
            let (store, o) = (self.inner.store().clone(), old.clone());
            let (copies, name) = self
                .inner
                .tasks()
                .blocking(move || -> Result<_, Error> {
                    let name = store
                        .block(&o.id)?
                        .and_then(|b| kith_core::manifest::Manifest::decode(&b).ok())
                        .map(|m| m.name().to_owned());
                    Ok((indexer::other_copies(&store, &o)?, name))
                })
                .await??;
            self.unshare(old.id).await?;
            let recorded = PathBuf::from(&old.path);
            let paths = std::iter::once(recorded.clone()).chain(copies);
            for path in paths.filter(|p| p.exists()) {
                // A copy goes where its content came from; the recorded path keeps the
                // audience it had.
                let audience = match &old.scope {
                    Some(g) => Audience::Group(g.clone()),
                    None if old.public_on_purpose && path == recorded => Audience::Public,
                    None => Audience::Inherit,
                };
                match self.share_as(path.clone(), audience, name.clone()).await {
                    Ok(new) => {
                        tracing::info!(old = %old.id, new = %new.id, path = %path.display(), "re-shared");
                        out.push(new);
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot share again")
                    }
                }
            }
            if !recorded.exists() {
                tracing::info!(path = %old.path, "a shared copy is gone");
            }
        }
        Ok(out)
    }

    /// Indexes and shares a file or folder in place, and announces it to `audience`:
    /// publicly, or for the members of a group only. Content that came to this node in a
    /// group stays in it unless the audience is [`Audience::Public`].
    pub async fn share(&self, path: PathBuf, audience: Audience) -> Result<ShareRecord, Error> {
        self.share_as(path, audience, None).await
    }

    /// [`Share::share`] with the root named `name` (a copy keeps its content's ID).
    pub(crate) async fn share_as(
        &self,
        path: PathBuf,
        audience: Audience,
        name: Option<String>,
    ) -> Result<ShareRecord, Error> {
        if let Audience::Group(s) = &audience
            && !self.inner.scopes().belongs(s)
        {
            return Err(Error::NotInScope(s.clone()));
        }
        let inner = self.inner.clone();
        let bug = self.inner.config().panic_on_share;
        let rec = self
            .inner
            .tasks()
            .blocking(move || {
                assert!(!bug, "test hook: a bug while indexing {}", path.display());
                let scopes = inner.scopes().clone();
                let belongs = move |g: &str| scopes.belongs(g);
                let ask = indexer::Ask {
                    audience: &audience,
                    name,
                    origins: inner.origins(),
                    belongs: &belongs,
                };
                indexer::share_path_as(inner.store(), &path, &ask)
            })
            .await??;
        self.inner.changed().await;
        self.inner.announce(rec.id, rec.scope.as_deref()).await;
        tracing::info!(id = %rec.id, path = %rec.path, bytes = rec.size, group = ?rec.scope, "shared");
        Ok(rec)
    }

    /// Remembers the files under `path` as content of `group` (restored from a group's
    /// object in the vault, say): sharing them later keeps them in that group, as for
    /// content fetched from its members.
    pub async fn came_in(&self, path: PathBuf, group: String) -> Result<usize, Error> {
        let inner = self.inner.clone();
        let n = self
            .inner
            .tasks()
            .blocking(move || -> Result<usize, Error> {
                let keys: Vec<origins::Key> = origins::contents_under(&path)
                    .map_err(IndexError::from)?
                    .into_iter()
                    .map(origins::Key::File)
                    .collect();
                inner
                    .origins()
                    .record(&keys, &group)
                    .map_err(Error::Origins)?;
                Ok(keys.len())
            })
            .await??;
        self.inner.changed().await;
        Ok(n)
    }

    /// Stops sharing content `id` (publicly and with every group); returns the most
    /// recent of its shares.
    pub async fn unshare(&self, id: ContentId) -> Result<ShareRecord, Error> {
        let store = self.inner.store().clone();
        let mut recs = self
            .inner
            .tasks()
            .blocking(move || indexer::unshare(&store, &id))
            .await??;
        self.inner.changed().await;
        for r in &recs {
            self.inner.withdraw(id, r.scope.as_deref()).await;
        }
        recs.sort_by_key(|r| std::cmp::Reverse(r.added));
        recs.into_iter().next().ok_or(Error::NotShared(id))
    }

    /// What this node shares, newest first.
    pub async fn list(&self) -> Result<Vec<ShareRecord>, Error> {
        let store = self.inner.store().clone();
        let mut v = self
            .inner
            .tasks()
            .blocking(move || records::shares(&store))
            .await??;
        v.sort_by_key(|s| std::cmp::Reverse(s.added));
        Ok(v)
    }

    /// Every shared file and folder, and every file inside a shared folder.
    pub async fn catalogue(&self) -> Result<Vec<catalogue::Item>, Error> {
        let store = self.inner.store().clone();
        let items = self
            .inner
            .tasks()
            .blocking(move || catalogue::build(&store))
            .await??;
        Ok(items.into_values().collect())
    }

    /// Starts fetching `id` (or joins the download already running) and returns its
    /// progress. The download runs in the node, whoever watches it. `patience` overrides
    /// how long it may go without progress.
    pub async fn get(
        &self,
        id: ContentId,
        output: Output,
        patience: Option<Duration>,
    ) -> Result<watch::Receiver<Progress>, Error> {
        if id.kind() != Kind::Manifest {
            return Err(Error::NotAManifest(id));
        }
        let tx = match self.inner.running().start(id)? {
            running::Start::Running(rx) => return Ok(rx),
            running::Start::New(tx) => tx,
        };
        let rx = tx.subscribe();
        let patience = patience.unwrap_or(self.inner.config().patience);
        let inner = self.inner.clone();
        let control = self
            .inner
            .running()
            .control(id, self.inner.tasks().shutdown());
        self.inner.tasks().spawn(async move {
            download::run(inner, id, output, patience, tx, control).await;
        });
        Ok(rx)
    }

    /// The root manifest of `id`, verified: from the store, or from its providers (found
    /// as a download finds them: peers hinted, connected peers, the DHT) within
    /// `patience`. What it fetches is kept nowhere, so it tells what a download of `id`
    /// would be (its size, a folder's entries) before anything else moves.
    pub async fn read_root(&self, id: ContentId, patience: Duration) -> Result<Root, Error> {
        if id.kind() != Kind::Manifest {
            return Err(Error::NotAManifest(id));
        }
        download::root(&self.inner, id, patience).await
    }

    /// Pauses a running download: it stops at once, its verified chunks are kept, and
    /// it stays paused (across restarts) until [`Share::resume`].
    pub async fn pause(&self, id: ContentId) -> Result<(), Error> {
        if !self.inner.running().halt(id, running::Halt::Pause) {
            return Err(Error::NotDownloading(id));
        }
        self.inner.running().halted(id).await;
        Ok(())
    }

    /// The record of the download of `id`, if there is one.
    async fn download_record(
        &self,
        id: ContentId,
    ) -> Result<Option<records::DownloadRecord>, Error> {
        let store = self.inner.store().clone();
        Ok(self
            .inner
            .tasks()
            .blocking(move || records::download(&store, &id))
            .await??)
    }

    /// Resumes a paused download into the output it had.
    pub async fn resume(&self, id: ContentId) -> Result<watch::Receiver<Progress>, Error> {
        let rec = self.download_record(id).await?;
        match rec {
            Some(r) if r.state == DownloadState::Paused => {
                self.get(id, Output::Exact(PathBuf::from(r.output)), None)
                    .await
            }
            Some(_) => Err(Error::NotPaused(id)),
            None => Err(Error::NotDownloading(id)),
        }
    }

    /// Cancels a running or paused download and removes what it had written.
    pub async fn cancel(&self, id: ContentId) -> Result<(), Error> {
        if self.inner.running().halt(id, running::Halt::Cancel) {
            self.inner.running().halted(id).await;
            return Ok(());
        }
        let rec = self.download_record(id).await?;
        match rec {
            Some(r) if r.state == DownloadState::Paused => {
                download::discard(&self.inner, id).await?;
                self.inner.running().forget(&id)?;
                Ok(())
            }
            _ => Err(Error::NotDownloading(id)),
        }
    }

    /// Remembers peers that are said to have `id` (e.g. from a search): downloads of
    /// `id` ask them first.
    pub fn hint(&self, id: ContentId, peers: Vec<PeerId>) {
        self.inner.hint(id, peers);
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events().subscribe()
    }

    /// Downloads running or paused now.
    pub async fn downloads(&self) -> Result<Vec<Progress>, Error> {
        let mut out: Vec<Progress> = self.inner.running().progress()?;
        // Paused before the node last started: only their records are left.
        let store = self.inner.store().clone();
        let paused = self
            .inner
            .tasks()
            .blocking(move || records::downloads(&store))
            .await??;
        for r in paused
            .into_iter()
            .filter(|r| r.state == DownloadState::Paused)
        {
            if !out.iter().any(|p| p.id == r.id) {
                let mut p = Progress::new(r.id);
                p.state = State::Paused;
                p.output = Some(r.output);
                out.push(p);
            }
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    /// Waits for the service's tasks to stop after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.tasks().stopped().await;
    }
}
