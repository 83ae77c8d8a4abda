//! Broker mode (a directory, as in Napster) over `/kith/broker/1.0.0`.
//!
//! Peers register their catalogue, push changes as they happen and send heartbeats; the
//! broker answers keyword searches with the peers that hold each item and are online now.
//! Entries are filed under the peer ID the connection authenticated (Noise, the peer's own
//! key), so only a peer can register or remove its own. The broker never stores or serves
//! content, and nobody trusts it for content: everything fetched is verified by ID, and
//! results that do not match the query are dropped by the asker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kith_overlay::{IncomingStreams, Multiaddr, PeerId, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::index::CatalogIndex;
use crate::query::Query;
use crate::wire::{self, BrokerRequest, BrokerResponse, Entry, WireHit};
use crate::{Inner, SearchError};

/// Most entries one peer may register.
pub const MAX_ENTRIES_PER_PEER: usize = 10_000;
/// Most peers registered at once.
pub const MAX_PEERS: usize = 100_000;
/// Most broker requests in flight per peer.
const MAX_PER_PEER: usize = 4;
/// Longest time for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often buffered changes become searchable.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
struct PeerInfo {
    last_seen: Instant,
    addrs: Vec<String>,
    entries: usize,
}

/// The broker's directory: who shares what, and who is online.
pub struct Directory {
    index: Mutex<CatalogIndex>,
    peers: Mutex<HashMap<PeerId, PeerInfo>>,
    dirty: AtomicBool,
    ttl: Duration,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> SearchError {
    SearchError::Stopped
}

impl Directory {
    /// An empty in-memory directory whose entries live `ttl` past the last heartbeat.
    pub fn new(ttl: Duration) -> Result<Self, SearchError> {
        Ok(Self {
            index: Mutex::new(CatalogIndex::open(None)?),
            peers: Mutex::default(),
            dirty: AtomicBool::new(false),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn check_all(entries: &[Entry]) -> Result<(), String> {
        for e in entries {
            e.check()?;
        }
        Ok(())
    }

    /// Replaces everything `peer` registered.
    pub fn register(
        &self,
        peer: PeerId,
        entries: &[Entry],
        addrs: Vec<String>,
    ) -> Result<(), String> {
        if entries.len() > MAX_ENTRIES_PER_PEER {
            return Err(format!(
                "{} entries; at most {MAX_ENTRIES_PER_PEER} per peer",
                entries.len()
            ));
        }
        Self::check_all(entries)?;
        let mut peers = self.peers.lock().map_err(|_| "stopped")?;
        if !peers.contains_key(&peer) && peers.len() >= MAX_PEERS {
            return Err("the broker is full".into());
        }
        let key = peer.to_string();
        let mut ix = self.index.lock().map_err(|_| "stopped")?;
        ix.remove_peer(&key);
        for e in entries {
            ix.add(&key, e, None).map_err(|e| e.to_string())?;
        }
        drop(ix);
        peers.insert(
            peer,
            PeerInfo {
                last_seen: Instant::now(),
                addrs: addrs
                    .into_iter()
                    .filter(|a| a.len() <= 256)
                    .take(8)
                    .collect(),
                entries: entries.len(),
            },
        );
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Adds entries of a registered peer; `Ok(false)` if the peer is not registered.
    pub fn add(&self, peer: PeerId, entries: &[Entry]) -> Result<bool, String> {
        Self::check_all(entries)?;
        let mut peers = self.peers.lock().map_err(|_| "stopped")?;
        let Some(info) = peers.get_mut(&peer) else {
            return Ok(false);
        };
        if info.entries + entries.len() > MAX_ENTRIES_PER_PEER {
            return Err(format!("at most {MAX_ENTRIES_PER_PEER} entries per peer"));
        }
        let key = peer.to_string();
        let mut ix = self.index.lock().map_err(|_| "stopped")?;
        for e in entries {
            ix.add(&key, e, None).map_err(|e| e.to_string())?;
        }
        info.entries += entries.len();
        info.last_seen = Instant::now();
        self.dirty.store(true, Ordering::Release);
        Ok(true)
    }

    /// Removes entries of a registered peer (only its own: they are filed under its ID).
    pub fn remove(&self, peer: PeerId, ids: &[String]) -> Result<bool, String> {
        let mut peers = self.peers.lock().map_err(|_| "stopped")?;
        let Some(info) = peers.get_mut(&peer) else {
            return Ok(false);
        };
        let key = peer.to_string();
        let mut ix = self.index.lock().map_err(|_| "stopped")?;
        for id in ids.iter().take(MAX_ENTRIES_PER_PEER) {
            ix.remove(&key, id);
        }
        info.entries = info.entries.saturating_sub(ids.len());
        info.last_seen = Instant::now();
        self.dirty.store(true, Ordering::Release);
        Ok(true)
    }

    /// Records a heartbeat; `false` if the peer is not registered.
    pub fn heartbeat(&self, peer: PeerId) -> bool {
        self.peers
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&peer).map(|i| i.last_seen = Instant::now()))
            .is_some()
    }

    /// Drops peers not heard from within the TTL. Returns how many.
    pub fn expire(&self) -> usize {
        let Ok(mut peers) = self.peers.lock() else {
            return 0;
        };
        let gone: Vec<PeerId> = peers
            .iter()
            .filter(|(_, i)| i.last_seen.elapsed() > self.ttl)
            .map(|(p, _)| *p)
            .collect();
        if gone.is_empty() {
            return 0;
        }
        if let Ok(mut ix) = self.index.lock() {
            for p in &gone {
                ix.remove_peer(&p.to_string());
                peers.remove(p);
                tracing::info!(peer = %p, "peer went offline; its entries are removed");
            }
        }
        self.dirty.store(true, Ordering::Release);
        gone.len()
    }

    /// Makes buffered changes searchable.
    pub fn commit(&self) -> Result<(), SearchError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.index.lock().map_err(poisoned)?.commit()?;
        }
        Ok(())
    }

