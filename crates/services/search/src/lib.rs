//! kith search service: find content across peers, with a broker (a directory, as in
//! Napster) and without one (keyword routing through the DHT, with Gnutella-style flooding
//! as the fallback), and mutable names whose newest revision is found where it lives.
//!
//! - [`Search`]: the service handle (search, publish, resolve, names).
//! - [`index::CatalogIndex`]: the full-text catalogue index (tantivy), local and broker.
//! - [`query`]: the query language and its limits.
//! - [`names`]: signed name records and their validation.
//! - [`broker`]: the directory a broker keeps, and the client that registers with one.
//! - [`wire`]: the `/kith/search/1.0.0` and `/kith/broker/1.0.0` wire formats.

pub mod broker;
mod catalog;
pub mod index;
pub mod names;
mod network;
pub mod query;
pub mod wire;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kith_core::ContentId;
use kith_core::store::Store;
use kith_overlay::{Keypair, Multiaddr, Overlay, PeerId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use index::CatalogIndex;
use names::NameRecord;
use query::Query;
use wire::{Entry, WireHit};

/// Most keywords a node announces in the DHT.
pub const MAX_KEYWORDS: usize = 4096;
/// Most results a search returns.
pub const MAX_RESULTS: usize = 500;
/// Most names a node remembers.
const MAX_NAMES: usize = 10_000;
/// Prefix of DHT keys under which nodes announce the words of their file names.
pub const KEYWORD_PREFIX: &str = "/kith/kw/";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(String),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("bad name: {0}")]
    BadName(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("{0} was not found (no record in the DHT or from subscriptions)")]
    NameNotFound(String),
    #[error("no broker configured (start the node with --broker MULTIADDR)")]
    NoBroker,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] kith_core::store::StoreError),
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
    #[error("the search service has stopped")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the local index and the name book live.
    pub dir: PathBuf,
    /// A broker to register this node's catalogue with.
    pub broker: Option<Multiaddr>,
    /// Serve as a broker (directory) for other peers.
    pub serve_broker: bool,
    /// How long a broker keeps a peer's entries without a heartbeat.
    pub broker_ttl: Duration,
    /// Hops a flooded query travels.
    pub flood_ttl: u8,
    /// Queries per second a peer may send us (sustained), and the burst.
    pub query_rate: f64,
    pub query_burst: f64,
    /// Neighbours a flooded query is forwarded to at each hop.
    pub flood_fanout: usize,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            broker: None,
            serve_broker: false,
            broker_ttl: Duration::from_secs(60),
            flood_ttl: 4,
            query_rate: 5.0,
            query_burst: 20.0,
            flood_fanout: 8,
        }
    }
}

/// Which way a search travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Ask the broker this node registered with.
    Broker,
    /// No broker: keyword routing through the DHT, flooding when no word can be routed.
    Network,
    /// Both of the above.
    Both,
    /// Only flooding (the Gnutella baseline).
    Flood,
}

impl std::str::FromStr for Via {
    type Err = SearchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "broker" => Ok(Via::Broker),
            "network" => Ok(Via::Network),
            "both" => Ok(Via::Both),
            "flood" => Ok(Via::Flood),
            _ => Err(SearchError::BadQuery(format!(
                "--via must be broker, network, both or flood, not {s:?}"
            ))),
        }
    }
}

/// One search result: a content ID and the peers that have it. A result is sent again
/// when more peers answer for it or it turns out to be an outdated revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub id: String,
    pub name: String,
    pub path: String,
    pub size: u64,
    pub kind: String,
    /// Peers that have it (that answered, or that the broker lists as online).
    pub providers: Vec<String>,
    /// Relevance (the best score any answer gave).
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// For a revision of a name: whether a newer revision is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdated: Option<bool>,
}

impl SearchResult {
    /// Ranking: relevance, then how many peers have it.
    pub fn rank(&self) -> f32 {
        self.score * (1.0 + (self.providers.len() as f32).ln())
    }
}

