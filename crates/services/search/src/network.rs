//! Search without a broker over `/kith/search/1.0.0`.
//!
//! - Keyword routing: every node announces the words of its file names in the DHT
//!   (`/kith/kw/WORD` provider records); a query looks its words up and asks only the peers
//!   found, directly (ttl 1). Cost: a DHT lookup per word plus one message per holder.
//! - Flooding (the Gnutella baseline, and the fallback for queries with no routable word):
//!   the query goes to up to `flood_fanout` neighbours with a TTL; each answers from its
//!   own index and forwards with TTL-1; query IDs suppress duplicates; answers flow back
//!   along the path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use kith_overlay::{IncomingStreams, PeerId, Stream};
use rand::seq::SliceRandom;
use tokio::sync::mpsc;

use crate::query::Query;
use crate::wire::{self, SearchRequest, SearchResponse, WireHit};
use crate::{Inner, SearchError, keyword_key};

/// Largest query frame accepted.
const MAX_REQUEST: usize = 8 * 1024;
/// Most queries one peer may have in flight with us.
const MAX_PER_PEER: usize = 4;
/// Most queries in flight in total.
const MAX_INFLIGHT: usize = 128;
/// Time for a peer to send its query once the stream is open.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed per remaining hop of a flooded query.
const HOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Most answers taken from one peer.
const MAX_HITS_PER_PEER: usize = 200;
/// Most peers asked directly after keyword routing.
const MAX_ROUTED_PEERS: usize = 64;
/// Most query words looked up in the DHT.
const MAX_ROUTED_WORDS: usize = 4;
/// How long a keyword lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn serve(inner: Arc<Inner>, mut incoming: IncomingStreams) {
    let per_peer: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    let total = Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT));
    loop {
        let (peer, stream) = tokio::select! {
            () = inner.shutdown.cancelled() => return,
            next = incoming.next() => match next {
                Some(x) => x,
                None => return,
            },
        };
        if !inner.allow_query(peer) {
            tracing::warn!(%peer, "query flood: peer is over its rate limit; refusing");
            inner.metrics.queries_refused.inc();
            inner.tasks.spawn(refuse(stream, "rate limited"));
            continue;
        }
        let Ok(permit) = total.clone().try_acquire_owned() else {
            inner.metrics.queries_refused.inc();
            inner.tasks.spawn(refuse(stream, "busy"));
            continue;
        };
        {
            let Ok(mut m) = per_peer.lock() else { return };
            let n = m.entry(peer).or_default();
            if *n >= MAX_PER_PEER {
                drop(m);
                tracing::warn!(%peer, "peer has too many queries in flight; refusing");
                inner.metrics.queries_refused.inc();
                inner
                    .tasks
                    .spawn(refuse(stream, "too many queries in flight"));
                continue;
            }
            *n += 1;
        }
        let (inner2, per_peer) = (inner.clone(), per_peer.clone());
        inner.tasks.spawn(async move {
            let limit = HOP_TIMEOUT * u32::from(inner2.config.flood_ttl.max(1)) + READ_TIMEOUT;
            let r = tokio::time::timeout(limit, handle(&inner2, peer, stream)).await;
            if let Ok(Err(e)) = r {
                tracing::debug!(%peer, error = %e, "search stream failed");
            }
            if let Ok(mut m) = per_peer.lock()
                && let Some(n) = m.get_mut(&peer)
            {
                *n -= 1;
                if *n == 0 {
                    m.remove(&peer);
                }
            }
            drop(permit);
        });
    }
}

async fn refuse(mut stream: Stream, why: &str) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        wire::write_frame(
            &mut stream,
            &SearchResponse::End {
                error: Some(why.to_owned()),
            },
        ),
    )
    .await;
}

async fn handle(inner: &Arc<Inner>, peer: PeerId, mut stream: Stream) -> Result<(), SearchError> {
    let req: Option<SearchRequest> =
        tokio::time::timeout(READ_TIMEOUT, wire::read_frame(&mut stream, MAX_REQUEST))
            .await
            .map_err(|_| SearchError::Protocol("no query sent".into()))??;
    let Some(SearchRequest::Query {
        qid,
        text,
        ttl,
        limit,
    }) = req
    else {
        return Ok(());
    };
    let end = |error: Option<String>| SearchResponse::End { error };
    let q = match Query::parse(&text) {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "refused a query");
            inner.metrics.queries_refused.inc();
            return wire::write_frame(&mut stream, &end(Some(e.to_string()))).await;
        }
    };
    let first = inner
        .seen
        .lock()
        .map(|mut s| s.insert(qid))
        .unwrap_or(false);
    if !first {
        return wire::write_frame(&mut stream, &end(Some("duplicate".into()))).await;
    }
    inner.metrics.queries_served.inc();
    let limit = (limit as usize).clamp(1, MAX_HITS_PER_PEER);
    let hits = inner.local_hits(&q, limit);
    if !hits.is_empty() {
        wire::write_frame(&mut stream, &SearchResponse::Hits { hits }).await?;
    }
    if ttl > 1 {
        let (tx, mut rx) = mpsc::channel::<WireHit>(64);
        let (inner2, text) = (inner.clone(), q.text.clone());
        let fwd = tokio::spawn(async move {
            flood(&inner2, &text, qid, ttl - 1, limit, Some(peer), &tx).await;
        });
        let mut sent = 0;
        while let Some(h) = rx.recv().await {
            if sent >= MAX_HITS_PER_PEER {
                continue;
            }
            sent += 1;
            wire::write_frame(&mut stream, &SearchResponse::Hits { hits: vec![h] }).await?;
        }
        let _ = fwd.await;
    }
    wire::write_frame(&mut stream, &end(None)).await
}