    /// Peers registered and online now.
    pub fn online(&self) -> usize {
        self.peers
            .lock()
            .map(|p| {
                p.values()
                    .filter(|i| i.last_seen.elapsed() <= self.ttl)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Entries searchable now.
    pub fn entries(&self) -> u64 {
        self.index.lock().map(|i| i.len()).unwrap_or(0)
    }

    /// The best matches held by peers online now.
    pub fn search(&self, q: &Query, limit: usize) -> Result<Vec<WireHit>, SearchError> {
        let peers = self.peers.lock().map_err(poisoned)?;
        let online = |p: &str| {
            p.parse::<PeerId>()
                .ok()
                .and_then(|p| peers.get(&p))
                .is_some_and(|i| i.last_seen.elapsed() <= self.ttl)
        };
        let hits =
            self.index
                .lock()
                .map_err(poisoned)?
                .search_where(q, limit, limit * 4, online)?;
        Ok(hits
            .into_iter()
            .map(|h| {
                let addrs = h
                    .peer
                    .parse::<PeerId>()
                    .ok()
                    .and_then(|p| peers.get(&p))
                    .map(|i| i.addrs.clone())
                    .unwrap_or_default();
                WireHit {
                    entry: h.entry,
                    peer: h.peer,
                    addrs,
                    score: h.score,
                }
            })
            .collect())
    }
}

/// Serves the broker protocol, commits changes and expires silent peers.
pub(crate) async fn serve(
    dir: Arc<Directory>,
    mut incoming: IncomingStreams,
    shutdown: CancellationToken,
) {
    let per_peer: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    let mut commit = tokio::time::interval(COMMIT_EVERY);
    let mut expire = tokio::time::interval((dir.ttl / 4).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = commit.tick() => {
                let d = dir.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = d.commit() {
                        tracing::warn!(error = %e, "broker index commit failed");
                    }
                }).await;
            }
            _ = expire.tick() => { dir.expire(); }
            next = incoming.next() => {
                let Some((peer, stream)) = next else { return };
                {
                    let Ok(mut m) = per_peer.lock() else { return };
                    let n = m.entry(peer).or_default();
                    if *n >= MAX_PER_PEER {
                        tracing::warn!(%peer, "peer has too many broker requests in flight; refusing");
                        continue;
                    }
                    *n += 1;
                }
                let (dir, per_peer) = (dir.clone(), per_peer.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(REQUEST_TIMEOUT, handle(&dir, peer, stream)).await {
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "broker request failed"),
                        Err(_) => tracing::debug!(%peer, "broker request timed out"),
                        Ok(Ok(())) => {}
                    }
                    if let Ok(mut m) = per_peer.lock() && let Some(n) = m.get_mut(&peer) {
                        *n -= 1;
                        if *n == 0 { m.remove(&peer); }
                    }
                });
            }
        }
    }
}

