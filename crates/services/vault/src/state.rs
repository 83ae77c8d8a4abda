//! What the vault's tasks share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kith_core::scope::Scopes;
use kith_core::sync::recover;
use kith_core::tasks::Tasks;
use kith_overlay::{Overlay, PeerId};
use kith_people::People;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::holder::Holder;
use crate::index::Index;
use crate::ledger::Ledger;
use crate::root::Signer;
use crate::{Config, Error};

#[derive(Default)]
pub(crate) struct Metrics {
    pub held: Gauge,
    pub served: Counter,
    pub refused: Counter,
    pub audits: Counter,
    pub audit_failures: Counter,
    pub repairs: Counter,
    pub uploaded: Counter,
}

impl Metrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("kith_vault");
        r.register("held_bytes", "Bytes held for others", self.held.clone());
        r.register(
            "shares_served",
            "Shares sent back to owners",
            self.served.clone(),
        );
        r.register(
            "refused_shares",
            "Shares this holder refused (no room, disk full, not matching their name)",
            self.refused.clone(),
        );
        r.register(
            "audits",
            "Audits of this node's shares",
            self.audits.clone(),
        );
        r.register(
            "audit_failures",
            "Audits a holder failed (lost or wrong data)",
            self.audit_failures.clone(),
        );
        r.register(
            "repairs",
            "Shares rebuilt and placed anew",
            self.repairs.clone(),
        );
        r.register(
            "uploaded_bytes",
            "Share bytes sent to holders",
            self.uploaded.clone(),
        );
    }
}

pub(crate) struct Inner {
    pub config: Config,
    pub overlay: Overlay,
    pub people: People,
    pub scopes: Arc<dyn Scopes>,
    pub signer: Signer,
    pub index_key: [u8; 32],
    pub holder: Arc<Holder>,
    index: Mutex<Index>,
    /// Shares placed that the index does not point to: placing, or to release.
    pub ledger: Ledger,
    /// The index changed since its copy in the vault was last stored (`unpublished` in
    /// the vault's folder says so across restarts).
    unpublished: AtomicBool,
    /// One change of the index at a time that spans the network (put, remove, repair,
    /// publish), so two never place or free the same segment.
    pub changing: tokio::sync::Mutex<()>,
    pub metrics: Metrics,
    /// Holders that did not answer lately: asked last.
    away: Mutex<HashMap<String, Instant>>,
    /// Holders found in the DHT or that offered room (most recent last).
    known: Mutex<Vec<PeerId>>,
    pub tasks: Tasks,
}

/// The file that says the index has changes its copy in the vault lacks.
const UNPUBLISHED: &str = "unpublished";
/// How long a holder that did not answer is asked last.
const AWAY: Duration = Duration::from_secs(60);
/// Most holders remembered as away.
const MAX_AWAY: usize = 4096;
/// Most holders remembered as known.
const MAX_KNOWN: usize = 256;

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
        let (index, holder, ledger, unpublished) = tasks
            .blocking(move || -> Result<_, Error> {
                let index = Index::load(&dir)?;
                let holder = Holder::load(&dir, offer, full_after);
                let unpublished = dir.join(UNPUBLISHED).exists();
                Ok((index, holder, Ledger::load(&dir), unpublished))
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
            index: Mutex::new(index),
            ledger,
            unpublished: AtomicBool::new(unpublished),
            changing: tokio::sync::Mutex::new(()),
            metrics,
            away: Mutex::new(HashMap::new()),
            known: Mutex::new(Vec::new()),
            tasks,
        }))
    }

    /// The index, for memory work only (never held across I/O).
    pub fn index(&self) -> MutexGuard<'_, Index> {
        recover(&self.index)
    }

    /// Every (holder, share) the index points to.
    pub fn referenced(&self) -> std::collections::HashSet<(String, String)> {
        self.index()
            .segments
            .values()
            .flat_map(|g| &g.shares)
            .map(|s| (s.holder.clone(), s.name.clone()))
            .collect()
    }

    /// Bytes this node stores with `peer` (what it lends back, for fairness).
    pub fn lent_to(&self, peer: &str) -> u64 {
        self.index()
            .segments
            .values()
            .flat_map(|s| &s.shares)
            .filter(|s| s.holder == peer)
            .map(|s| s.size)
            .sum()
    }

    pub fn remember_holders(&self, peers: &[PeerId]) {
        let mut k = recover(&self.known);
        for p in peers {
            k.retain(|x| x != p);
            k.push(*p);
        }
        let over = k.len().saturating_sub(MAX_KNOWN);
        k.drain(..over);
    }

    pub fn known_holders(&self) -> Vec<PeerId> {
        recover(&self.known).clone()
    }

    /// Notes that a holder did not answer.
    pub fn away(&self, holder: &str) {
        let mut a = recover(&self.away);
        if a.len() >= MAX_AWAY {
            a.retain(|_, t| t.elapsed() < AWAY);
        }
        if a.len() < MAX_AWAY {
            a.insert(holder.to_owned(), Instant::now());
        }
    }

    pub fn is_away(&self, holder: &str) -> bool {
        recover(&self.away)
            .get(holder)
            .is_some_and(|t| t.elapsed() < AWAY)
    }

    /// A share came back wrong or was lost: repair it, and its holder gets no more.
    pub fn strike(&self, seg: u64, share: usize) {
        let mut ix = self.index();
        let Some(s) = ix
            .segments
            .get_mut(&seg)
            .and_then(|g| g.shares.get_mut(share))
        else {
            return;
        };
        if s.bad {
            return;
        }
        s.bad = true;
        let holder = s.holder.clone();
        ix.holders.entry(holder.clone()).or_default().faults += 1;
        self.metrics.audit_failures.inc();
        tracing::warn!(%holder, seg, share, "a holder lost or spoiled a share");
    }

    pub fn person_of(&self, peer: &PeerId) -> Option<String> {
        self.people.person_of(peer).map(|p| p.to_string())
    }

    /// Writes the index to disk.
    pub async fn save(&self) -> Result<(), Error> {
        let snapshot = self.index().clone();
        let dir = self.config.dir.clone();
        self.tasks
            .blocking(move || snapshot.save(&dir))
            .await?
            .map_err(|e| Error::io(&self.config.dir.join("index.json"), e))
    }

    pub fn unpublished(&self) -> bool {
        self.unpublished.load(Ordering::Relaxed)
    }

    /// Notes whether the index's copy in the vault lags behind it (kept across restarts).
    pub async fn set_unpublished(&self, lags: bool) {
        if self.unpublished.swap(lags, Ordering::Relaxed) == lags {
            return;
        }
        let path = self.config.dir.join(UNPUBLISHED);
        let done = self
            .tasks
            .blocking(move || {
                if lags {
                    std::fs::create_dir_all(path.parent().unwrap_or(&path))?;
                    std::fs::write(&path, b"")
                } else {
                    std::fs::remove_file(&path).or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })
                }
            })
            .await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!("cannot record whether the vault index is published");
        }
    }
}