/// Orders results best first.
pub fn sort_results(v: &mut [SearchResult]) {
    v.sort_by(|a, b| {
        let oa = a.outdated.unwrap_or(false);
        let ob = b.outdated.unwrap_or(false);
        oa.cmp(&ob)
            .then(b.rank().total_cmp(&a.rank()))
            .then(a.id.cmp(&b.id))
    });
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub queries_served: Counter,
    pub queries_refused: Counter,
    pub messages_sent: Counter,
    pub records_rejected: Counter,
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
        r.register(
            "records_rejected",
            "Name records refused (forged, rolled back, malformed)",
            self.records_rejected.clone(),
        );
    }
}

/// Names this node knows: its own, and those it resolved or subscribed to.
#[derive(Debug, Default, Serialize, Deserialize)]
struct NameBook {
    records: BTreeMap<String, NameRecord>,
    subscribed: Vec<String>,
    /// Every revision seen: content ID -> (name, revision), so older copies are
    /// recognised as revisions too.
    #[serde(default)]
    revisions: BTreeMap<String, (String, u64)>,
}

impl NameBook {
    fn path(dir: &std::path::Path) -> PathBuf {
        dir.join("names.json")
    }

    fn load(dir: &std::path::Path) -> Self {
        match std::fs::read(Self::path(dir)) {
            Ok(b) => match serde_json::from_slice::<NameBook>(&b) {
                Ok(mut book) => {
                    // Keep only records that still verify.
                    book.records.retain(|_, r| r.verify().is_ok());
                    book
                }
                Err(e) => {
                    tracing::warn!(error = %e, "name book unreadable; starting empty");
                    Self::default()
                }
            },
            Err(_) => Self::default(),
        }
    }

    fn save(&self, dir: &std::path::Path) {
        let tmp = dir.join("names.json.tmp");
        let r = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, Self::path(dir)));
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot save the name book");
        }
    }

    /// Takes a verified record if it is newer than the one held. `Ok(true)` when it is.
    fn accept(&mut self, r: NameRecord) -> Result<bool, String> {
        let key = r.full_name();
        if let Some(old) = self.records.get(&key) {
            r.replaces(old)?;
            if *old == r {
                return Ok(false);
            }
        } else if self.records.len() >= MAX_NAMES {
            return Err("too many names known".into());
        }
        if self.revisions.len() >= MAX_NAMES * 4 {
            self.revisions.clear();
        }
        self.revisions
            .insert(r.id.clone(), (r.full_name(), r.revision));
        self.records.insert(key, r);
        Ok(true)
    }

    /// The name and revision each known content ID is a revision of.
    fn by_content(&self) -> HashMap<String, (String, u64)> {
        let mut m: HashMap<String, (String, u64)> = self.revisions.clone().into_iter().collect();
        for r in self.records.values() {
            m.insert(r.id.clone(), (r.full_name(), r.revision));
        }
        m
    }
}

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
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

