//! What the vault's tasks share: [`Inner`] wires the owners of its state together.

use std::sync::{Arc, MutexGuard};

use kith_core::scope::Scopes;
use kith_core::sync::Poisoned;
use kith_core::tasks::Tasks;
use kith_overlay::{Overlay, PeerId};
use kith_people::People;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use crate::catalog::Catalog;
use crate::directory::Directory;
use crate::holder::Holder;
use crate::index::Index;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::place::Finder;
use crate::root::Signer;
use crate::server::Side;
use crate::{Config, Error, Event};

/// What the vault's tasks share: the config and the handles it was started with, and
/// one owner for each piece of state (the index, the ledger, the holder's account, the
/// holders known), each with its own narrow API.
pub(crate) struct Inner {
    config: Config,
    overlay: Overlay,
    people: People,
    scopes: Arc<dyn Scopes>,
    signer: Signer,
    index_key: [u8; 32],
    holder: Arc<Holder>,
    catalog: Arc<Catalog>,
    /// Shares placed that the index does not point to: placing, or to release.
    ledger: Ledger,
    directory: Directory,
    /// One change of the index at a time that spans the network (put, remove, repair,
    /// publish), so two never place or free the same segment.
    changing: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<Event>,
    tasks: Tasks,
}

/// Events kept for a receiver that lags (it reads the state again past that).
const EVENTS: usize = 64;

impl Inner {
    pub async fn open(
        config: Config,
        overlay: Overlay,
        people: People,
        scopes: Arc<dyn Scopes>,
        signer: Signer,
        registry: &mut Registry,
        tasks: Tasks,
    ) -> Result<Arc<Self>, Error> {
        let (dir, offer) = (config.dir.clone(), config.offer);
        let full_after = config.fail_writes_after;
        let (catalog, holder, ledger) = tasks
            .blocking(move || -> Result<_, Error> {
                let catalog = Catalog::load(&dir)?;
                let holder = Holder::load(&dir, offer, full_after);
                Ok((catalog, holder, Ledger::load(&dir)))
            })
            .await??;
        let index_key = signer.index_key()?;
        let metrics = Metrics::default();
        metrics.register(registry);
        metrics.held.set(holder.used() as i64);
        Ok(Arc::new(Self {
            config,
            overlay,
            people,
            scopes,
            signer,
            index_key,
            holder: Arc::new(holder),
            catalog: Arc::new(catalog),
            ledger,
            directory: Directory::default(),
            changing: tokio::sync::Mutex::new(()),
            metrics: Arc::new(metrics),
            events: broadcast::channel(EVENTS).0,
            tasks,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    pub fn scopes(&self) -> &dyn Scopes {
        self.scopes.as_ref()
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The key that seals the index's copy in the vault.
    pub fn index_key(&self) -> &[u8; 32] {
        &self.index_key
    }

    pub fn holder(&self) -> &Arc<Holder> {
        &self.holder
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Waits for the turn to change the index across the network.
    pub async fn changing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }

    /// The index, for memory work only (never held across I/O).
    pub fn index(&self) -> Result<MutexGuard<'_, Index>, Poisoned> {
        self.catalog.index()
    }

    /// Writes the index to disk.
    pub async fn save(&self) -> Result<(), Error> {
        self.catalog.save(&self.tasks).await
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Tells whoever listens (nobody listening is fine).
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// A share came back wrong or was lost: repair it, and its holder gets no more.
    pub fn strike(&self, seg: u64, share: usize) -> Result<(), Poisoned> {
        if let Some(holder) = self.catalog.strike(seg, share)? {
            self.metrics.audit_failures.inc();
            tracing::warn!(%holder, seg, share, "a holder lost or spoiled a share");
            self.emit(Event::HolderFault { holder, seg, share });
        }
        Ok(())
    }

    /// What the holder's side of the protocol takes.
    pub fn side(&self) -> Side {
        Side {
            holder: self.holder.clone(),
            catalog: self.catalog.clone(),
            people: self.people.clone(),
            metrics: self.metrics.clone(),
            tasks: self.tasks.clone(),
        }
    }

    /// What finding holders takes.
    pub fn finder(&self) -> Finder<'_> {
        Finder {
            overlay: &self.overlay,
            directory: &self.directory,
            catalog: &self.catalog,
            people: &self.people,
        }
    }

    pub fn person_of(&self, peer: &PeerId) -> Option<String> {
        self.people.person_of(peer).map(|p| p.to_string())
    }
}
