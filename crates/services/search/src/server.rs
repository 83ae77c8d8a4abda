//! Answers peers' queries over `/kith/search/1.0.0`, behind the overlay's inbound limits
//! (per peer and in total) and a per-peer query rate. A query with `ttl > 1` is also
//! forwarded to neighbours (flooding), answers flowing back along the path.

use std::sync::Arc;
use std::time::Duration;

use kith_overlay::inbound::{Incoming, Limits, Refusal};
use kith_overlay::{PeerId, Stream};
use tokio::sync::mpsc;

use crate::protocol::{self, SearchRequest, SearchResponse, WireHit};
use crate::query::Query;
use crate::state::Inner;
use crate::{Error, client};

/// Inbound query streams: per peer, and in total.
const LIMITS: Limits = Limits {
    per_peer: 4,
    total: 128,
};
/// Time for a peer to send its query once the stream is open.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most answers sent back for one query.
pub(crate) const MAX_HITS_PER_PEER: usize = 200;

fn end(error: Option<&str>) -> SearchResponse {
    SearchResponse::End {
        error: error.map(str::to_owned),
    }
}

fn refusal(why: Refusal) -> Vec<u8> {
    let text = match why {
        Refusal::PeerLimit => "too many queries in flight",
        Refusal::Busy => "busy",
    };
    protocol::encode(&end(Some(text))).unwrap_or_default()
}

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let mut inbound = inner
        .overlay
        .accept(protocol::SEARCH_PROTOCOL, LIMITS, Arc::new(refusal))?;
    let inner2 = inner.clone();
    inner.tasks.spawn(async move {
        let inner = inner2;
        while let Some(Incoming {
            peer,
            stream,
            permit,
        }) = inbound.next_until(inner.tasks.shutdown()).await
        {
            if !inner.allow_query(peer) {
                tracing::warn!(%peer, "query flood: peer is over its rate limit; refusing");
                inner.metrics.queries_refused.inc();
                let bytes = protocol::encode(&end(Some("rate limited"))).unwrap_or_default();
                inbound.refuse_with(stream, bytes, Refusal::PeerLimit);
                continue;
            }
            let i = inner.clone();
            inner.tasks.spawn(async move {
                let limit =
                    client::HOP_TIMEOUT * u32::from(i.config.flood_ttl.max(1)) + READ_TIMEOUT;
                if let Ok(Err(e)) = tokio::time::timeout(limit, handle(&i, peer, stream)).await {
                    tracing::debug!(%peer, error = %e, "search stream failed");
                }
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn handle(inner: &Arc<Inner>, peer: PeerId, mut stream: Stream) -> Result<(), Error> {
    let req = tokio::time::timeout(
        READ_TIMEOUT,
        protocol::read_frame(&mut stream, protocol::MAX_QUERY_FRAME),
    )
    .await
    .map_err(|_| Error::Refused("no query sent".into()))??;
    let Some(SearchRequest::Query {
        qid,
        text,
        ttl,
        limit,
        group,
    }) = req
    else {
        return Ok(());
    };
    let q = match Query::parse(&text) {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "refused a query");
            inner.metrics.queries_refused.inc();
            return Ok(protocol::write_frame(&mut stream, &end(Some(&e.to_string()))).await?);
        }
    };
    if !inner.first_sight(qid) {
        return Ok(protocol::write_frame(&mut stream, &end(Some("duplicate"))).await?);
    }
    inner.metrics.queries_served.inc();
    let limit = (limit as usize).clamp(1, MAX_HITS_PER_PEER);
    if let Some(g) = group {
        answer_group(inner, peer, &q, &g, limit, &mut stream).await?;
        return Ok(protocol::write_frame(&mut stream, &end(None)).await?);
    }
    let hits = inner.local_hits(&q, limit, None);
    if !hits.is_empty() {
        protocol::write_frame(&mut stream, &SearchResponse::Hits { hits }).await?;
    }
    if ttl > 1 {
        forward(inner, peer, &q, qid, ttl - 1, limit, &mut stream).await?;
    }
    Ok(protocol::write_frame(&mut stream, &end(None)).await?)
}

/// Hits sealed in one frame of a group answer.
const SEALED_BATCH: usize = 50;

/// Answers a query about group `group`: only to a device of a current member, sealed
/// with the group's key. Anyone else gets no hits, the same answer as when nothing
/// matches, so outsiders learn nothing of what the group holds.
async fn answer_group(
    inner: &Arc<Inner>,
    peer: PeerId,
    q: &Query,
    group: &str,
    limit: usize,
    stream: &mut Stream,
) -> Result<(), Error> {
    if !inner.scopes.may_fetch(&peer, group) {
        tracing::info!(%peer, %group, "group query from a device that is not a member's; no hits");
        return Ok(());
    }
    let hits = inner.local_hits(q, limit, Some(group));
    for batch in hits.chunks(SEALED_BATCH) {
        let json = serde_json::to_vec(batch).map_err(|e| Error::Index(e.to_string()))?;
        let Some(sealed) = inner.scopes.seal(group, &json) else {
            return Ok(());
        };
        let data = kith_core::person::to_hex(&sealed);
        protocol::write_frame(stream, &SearchResponse::Sealed { data }).await?;
    }
    Ok(())
}

/// Floods the query on and passes the answers back on `stream`.
async fn forward(
    inner: &Arc<Inner>,
    from: PeerId,
    q: &Query,
    qid: u64,
    ttl: u8,
    limit: usize,
    stream: &mut Stream,
) -> Result<(), Error> {
    let (tx, mut rx) = mpsc::channel::<WireHit>(64);
    let flood = async move {
        client::flood(inner, &q.text, qid, ttl, limit, Some(from), &tx).await;
    };
    // Owns the receiver: when it stops (the asker went away), the flood's sends fail and
    // it stops too.
    let relay = async move {
        let mut sent = 0;
        while let Some(h) = rx.recv().await {
            if sent >= MAX_HITS_PER_PEER {
                continue;
            }
            sent += 1;
            protocol::write_frame(stream, &SearchResponse::Hits { hits: vec![h] }).await?;
        }
        Ok::<_, Error>(())
    };
    let ((), relayed) = futures::join!(flood, relay);
    relayed
}