pub(crate) struct Inner {
    pub config: Config,
    pub store: Arc<Store>,
    pub overlay: Overlay,
    keypair: Keypair,
    pub local: Mutex<CatalogIndex>,
    catalog: Mutex<BTreeMap<String, (Entry, String)>>,
    /// Bumped whenever the catalogue changes (the broker client watches it).
    pub generation: watch::Sender<u64>,
    keywords: Mutex<HashSet<String>>,
    names: Mutex<NameBook>,
    pub seen: Mutex<Seen>,
    rate: Mutex<HashMap<PeerId, Bucket>>,
    pub directory: Option<Arc<broker::Directory>>,
    name_updates: broadcast::Sender<NameRecord>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Inner {
    pub fn peer_id(&self) -> PeerId {
        self.overlay.peer_id()
    }

    /// Whether `peer` may send another query now.
    pub fn allow_query(&self, peer: PeerId) -> bool {
        let Ok(mut m) = self.rate.lock() else {
            return false;
        };
        if m.len() > 10_000 {
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

    /// The local index's best matches, as hits held by this node.
    pub fn local_hits(&self, q: &Query, limit: usize) -> Vec<WireHit> {
        let me = self.peer_id().to_string();
        let hits = match self.local.lock() {
            Ok(ix) => ix.search(q, limit),
            Err(_) => return Vec::new(),
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
                tracing::debug!(error = %e, "local search failed");
                Vec::new()
            }
        }
    }

    pub fn catalogue(&self) -> Vec<Entry> {
        self.catalog
            .lock()
            .map(|c| c.values().map(|(e, _)| e.clone()).collect())
            .unwrap_or_default()
    }

    fn newest_revision(&self, name_key: &str) -> Option<u64> {
        self.names
            .lock()
            .ok()
            .and_then(|b| b.records.get(name_key).map(|r| r.revision))
    }
}

/// The search service handle. Cheap to clone.
#[derive(Clone)]
pub struct Search {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search").finish_non_exhaustive()
    }
}

fn keyword_key(word: &str) -> Vec<u8> {
    format!("{KEYWORD_PREFIX}{word}").into_bytes()
}

impl Search {
    /// Opens the local index, starts answering queries (and serving as a broker when asked
    /// to), registers with the configured broker and keeps the index in step with
    /// `changes` (the share service's change counter).
    pub fn start(
        config: Config,
        store: Arc<Store>,
        overlay: Overlay,
        keypair: Keypair,
        mut changes: watch::Receiver<u64>,
        registry: &mut Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, SearchError> {
        std::fs::create_dir_all(&config.dir)?;
        let local = CatalogIndex::open(Some(&config.dir.join("index")))?;
        let prev: BTreeMap<String, (Entry, String)> = local
            .entries_of("")?
            .into_iter()
            .map(|e| (e.id.clone(), (e, String::new())))
            .collect();
        let names = NameBook::load(&config.dir);
        let subscribed = names.subscribed.clone();
        let incoming = overlay
            .streams()
            .accept(wire::SEARCH_PROTOCOL)
            .map_err(|_| SearchError::Stopped)?;
        let broker_incoming = if config.serve_broker {
            Some(
                overlay
                    .streams()
                    .accept(wire::BROKER_PROTOCOL)
                    .map_err(|_| SearchError::Stopped)?,
            )
        } else {
            None
        };
        let directory = config
            .serve_broker
            .then(|| broker::Directory::new(config.broker_ttl))
            .transpose()?
            .map(Arc::new);
        let gossip = overlay.gossip_messages();
        let inner = Arc::new(Inner {
            config,
            store,
            overlay,
            keypair,
            local: Mutex::new(local),
            catalog: Mutex::new(prev),
            generation: watch::channel(0).0,
            keywords: Mutex::default(),
            names: Mutex::new(names),
            seen: Mutex::default(),
            rate: Mutex::default(),
            directory,
            name_updates: broadcast::channel(64).0,
            metrics: Metrics::default(),
            shutdown: shutdown.clone(),
            tasks: TaskTracker::new(),
        });
        inner.metrics.register(registry);
        let search = Self { inner };
        let inner = &search.inner;
        inner.tasks.spawn(network::serve(inner.clone(), incoming));
        if let (Some(dir), Some(inc)) = (inner.directory.clone(), broker_incoming) {
            inner.tasks.spawn(broker::serve(dir, inc, shutdown.clone()));
        }
        if let Some(addr) = inner.config.broker.clone() {
            inner.tasks.spawn(broker::client(inner.clone(), addr));
        }
        if let Some(rx) = gossip {
            let s = search.clone();
            inner.tasks.spawn(async move { s.gossip_loop(rx).await });
        }
        let s = search.clone();
        inner.tasks.spawn(async move {
            for n in subscribed {
                let _ = s.inner.overlay.subscribe(n_topic(&n)).await;
            }
            loop {
                if let Err(e) = s.refresh().await
                    && !s.inner.shutdown.is_cancelled()
                {
                    tracing::warn!(error = %e, "cannot update the search index");
                }
                tokio::select! {
                    () = s.inner.shutdown.cancelled() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
                // Let a burst of changes settle.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(search)
    }

    /// Brings the local index, the keyword announcements and the broker registration in
    /// step with what this node shares.
    pub async fn refresh(&self) -> Result<(), SearchError> {
        let inner = self.inner.clone();
        let (added, removed) = tokio::task::spawn_blocking(move || {
            let named = inner
                .names
                .lock()
                .map(|b| b.by_content())
                .unwrap_or_default();
            let now = catalog::build(&inner.store, &named)?;
            let mut cat = inner.catalog.lock().map_err(|_| SearchError::Stopped)?;
            let mut ix = inner.local.lock().map_err(|_| SearchError::Stopped)?;
            let mut changed = false;
            for id in cat.keys() {
                if !now.contains_key(id) {
                    ix.remove("", id);
                    changed = true;
                }
            }
            for (id, (e, path)) in &now {
                if cat.get(id).map(|(old, _)| old) != Some(e) {
                    let body = (e.kind == "file")
                        .then(|| catalog::text_of(std::path::Path::new(path)))
                        .flatten();
                    ix.add("", e, body.as_deref())?;
                    changed = true;
                }
            }
            if changed {
                ix.commit()?;
            }
            drop(ix);
            let mut words: HashSet<String> = HashSet::new();
            'outer: for (e, _) in now.values() {
                for t in query::tokens(&e.name) {
                    if t.chars().count() >= query::MIN_KEYWORD_CHARS {
                        if words.len() >= MAX_KEYWORDS {
                            break 'outer;
                        }
                        words.insert(t);
                    }
                }
            }
            *cat = now;
            drop(cat);
            if changed {
                inner.generation.send_modify(|g| *g += 1);
            }
            let mut kw = inner.keywords.lock().map_err(|_| SearchError::Stopped)?;
            let added: Vec<String> = words.difference(&kw).cloned().collect();
            let removed: Vec<String> = kw.difference(&words).cloned().collect();
            *kw = words;
            Ok::<_, SearchError>((added, removed))
        })
        .await
        .map_err(|_| SearchError::Stopped)??;
        for w in added {
            self.inner.overlay.start_providing(keyword_key(&w)).await?;
        }
        for w in removed {
            self.inner.overlay.stop_providing(keyword_key(&w)).await?;
        }
        Ok(())
    }

    /// Entries in the local index.
    pub fn catalogue(&self) -> Vec<Entry> {
        self.inner.catalogue()
    }

    /// Searches. Results stream in as peers answer; the channel closes when every source
    /// answered or `timeout` passed.
    pub fn search(
        &self,
        text: &str,
        via: Via,
        timeout: Duration,
        limit: usize,
    ) -> Result<mpsc::Receiver<SearchResult>, SearchError> {
        let q = Query::parse(text)?;
        if matches!(via, Via::Broker)
            && self.inner.config.broker.is_none()
            && self.inner.directory.is_none()
        {
            return Err(SearchError::NoBroker);
        }
        let limit = limit.clamp(1, MAX_RESULTS);
        let (hits_tx, hits_rx) = mpsc::channel::<WireHit>(256);
        let (tx, rx) = mpsc::channel(256);
        let inner = self.inner.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        // Sources: this node, then the broker and/or the network.
        for h in inner.local_hits(&q, limit) {
            let _ = hits_tx.try_send(h);
        }
        if matches!(via, Via::Broker | Via::Both) {
            let (inner, q, htx) = (inner.clone(), q.clone(), hits_tx.clone());
            inner.clone().tasks.spawn(async move {
                let _ = tokio::time::timeout_at(deadline, broker::search(&inner, &q, limit, &htx))
                    .await;
            });
        }
        if !matches!(via, Via::Broker) {
            let (inner, q, htx) = (inner.clone(), q.clone(), hits_tx.clone());
            let flood_only = matches!(via, Via::Flood);
            inner.clone().tasks.spawn(async move {
                let _ = tokio::time::timeout_at(
                    deadline,
                    network::search(&inner, &q, flood_only, limit, &htx),
                )
                .await;
            });
        }
        drop(hits_tx);
        inner
            .tasks
            .spawn(aggregate(inner.clone(), hits_rx, tx, deadline, limit));
        Ok(rx)
    }

    /// Publishes a new revision of `name` (owned by this node) pointing at `id`.
    pub async fn publish(&self, name: &str, id: ContentId) -> Result<NameRecord, SearchError> {
        names::check_name(name).map_err(SearchError::BadName)?;
        let me = self.inner.peer_id();
        let full = names::full_name(&me, name);
        let last = self.inner.newest_revision(&full).unwrap_or(0);
        let time = kith_core::store::now_secs();
        let rec = NameRecord::sign(&self.inner.keypair, name, last + 1, &id, time)?;
        self.remember(rec.clone()).map_err(SearchError::BadName)?;
        let key = names::name_key(&me, name);
        let stored = self
            .inner
            .overlay
            .put_record(key.clone().into_bytes(), rec.encode())
            .await?;
        self.inner.overlay.publish(key, rec.encode()).await?;
        tracing::info!(name = %full, revision = rec.revision, id = %id, peers = stored, "published");
        self.refresh().await?;
        Ok(rec)
    }

    fn remember(&self, rec: NameRecord) -> Result<bool, String> {
        let mut book = self.inner.names.lock().map_err(|_| "stopped".to_owned())?;
        let newer = book.accept(rec.clone())?;
        if newer {
            book.save(&self.inner.config.dir);
            drop(book);
            let _ = self.inner.name_updates.send(rec);
        }
        Ok(newer)
    }

    /// Subscribes to `name` (`PEER_ID/name`, or a bare name of this node): new revisions
    /// arrive by gossip from then on, and after restarts.
    pub async fn subscribe(&self, full: &str) -> Result<(), SearchError> {
        let (owner, name) = names::parse_full_name(full, self.inner.peer_id())?;
        let full = names::full_name(&owner, &name);
        let newly = {
            let mut book = self.inner.names.lock().map_err(|_| SearchError::Stopped)?;
            if book.subscribed.contains(&full) {
                false
            } else {
                if book.subscribed.len() >= MAX_NAMES {
                    return Err(SearchError::BadName("too many subscriptions".into()));
                }
                book.subscribed.push(full.clone());
                book.save(&self.inner.config.dir);
                true
            }
        };
        if newly {
            self.inner.overlay.subscribe(n_topic(&full)).await?;
        }
        Ok(())
    }

    /// The newest revision of a name: what this node holds, what the DHT holds (asked for
    /// up to `timeout`), whichever is newer. Subscribes to the name.
    pub async fn resolve(&self, full: &str, timeout: Duration) -> Result<NameRecord, SearchError> {
        let (owner, name) = names::parse_full_name(full, self.inner.peer_id())?;
        let full = names::full_name(&owner, &name);
        self.subscribe(&full).await?;
        let key = names::name_key(&owner, &name);
        if owner != self.inner.peer_id() {
            let mut rx = self
                .inner
                .overlay
                .get_record(key.clone().into_bytes())
                .await?;
            let deadline = tokio::time::Instant::now() + timeout;
            while let Ok(Some(v)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                match NameRecord::decode_verified(key.as_bytes(), &v) {
                    Ok(r) => {
                        if let Err(reason) = self.remember(r) {
                            tracing::warn!(name = %full, %reason, "refused a name record");
                            self.inner.metrics.records_rejected.inc();
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(name = %full, %reason, "refused a name record");
                        self.inner.metrics.records_rejected.inc();
                    }
                }
            }
        }
        self.inner
            .names
            .lock()
            .map_err(|_| SearchError::Stopped)?
            .records
            .get(&full)
            .cloned()
            .ok_or(SearchError::NameNotFound(full))
    }

    /// Names this node knows (its own and those it follows), newest revisions.
    pub fn names(&self) -> Vec<NameRecord> {
        self.inner
            .names
            .lock()
            .map(|b| b.records.values().cloned().collect())
            .unwrap_or_default()
    }

    /// New revisions as this node learns of them.
    pub fn name_updates(&self) -> broadcast::Receiver<NameRecord> {
        self.inner.name_updates.subscribe()
    }

    async fn gossip_loop(&self, mut rx: mpsc::Receiver<kith_overlay::GossipMessage>) {
        loop {
            let msg = tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            // The overlay already checked the signature; check the rest again here.
            match NameRecord::decode_verified(msg.topic.as_bytes(), &msg.data) {
                Ok(r) => match self.remember(r.clone()) {
                    Ok(true) => {
                        tracing::info!(name = %r.full_name(), revision = r.revision, "new revision");
                        if let Err(e) = self.refresh().await {
                            tracing::debug!(error = %e, "refresh after a new revision failed");
                        }
                    }
                    Ok(false) => {}
                    Err(reason) => {
                        tracing::warn!(%reason, "refused a name record");
                        self.inner.metrics.records_rejected.inc();
                    }
                },
                Err(reason) => {
                    tracing::warn!(%reason, "refused a name record");
                    self.inner.metrics.records_rejected.inc();
                }
            }
        }
    }

    /// The broker directory, when this node serves as a broker.
    pub fn directory(&self) -> Option<Arc<broker::Directory>> {
        self.inner.directory.clone()
    }

    /// Waits for the service's tasks after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

fn n_topic(full: &str) -> String {
    format!("{}{full}", names::NAME_PREFIX)
}

/// Merges hits from every source into results: one per content ID, its providers growing
/// as peers answer; older revisions of a name are marked outdated.
async fn aggregate(
    inner: Arc<Inner>,
    mut hits: mpsc::Receiver<WireHit>,
    tx: mpsc::Sender<SearchResult>,
    deadline: tokio::time::Instant,
    limit: usize,
) {
    let mut results: HashMap<String, SearchResult> = HashMap::new();
    let mut newest: HashMap<String, u64> = HashMap::new();
    while let Ok(Some(h)) = tokio::time::timeout_at(deadline, hits.recv()).await {
        if let Err(reason) = h.entry.check() {
            tracing::debug!(%reason, "dropped a malformed search hit");
            continue;
        }
        let Ok(peer) = h.peer.parse::<PeerId>() else {
            continue;
        };
        for a in h.addrs.iter().take(8) {
            if let Ok(addr) = a.parse::<Multiaddr>() {
                let _ = inner.overlay.add_address(peer, addr).await;
            }
        }
        let mut out = Vec::new();
        let is_new = !results.contains_key(&h.entry.id);
        if is_new && results.len() >= limit {
            continue;
        }
        let r = results
            .entry(h.entry.id.clone())
            .or_insert_with(|| SearchResult {
                id: h.entry.id.clone(),
                name: h.entry.name.clone(),
                path: h.entry.path.clone(),
                size: h.entry.size,
                kind: h.entry.kind.clone(),
                providers: Vec::new(),
                score: h.score,
                name_key: h.entry.name_key.clone(),
                revision: h.entry.revision,
                outdated: None,
            });
        let mut changed = is_new;
        if !r.providers.contains(&h.peer) && r.providers.len() < 64 {
            r.providers.push(h.peer.clone());
            changed = true;
        }
        if h.score > r.score {
            r.score = h.score;
        }
        if let (Some(k), Some(rev)) = (r.name_key.clone(), r.revision) {
            let known = inner.newest_revision(&k).unwrap_or(0);
            let best = newest.entry(k.clone()).or_insert(known);
            if rev > *best {
                *best = rev;
                // Earlier results of this name are now outdated.
                for other in results.values_mut() {
                    if other.name_key.as_deref() == Some(k.as_str())
                        && other.revision.is_some_and(|x| x < rev)
                        && other.outdated != Some(true)
                    {
                        other.outdated = Some(true);
                        out.push(other.clone());
                    }
                }
            }
            let best = *best;
            if let Some(r) = results.get_mut(&h.entry.id) {
                let o = Some(rev < best);
                if r.outdated != o {
                    r.outdated = o;
                    changed = true;
                }
            }
        }
        if changed && let Some(r) = results.get(&h.entry.id) {
            out.push(r.clone());
        }
        for r in out {
            if tx.send(r).await.is_err() {
                return;
            }
        }
    }
}
