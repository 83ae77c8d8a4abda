//! Asking peers over `/kith/search/1.0.0`, without a broker.
//!
//! - Keyword routing: every node announces the words of its file names in the DHT
//!   (`/kith/kw/WORD` provider records); a query looks its words up and asks only the peers
//!   found, directly (ttl 1). Cost: a DHT lookup per word plus one message per holder.
//! - Flooding (the Gnutella baseline, and the fallback for queries with no routable word):
//!   the query goes to up to `flood_fanout` neighbours with a TTL; each answers from its
//!   own index and forwards with TTL-1; query IDs suppress duplicates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use kith_core::scope::Scopes;
use kith_core::tasks::Tasks;
use kith_overlay::{Overlay, PeerId};
use rand::seq::SliceRandom;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::protocol::{self, SearchRequest, SearchResponse, WireHit};
use crate::query::Query;
use crate::rate::SeenQueries;
use crate::windex::WordIndex;
use crate::{Config, Error, keyword_key};

/// Most answers taken from one peer for one query (and sent back for one).
pub(crate) const MAX_HITS_PER_PEER: usize = 200;

/// Time allowed per remaining hop of a flooded query.
pub(crate) const HOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Most peers asked directly after keyword routing.
const MAX_ROUTED_PEERS: usize = 64;
/// Most query words looked up in the DHT.
const MAX_ROUTED_WORDS: usize = 4;
/// How long a keyword lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks peers: keyword routing, the word index, flooding, and a group's members.
pub(crate) struct Asker {
    overlay: Overlay,
    scopes: Arc<dyn Scopes>,
    metrics: Metrics,
    seen: Arc<SeenQueries>,
    windex: WordIndex,
    /// Neighbours a flooded query goes to, and the hops it travels.
    fanout: usize,
    flood_ttl: u8,
    tasks: Tasks,
}

impl Asker {
    pub fn new(
        config: &Config,
        overlay: Overlay,
        scopes: Arc<dyn Scopes>,
        metrics: Metrics,
        seen: Arc<SeenQueries>,
        windex: WordIndex,
        tasks: Tasks,
    ) -> Self {
        Self {
            overlay,
            scopes,
            metrics,
            seen,
            windex,
            fanout: config.flood_fanout,
            flood_ttl: config.flood_ttl,
            tasks,
        }
    }

    /// How long a query flooded with `ttl` hops may take.
    pub fn flood_time(ttl: u8) -> Duration {
        HOP_TIMEOUT * u32::from(ttl.max(1))
    }

    /// The hops a query this node floods travels.
    pub fn flood_ttl(&self) -> u8 {
        self.flood_ttl
    }

