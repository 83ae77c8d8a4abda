//! What the search service's tasks share: the local index and catalogue, duplicate
//! suppression for flooded queries, per-peer query rates, the broker directory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kith_core::scope::Scopes;
use kith_core::tasks::Tasks;
use kith_names::Names;
use kith_overlay::{Overlay, PeerId};
use kith_share::Share;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::broker::Directory;
use crate::catalog::Catalogue;
use crate::index::CatalogIndex;
use crate::protocol::{Entry, WireHit};
use crate::query::Query;
use crate::{Config, Error};

/// Query IDs seen recently (duplicate suppression for flooding).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    const CAP: usize = 8192;

    /// `true` the first time `qid` is seen.
    pub fn insert(&mut self, qid: u64) -> bool {
        if !self.set.insert(qid) {
            return false;
        }
        self.order.push_back(qid);
        if self.order.len() > Self::CAP
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// A token bucket per peer.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Most peers with a query rate remembered.
const MAX_RATED_PEERS: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub queries_served: Counter,
    pub queries_refused: Counter,
    pub messages_sent: Counter,
}

impl Metrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("kith_search");
        r.register(
            "queries_served",
            "Queries answered for peers",
            self.queries_served.clone(),
        );
        r.register(
            "queries_refused",
            "Queries refused (rate limit, malformed, duplicate)",
            self.queries_refused.clone(),
        );
        r.register(
            "messages_sent",
            "Query messages sent to peers",
            self.messages_sent.clone(),
        );
    }
}

pub(crate) struct Inner {
    pub config: Config,
    pub overlay: Overlay,
    pub share: Share,
    pub names: Names,
    pub scopes: Arc<dyn Scopes>,
    pub local: CatalogIndex,
    /// The catalogue by scope and content ID, with where each item is on disk.
    pub catalog: Mutex<Catalogue>,
    /// Held while the index is brought up to date: one refresh at a time, so an older
    /// snapshot never lands after a newer one.
    pub refreshing: tokio::sync::Mutex<()>,
    /// Bumped whenever the catalogue changes (the broker client watches it).
    pub generation: watch::Sender<u64>,
    pub events: tokio::sync::broadcast::Sender<crate::Event>,
    pub keywords: Mutex<HashSet<String>>,
    pub windex: crate::windex::Node,
    pub seen: Mutex<Seen>,
    rate: Mutex<HashMap<PeerId, Bucket>>,
    pub directory: Option<Arc<Directory>>,
    pub metrics: Metrics,
    pub tasks: Tasks,
}

/// Locks `m`; a poisoned lock (a task panicked holding it) is an error, not "empty".
pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, Error> {
    m.lock().map_err(|_| Error::stopped())
}

impl Inner {
    pub async fn open(
        config: Config,
        overlay: Overlay,
        share: Share,
        names: Names,
        scopes: Arc<dyn Scopes>,
        registry: &mut Registry,
        tasks: Tasks,
    ) -> Result<Arc<Self>, Error> {
        let dir = config.dir.clone();
        let (local, prev) = tasks
            .blocking(move || -> Result<_, Error> {
                std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?;
                let local = CatalogIndex::open(Some(&dir.join("index")))?;
                let prev: Catalogue = local
                    .entries_of("")?
                    .into_iter()
                    .map(|(scope, e)| ((scope, e.id.clone()), (e, PathBuf::new())))
                    .collect();
                Ok((local, prev))
            })
            .await??;
        let directory = config
            .serve_broker
            .then(|| Directory::new(config.broker_ttl))
            .transpose()?
            .map(Arc::new);
        let inner = Arc::new(Self {
            config,
            overlay,
            share,
            names,
            scopes,
            local,
            catalog: Mutex::new(prev),
            refreshing: tokio::sync::Mutex::new(()),
            generation: watch::channel(0).0,
            events: tokio::sync::broadcast::channel(16).0,
            keywords: Mutex::default(),
            windex: crate::windex::Node::default(),
            seen: Mutex::default(),
            rate: Mutex::default(),
            directory,
            metrics: Metrics::default(),
            tasks,
        });
        inner.metrics.register(registry);
        Ok(inner)
    }

    pub fn peer_id(&self) -> PeerId {
        self.overlay.peer_id()
    }

    /// Whether `peer` may send another query now.
    pub fn allow_query(&self, peer: PeerId) -> bool {
        let mut m = kith_core::sync::recover(&self.rate);
        if m.len() > MAX_RATED_PEERS {
            m.retain(|_, b| b.at.elapsed() < Duration::from_secs(60));
        }
        let (rate, burst) = (self.config.query_rate, self.config.query_burst);
        let b = m.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: Instant::now(),
        });
        b.tokens = (b.tokens + b.at.elapsed().as_secs_f64() * rate).min(burst);
        b.at = Instant::now();
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `true` the first time query `qid` is seen here.
    pub fn first_sight(&self, qid: u64) -> bool {
        kith_core::sync::recover(&self.seen).insert(qid)
    }

    /// The local index's best matches, as hits held by this node: public ones, or those
    /// of group `scope`.
    pub fn local_hits(&self, q: &Query, limit: usize, scope: Option<&str>) -> Vec<WireHit> {
        let me = self.peer_id().to_string();
        let hits = match scope {
            None => self.local.search(q, limit),
            Some(s) => self.local.search_scope(q, limit, s),
        };
        match hits {
            Ok(h) => h
                .into_iter()
                .map(|h| WireHit {
                    entry: h.entry,
                    peer: me.clone(),
                    addrs: Vec::new(),
                    score: h.score,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "local search failed");
                Vec::new()
            }
        }
    }

    /// The public catalogue (what the broker and everyone may see).
    pub fn catalogue(&self) -> Result<Vec<Entry>, Error> {
        Ok(lock(&self.catalog)?
            .iter()
            .filter(|((scope, _), _)| scope.is_empty())
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}