async fn handle(dir: &Arc<Directory>, peer: PeerId, mut stream: Stream) -> Result<(), SearchError> {
    let Some(req) = wire::read_frame::<_, BrokerRequest>(&mut stream, wire::MAX_FRAME).await?
    else {
        return Ok(());
    };
    let ttl_secs = dir.ttl.as_secs().max(1);
    let ok = move |known| BrokerResponse::Ok { known, ttl_secs };
    let refused = move |reason: String| {
        tracing::warn!(%peer, %reason, "refused a broker request");
        BrokerResponse::Error { reason }
    };
    let d = dir.clone();
    let resp = tokio::task::spawn_blocking(move || match req {
        BrokerRequest::Register { entries, addrs } => match d.register(peer, &entries, addrs) {
            Ok(()) => {
                tracing::info!(%peer, entries = entries.len(), "peer registered");
                ok(true)
            }
            Err(e) => refused(e),
        },
        BrokerRequest::Add { entries } => match d.add(peer, &entries) {
            Ok(known) => ok(known),
            Err(e) => refused(e),
        },
        BrokerRequest::Remove { ids } => match d.remove(peer, &ids) {
            Ok(known) => ok(known),
            Err(e) => refused(e),
        },
        BrokerRequest::Heartbeat => ok(d.heartbeat(peer)),
        BrokerRequest::Search { text, limit } => match Query::parse(&text) {
            Ok(q) => match d.search(&q, (limit as usize).clamp(1, crate::MAX_RESULTS)) {
                Ok(hits) => BrokerResponse::Hits { hits },
                Err(e) => refused(e.to_string()),
            },
            Err(e) => refused(e.to_string()),
        },
    })
    .await
    .map_err(|_| SearchError::Stopped)?;
    wire::write_frame(&mut stream, &resp).await
}

