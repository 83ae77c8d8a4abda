//! kith names service: `PEER_ID/name` points at the newest revision of a document.
//!
//! - [`Names`]: the service handle (publish, resolve, subscribe, the names known).
//! - [`Config`], [`Error`], [`Event`] (a newer revision became known); one metric,
//!   `kith_names_records_rejected` (forged, rolled back or malformed records refused).
//! - [`protocol`]: the signed record, its DHT key and gossip topic, and its checks.
//! - `book`: the names this node knows, kept on disk.
//!
//! Records live in the DHT under `/kith/name/` and are gossiped on topics of the same
//! name; the service registers its own validator for both with the overlay, so every
//! node refuses forged records and rolled-back revisions before storing or relaying them.

mod book;
pub mod protocol;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_core::ContentId;
use kith_core::tasks::{TaskError, Tasks};
use kith_overlay::{Keypair, Overlay, PeerId, RecordValidator, Rejected};
use tokio::sync::{broadcast, mpsc, watch};

use book::NameBook;
pub use protocol::{NameRecord, RecordError, check_name, full_name, parse_full_name};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("bad name: {0}")]
    BadName(String),
    #[error("{0} was not found (no record in the DHT or from subscriptions)")]
    NotFound(String),
    #[error("name record refused: {0}")]
    Refused(#[from] RecordError),
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Poisoned(#[from] kith_core::sync::Poisoned),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the name book lives.
    pub dir: PathBuf,
}

/// Something the names service learned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A newer revision of a name became known (published here, resolved or gossiped).
    Revision(NameRecord),
}

/// Validates name records and gossip for the overlay.
#[derive(Debug, Default)]
pub struct Validator;

impl RecordValidator for Validator {
    fn validate(&self, key: &[u8], value: &[u8], existing: Option<&[u8]>) -> Result<(), Rejected> {
        protocol::validate(key, value, existing).map_err(|e| Rejected(e.to_string()))
    }
}

struct Inner {
    config: Config,
    overlay: Overlay,
    keypair: Keypair,
    book: Mutex<NameBook>,
    /// Bumped when the book changes; the saver writes it out.
    dirty: watch::Sender<u64>,
    events: broadcast::Sender<Event>,
    rejected: prometheus_client::metrics::counter::Counter,
    tasks: Tasks,
}

/// The names service handle. Cheap to clone.
#[derive(Clone)]
pub struct Names {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names").finish_non_exhaustive()
    }
}

fn topic(full: &str) -> String {
    format!("{}{full}", protocol::NAME_PREFIX)
}