    /// Sends `req` to `peer` and passes its answers on. With `direct`, the peer may only
    /// answer for itself (anything else is a lie and is dropped).
    async fn ask(
        &self,
        peer: PeerId,
        req: &SearchRequest,
        direct: bool,
        tx: &mpsc::Sender<WireHit>,
    ) -> Result<(), Error> {
        let mut stream = self
            .overlay
            .open_stream(peer, protocol::SEARCH_PROTOCOL)
            .await?;
        self.metrics.sent();
        protocol::write_frame(&mut stream, req).await?;
        let mut taken = 0;
        let me = peer.to_string();
        let group = match req {
            SearchRequest::Query { group, .. } => group.as_deref(),
        };
        while let Some(resp) =
            protocol::read_frame::<_, SearchResponse>(&mut stream, protocol::MAX_ANSWER_FRAME)
                .await?
        {
            let hits = match (resp, group) {
                (SearchResponse::Hits { hits }, None) => hits,
                (SearchResponse::Sealed { data }, Some(g)) => self.unseal(peer, g, &data),
                (SearchResponse::End { error }, _) => {
                    if let Some(e) = error {
                        tracing::debug!(%peer, error = %e, "peer did not answer the query");
                    }
                    return Ok(());
                }
                // Plain hits for a group query, or sealed ones for a public one: dropped.
                _ => {
                    tracing::warn!(%peer, "peer answered in the wrong form; dropped");
                    continue;
                }
            };
            for h in hits {
                if taken >= MAX_HITS_PER_PEER {
                    break;
                }
                if direct && h.peer != me {
                    tracing::warn!(%peer, claimed = %h.peer, "peer answered for another peer; dropped");
                    continue;
                }
                taken += 1;
                if tx.send(h).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The hits of a sealed group answer (none when it cannot be opened or read).
    fn unseal(&self, peer: PeerId, group: &str, data: &str) -> Vec<WireHit> {
        let hits = kith_core::person::from_hex(data)
            .and_then(|b| self.scopes.open(group, &b))
            .and_then(|json| serde_json::from_slice::<Vec<WireHit>>(&json).ok());
        match hits {
            Some(h) => h.into_iter().filter(|h| h.entry.check().is_ok()).collect(),
            None => {
                tracing::warn!(%peer, %group, "a group answer that does not open; dropped");
                Vec::new()
            }
        }
    }

    /// Searches group `group`: asks every device of its members directly (answers are
    /// sealed with the group key; no flooding, nothing leaves the group).
    pub(crate) async fn search_group(
        &self,
        q: &Query,
        group: &str,
        limit: usize,
        tx: &mpsc::Sender<WireHit>,
    ) {
        let req = SearchRequest::Query {
            qid: rand::random(),
            text: q.text.clone(),
            ttl: 1,
            limit: limit as u32,
            group: Some(group.to_owned()),
        };
        let peers = self.scopes.members(group);
        join_all(peers.into_iter().map(|p| {
            let req = &req;
            async move {
                let t = HOP_TIMEOUT * 2;
                match tokio::time::timeout(t, self.ask(p, req, true, tx)).await {
                    Ok(Err(e)) => tracing::debug!(peer = %p, error = %e, "group query failed"),
                    Err(_) => tracing::debug!(peer = %p, "group query timed out"),
                    Ok(Ok(())) => {}
                }
            }
        }))
        .await;
    }

    /// Sends a query to up to `flood_fanout` neighbours (not `except`) with `ttl`.
    pub(crate) async fn flood(
        &self,
        text: &str,
        qid: u64,
        ttl: u8,
        limit: usize,
        except: Option<PeerId>,
        tx: &mpsc::Sender<WireHit>,
    ) {
        let Ok(connected) = self.overlay.connected_peers().await else {
            return;
        };
        let mut peers: Vec<PeerId> = connected
            .into_iter()
            .map(|p| p.peer)
            .filter(|p| Some(*p) != except)
            .collect();
        peers.shuffle(&mut rand::rng());
        peers.truncate(self.fanout);
        let req = SearchRequest::Query {
            qid,
            text: text.to_owned(),
            ttl,
            limit: limit as u32,
            group: None,
        };
        let budget = HOP_TIMEOUT * u32::from(ttl.max(1));
        join_all(peers.into_iter().map(|p| {
            let req = &req;
            async move {
                match tokio::time::timeout(budget, self.ask(p, req, ttl == 1, tx)).await {
                    Ok(Err(e)) => tracing::debug!(peer = %p, error = %e, "query failed"),
                    Err(_) => tracing::debug!(peer = %p, "query timed out"),
                    Ok(Ok(())) => {}
                }
            }
        }))
        .await;
    }

    /// Looks every word up in the DHT; providers arrive as `(word index, peer)`.
    fn lookups(&self, words: &[String]) -> mpsc::Receiver<(usize, PeerId)> {
        let (ptx, prx) = mpsc::channel::<(usize, PeerId)>(256);
        for (i, w) in words.iter().enumerate() {
            let (overlay, ptx, key) = (self.overlay.clone(), ptx.clone(), keyword_key(w));
            self.tasks.spawn(async move {
                if let Ok(mut rx) = overlay.find_providers(key).await {
                    let deadline = tokio::time::Instant::now() + LOOKUP_TIMEOUT;
                    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                        if ptx.send((i, p)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        prx
    }

    /// Keyword routing: asks the peers that announced the query's words. A peer that holds
    /// every word is asked as soon as the lookups show it; when they end, the rest, those
    /// holding more of the words first. Returns how many peers were asked.
    async fn routed(
        &self,
        q: &Query,
        words: &[String],
        qid: u64,
        limit: usize,
        tx: &mpsc::Sender<WireHit>,
    ) -> usize {
        let mut prx = self.lookups(words);
        let all: u32 = (1u32 << words.len()) - 1;
        let req = SearchRequest::Query {
            qid,
            text: q.text.clone(),
            ttl: 1,
            limit: limit as u32,
            group: None,
        };
        let mut held: HashMap<PeerId, u32> = HashMap::new();
        let mut asked: HashSet<PeerId> = HashSet::from([self.overlay.peer_id()]);
        let mut asks = futures::stream::FuturesUnordered::new();
        let ask_one = |p: PeerId| {
            let req = &req;
            async move {
                let t = HOP_TIMEOUT * 2;
                if let Ok(Err(e)) = tokio::time::timeout(t, self.ask(p, req, true, tx)).await {
                    tracing::debug!(peer = %p, error = %e, "query failed");
                }
            }
        };
        loop {
            tokio::select! {
                p = prx.recv() => match p {
                    Some((i, p)) => {
                        if held.len() < 4 * MAX_ROUTED_PEERS || held.contains_key(&p) {
                            let m = held.entry(p).or_default();
                            *m |= 1 << i;
                            if *m == all && asked.len() <= MAX_ROUTED_PEERS && asked.insert(p) {
                                asks.push(ask_one(p));
                            }
                        }
                    }
                    None => break,
                },
                Some(()) = asks.next(), if !asks.is_empty() => {}
            }
        }
        let mut rest: Vec<(PeerId, u32)> = held
            .into_iter()
            .filter(|(p, _)| !asked.contains(p))
            .map(|(p, m)| (p, m.count_ones()))
            .collect();
        rest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (p, _) in rest {
            if asked.len() > MAX_ROUTED_PEERS {
                break;
            }
            asked.insert(p);
            asks.push(ask_one(p));
        }
        while asks.next().await.is_some() {}
        asked.len() - 1
    }

    /// Searches the network: the word index; keyword routing (provider records, for peers of
    /// the previous release) when the index has nothing; flooding when no word of the query
    /// can be routed, nobody announced one, or `flood_only`.
    pub(crate) async fn search(
        &self,
        q: &Query,
        via: crate::Via,
        limit: usize,
        tx: &mpsc::Sender<WireHit>,
    ) {
        let qid: u64 = rand::random();
        self.seen.first_sight(qid);
        let words: Vec<String> = q.keywords().into_iter().take(MAX_ROUTED_WORDS).collect();
        if !matches!(via, crate::Via::Flood) && !words.is_empty() {
            let found = self.windex.search(q, &words, tx).await;
            tracing::debug!(words = words.len(), found, "word index");
            if found > 0 || matches!(via, crate::Via::Index) {
                return;
            }
            // Peers of the previous release announce provider records instead.
            let asked = self.routed(q, &words, qid, limit, tx).await;
            tracing::debug!(words = words.len(), peers = asked, "keyword routing");
            if asked > 0 {
                return;
            }
        }
        if !matches!(via, crate::Via::Index) {
            self.flood(&q.text, qid, self.flood_ttl, limit, None, tx)
                .await;
        }
    }
}