/// Sends `req` to `peer` and passes its answers on. With `direct`, the peer may only
/// answer for itself (anything else is a lie and is dropped).
async fn ask(
    inner: &Arc<Inner>,
    peer: PeerId,
    req: &SearchRequest,
    direct: bool,
    tx: &mpsc::Sender<WireHit>,
) -> Result<(), SearchError> {
    let mut control = inner.overlay.streams();
    let mut stream = tokio::time::timeout(
        READ_TIMEOUT,
        control.open_stream(peer, wire::SEARCH_PROTOCOL),
    )
    .await
    .map_err(|_| SearchError::Protocol("timed out opening stream".into()))?
    .map_err(|e| SearchError::Protocol(e.to_string()))?;
    inner.metrics.messages_sent.inc();
    wire::write_frame(&mut stream, req).await?;
    let mut taken = 0;
    let me = peer.to_string();
    while let Some(resp) =
        wire::read_frame::<_, SearchResponse>(&mut stream, wire::MAX_FRAME).await?
    {
        match resp {
            SearchResponse::Hits { hits } => {
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
            SearchResponse::End { error } => {
                if let Some(e) = error {
                    tracing::debug!(%peer, error = %e, "peer did not answer the query");
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Sends a query to up to `flood_fanout` neighbours (not `except`) with `ttl`.
async fn flood(
    inner: &Arc<Inner>,
    text: &str,
    qid: u64,
    ttl: u8,
    limit: usize,
    except: Option<PeerId>,
    tx: &mpsc::Sender<WireHit>,
) {
    let mut peers: Vec<PeerId> = match inner.overlay.status().await {
        Ok(s) => s
            .connections
            .iter()
            .filter_map(|c| c.peer_id.parse().ok())
            .filter(|p| Some(*p) != except)
            .collect(),
        Err(_) => return,
    };
    peers.sort();
    peers.dedup();
    peers.shuffle(&mut rand::rng());
    peers.truncate(inner.config.flood_fanout);
    let req = SearchRequest::Query {
        qid,
        text: text.to_owned(),
        ttl,
        limit: limit as u32,
    };
    let budget = HOP_TIMEOUT * u32::from(ttl.max(1));
    join_all(peers.into_iter().map(|p| {
        let req = &req;
        async move {
            match tokio::time::timeout(budget, ask(inner, p, req, ttl == 1, tx)).await {
                Ok(Err(e)) => tracing::debug!(peer = %p, error = %e, "query failed"),
                Err(_) => tracing::debug!(peer = %p, "query timed out"),
                Ok(Ok(())) => {}
            }
        }
    }))
    .await;
}

/// Searches the network: keyword routing through the DHT, or flooding when no word of the
/// query can be routed, nobody announced one, or `flood_only`.
pub(crate) async fn search(
    inner: &Arc<Inner>,
    q: &Query,
    flood_only: bool,
    limit: usize,
    tx: &mpsc::Sender<WireHit>,
) {
    let qid: u64 = rand::random();
    if let Ok(mut s) = inner.seen.lock() {
        s.insert(qid);
    }
    let me = inner.peer_id();
    if !flood_only {
        let words: Vec<String> = q.keywords().into_iter().take(MAX_ROUTED_WORDS).collect();
        if !words.is_empty() {
            // Providers of every word. A peer that holds every word of the query is asked
            // as soon as the lookups show it; when they end, the rest, those holding more
            // of the words first.
            let (ptx, mut prx) = mpsc::channel::<(usize, PeerId)>(256);
            for (i, w) in words.iter().enumerate() {
                let (inner, ptx, key) = (inner.clone(), ptx.clone(), keyword_key(w));
                inner.tasks.clone().spawn(async move {
                    if let Ok(mut rx) = inner.overlay.find_providers(key).await {
                        let deadline = tokio::time::Instant::now() + LOOKUP_TIMEOUT;
                        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                            if ptx.send((i, p)).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
            drop(ptx);
            let all: u32 = (1u32 << words.len()) - 1;
            let req = SearchRequest::Query {
                qid,
                text: q.text.clone(),
                ttl: 1,
                limit: limit as u32,
            };
            let mut held: HashMap<PeerId, u32> = HashMap::new();
            let mut asked: HashSet<PeerId> = HashSet::from([me]);
            let mut asks = futures::stream::FuturesUnordered::new();
            let ask_one = |p: PeerId| {
                let req = &req;
                async move {
                    let t = HOP_TIMEOUT * 2;
                    if let Ok(Err(e)) = tokio::time::timeout(t, ask(inner, p, req, true, tx)).await
                    {
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
            tracing::debug!(
                words = words.len(),
                peers = asked.len() - 1,
                "keyword routing"
            );
            if asked.len() > 1 {
                return;
            }
        }
    }
    flood(inner, &q.text, qid, inner.config.flood_ttl, limit, None, tx).await;
}