impl Names {
    /// Loads the name book, registers the record validator and the gossip topics, and
    /// follows the names subscribed to before.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        keypair: Keypair,
        registry: &mut prometheus_client::registry::Registry,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let dir = config.dir.clone();
        let book = tasks
            .blocking(move || {
                std::fs::create_dir_all(&dir)
                    .map(|()| NameBook::load(&dir))
                    .map_err(|source| Error::Io { path: dir, source })
            })
            .await??;
        let validator = Arc::new(Validator);
        overlay
            .register_records(protocol::NAME_PREFIX, validator.clone())
            .await?;
        let gossip = overlay.gossip(protocol::NAME_PREFIX, validator).await?;
        let subscribed = book.subscribed().to_vec();
        let rejected = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "kith_names_records_rejected",
            "Name records refused (forged, rolled back, malformed)",
            rejected.clone(),
        );
        let names = Self {
            inner: Arc::new(Inner {
                config,
                overlay,
                keypair,
                book: Mutex::new(book),
                dirty: watch::channel(0).0,
                events: broadcast::channel(64).0,
                rejected,
                tasks,
            }),
        };
        for n in subscribed {
            names.inner.overlay.subscribe(topic(&n)).await?;
        }
        let n = names.clone();
        names
            .inner
            .tasks
            .spawn(async move { n.gossip_loop(gossip).await });
        let n = names.clone();
        names.inner.tasks.spawn(async move { n.saver().await });
        Ok(names)
    }

    fn book(&self) -> Result<std::sync::MutexGuard<'_, NameBook>, Error> {
        Ok(kith_core::sync::lock(&self.inner.book)?)
    }

    /// Writes the book whenever it changed (one writer, on the blocking pool).
    async fn saver(&self) {
        let mut dirty = self.inner.dirty.subscribe();
        loop {
            tokio::select! {
                () = self.inner.tasks.shutdown().cancelled() => return,
                r = dirty.changed() => if r.is_err() { return },
            }
            let Ok(bytes) = self.book().map(|b| b.snapshot()) else {
                return;
            };
            let dir = self.inner.config.dir.clone();
            match self
                .inner
                .tasks
                .blocking(move || book::save(&dir, &bytes))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the name book"),
                Err(_) => return,
            }
        }
    }

    /// Takes a verified record; `Ok(true)` when it is newer than what was known.
    fn remember(&self, rec: NameRecord) -> Result<bool, Error> {
        let newer = self.book()?.accept(rec.clone())?;
        if newer {
            self.inner.dirty.send_modify(|g| *g += 1);
            let _ = self.inner.events.send(Event::Revision(rec));
        }
        Ok(newer)
    }

    fn refused(&self, why: &dyn std::fmt::Display) {
        tracing::warn!(reason = %why, "refused a name record");
        self.inner.rejected.inc();
    }

    /// Publishes a new revision of `name` (owned by this node) pointing at `id`.
    pub async fn publish(&self, name: &str, id: ContentId) -> Result<NameRecord, Error> {
        check_name(name)?;
        let me = self.inner.overlay.peer_id();
        let full = full_name(&me, name);
        let last = self.newest_revision(&full).unwrap_or(0);
        let time = kith_core::store::now_secs();
        let rec = NameRecord::sign(&self.inner.keypair, name, last + 1, &id, time)?;
        self.remember(rec.clone())?;
        let key = protocol::name_key(&me, name);
        let stored = self
            .inner
            .overlay
            .put_record(key.clone().into_bytes(), rec.encode())
            .await?;
        self.inner.overlay.publish(key, rec.encode()).await?;
        tracing::info!(name = %full, revision = rec.revision, id = %id, peers = stored, "published");
        Ok(rec)
    }

    /// Subscribes to `name` (`PEER_ID/name`, or a bare name of this node): new revisions
    /// arrive by gossip from then on, and after restarts.
    pub async fn subscribe(&self, name: &str) -> Result<(), Error> {
        let (owner, name) = parse_full_name(name, self.inner.overlay.peer_id())?;
        let full = full_name(&owner, &name);
        let newly = self.book()?.subscribe(&full)?;
        if newly {
            self.inner.dirty.send_modify(|g| *g += 1);
            self.inner.overlay.subscribe(topic(&full)).await?;
        }
        Ok(())
    }

    /// The newest revision of a name: what this node holds, what the DHT holds (asked for
    /// up to `timeout`), whichever is newer. Subscribes to the name.
    pub async fn resolve(&self, name: &str, timeout: Duration) -> Result<NameRecord, Error> {
        let (owner, name) = parse_full_name(name, self.inner.overlay.peer_id())?;
        let full = full_name(&owner, &name);
        self.subscribe(&full).await?;
        let key = protocol::name_key(&owner, &name);
        if owner != self.inner.overlay.peer_id() {
            let rx = self
                .inner
                .overlay
                .get_record(key.clone().into_bytes())
                .await?;
            self.take_answers(rx, key.as_bytes(), timeout).await;
        }
        let found = self.book()?.get(&full).cloned();
        found.ok_or(Error::NotFound(full))
    }

    async fn take_answers(&self, mut rx: mpsc::Receiver<Vec<u8>>, key: &[u8], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            let r = NameRecord::decode_verified(key, &v)
                .map_err(Error::from)
                .and_then(|r| self.remember(r));
            if let Err(e) = r {
                self.refused(&e);
            }
        }
    }

    /// Names this node knows (its own and those it follows), newest revisions.
    pub fn names(&self) -> Result<Vec<NameRecord>, Error> {
        Ok(self.book()?.records().cloned().collect())
    }

    /// The newest revision known of `full` (`PEER_ID/name`).
    pub fn newest_revision(&self, full: &str) -> Option<u64> {
        self.book()
            .ok()
            .and_then(|b| b.get(full).map(|r| r.revision))
    }

    /// The name and revision each known content ID is a revision of.
    pub fn by_content(&self) -> Result<HashMap<String, (String, u64)>, Error> {
        Ok(self.book()?.by_content())
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn gossip_loop(&self, mut rx: mpsc::Receiver<kith_overlay::GossipMessage>) {
        loop {
            let msg = tokio::select! {
                () = self.inner.tasks.shutdown().cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            // The overlay already ran the validator; decode it for the book.
            let r = NameRecord::decode_verified(msg.topic.as_bytes(), &msg.data)
                .map_err(Error::from)
                .and_then(|r| {
                    let newer = self.remember(r.clone())?;
                    Ok((r, newer))
                });
            match r {
                Ok((r, true)) => {
                    tracing::info!(name = %r.full_name(), revision = r.revision, "new revision");
                }
                Ok((_, false)) => {}
                Err(e) => self.refused(&e),
            }
        }
    }

    /// The peer ID names of this node are published under.
    pub fn owner(&self) -> PeerId {
        self.inner.overlay.peer_id()
    }

    /// Waits for the service's tasks after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.tasks.stopped().await;
    }
}