/// One request to the broker and its answer.
async fn call(
    inner: &Inner,
    broker: PeerId,
    req: &BrokerRequest,
) -> Result<BrokerResponse, SearchError> {
    let mut control = inner.overlay.streams();
    let fut = async {
        let mut s = control
            .open_stream(broker, wire::BROKER_PROTOCOL)
            .await
            .map_err(|e| SearchError::Protocol(e.to_string()))?;
        wire::write_frame(&mut s, req).await?;
        wire::read_frame::<_, BrokerResponse>(&mut s, wire::MAX_FRAME)
            .await?
            .ok_or_else(|| SearchError::Protocol("the broker closed the stream".into()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| SearchError::Protocol("the broker did not answer in time".into()))?
}

fn broker_peer(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(kith_overlay::multiaddr::Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

/// Asks the broker (or this node's own directory) and passes answers on. Answers that do
/// not match the query are a lying broker's: they are dropped and logged.
pub(crate) async fn search(
    inner: &Arc<Inner>,
    q: &Query,
    limit: usize,
    tx: &mpsc::Sender<WireHit>,
) {
    let hits = if let Some(dir) = inner.directory.clone() {
        let q = q.clone();
        tokio::task::spawn_blocking(move || dir.search(&q, limit))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    } else if let Some(peer) = inner.config.broker.as_ref().and_then(broker_peer) {
        let req = BrokerRequest::Search {
            text: q.text.clone(),
            limit: limit as u32,
        };
        match call(inner, peer, &req).await {
            Ok(BrokerResponse::Hits { hits }) => hits,
            Ok(BrokerResponse::Error { reason }) => {
                tracing::warn!(%reason, "the broker refused the search");
                Vec::new()
            }
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the broker");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    for h in hits.into_iter().take(limit) {
        if !q.matches_name(&h.entry.name, &h.entry.path) {
            tracing::warn!(id = %h.entry.id, name = %h.entry.name, "the broker returned a result that does not match the query; dropped");
            continue;
        }
        if tx.send(h).await.is_err() {
            return;
        }
    }
}

/// Keeps this node registered with its broker: registers (again after a broker restart or
/// a lost connection), pushes catalogue changes as they happen, and sends heartbeats.
pub(crate) async fn client(inner: Arc<Inner>, addr: Multiaddr) {
    let Some(broker) = broker_peer(&addr) else {
        tracing::warn!(%addr, "the broker address must end with /p2p/PEER_ID; not registering");
        return;
    };
    let mut generation = inner.generation.subscribe();
    let mut sent: HashMap<String, Entry> = HashMap::new();
    let mut registered = false;
    let mut heartbeat = Duration::from_secs(20);
    let mut backoff = Duration::from_millis(500);
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        let r: Result<(), SearchError> = async {
            if !registered {
                let _ = inner.overlay.dial(addr.clone()).await;
                // Seen before the snapshot: a change after it is pushed next.
                generation.borrow_and_update();
                let entries = inner.catalogue();
                let addrs = inner
                    .overlay
                    .status()
                    .await?
                    .listen_addrs
                    .into_iter()
                    .filter(|a| !a.contains("/ip4/0.0.0.0/"))
                    .collect();
                match call(&inner, broker, &BrokerRequest::Register { entries: entries.clone(), addrs }).await? {
                    BrokerResponse::Ok { ttl_secs, .. } => {
                        heartbeat = Duration::from_secs(ttl_secs.max(1)).mul_f64(1.0 / 3.0);
                        sent = entries.into_iter().map(|e| (e.id.clone(), e)).collect();
                        registered = true;
                        tracing::info!(%broker, entries = sent.len(), "registered with the broker");
                    }
                    BrokerResponse::Error { reason } => {
                        return Err(SearchError::Protocol(format!("the broker refused us: {reason}")));
                    }
                    BrokerResponse::Hits { .. } => {}
                }
            }
            tokio::select! {
                () = inner.shutdown.cancelled() => return Ok(()),
                _ = generation.changed() => {
                    let now: HashMap<String, Entry> =
                        inner.catalogue().into_iter().map(|e| (e.id.clone(), e)).collect();
                    let added: Vec<Entry> = now
                        .iter()
                        .filter(|(id, e)| sent.get(*id) != Some(e))
                        .map(|(_, e)| e.clone())
                        .collect();
                    let removed: Vec<String> =
                        sent.keys().filter(|id| !now.contains_key(*id)).cloned().collect();
                    for req in [
                        (!removed.is_empty()).then_some(BrokerRequest::Remove { ids: removed }),
                        (!added.is_empty()).then_some(BrokerRequest::Add { entries: added }),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if let BrokerResponse::Ok { known: false, .. } = call(&inner, broker, &req).await? {
                            registered = false;
                        }
                    }
                    sent = now;
                }
                () = tokio::time::sleep(heartbeat) => {
                    if let BrokerResponse::Ok { known: false, .. } =
                        call(&inner, broker, &BrokerRequest::Heartbeat).await?
                    {
                        tracing::info!(%broker, "the broker does not know us (restarted?); registering again");
                        registered = false;
                    }
                }
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => backoff = Duration::from_millis(500),
            Err(e) => {
                tracing::debug!(%broker, error = %e, "broker unreachable; retrying");
                registered = false;
                tokio::select! {
                    () = inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2)
                    .min(heartbeat.clamp(Duration::from_millis(500), Duration::from_secs(30)));
            }
        }
    }
}
