//! Answers peers' queries over `/kith/search/1.0.0`, behind the overlay's inbound limits
//! (per peer and in total) and a per-peer query rate. A query with `ttl > 1` is also
//! forwarded to neighbours (flooding), answers flowing back along the path.

use std::sync::Arc;
use std::time::Duration;

use kith_core::scope::Scopes;
use kith_core::tasks::Tasks;
use kith_overlay::inbound::{Limits, Refusal, Refuser};
use kith_overlay::{Overlay, PeerId, Stream};
use tokio::sync::mpsc;

use crate::Error;
use crate::catalog::Catalog;
use crate::client::{Asker, MAX_HITS_PER_PEER};
use crate::metrics::Metrics;
use crate::protocol::{self, SearchRequest, SearchResponse, WireHit};
use crate::query::Query;
use crate::rate::{QueryRate, SeenQueries};

/// Inbound query streams: per peer, and in total.
const LIMITS: Limits = Limits {
    per_peer: 4,
    total: 128,
};
/// Time for a peer to send its query once the stream is open.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Hits sealed in one frame of a group answer.
const SEALED_BATCH: usize = 50;

/// Answers peers' queries from the catalogue, floods them on, and answers group queries
/// to members only.
pub(crate) struct Server {
    catalog: Arc<Catalog>,
    asker: Arc<Asker>,
    rate: Arc<QueryRate>,
    seen: Arc<SeenQueries>,
    scopes: Arc<dyn Scopes>,
    metrics: Metrics,
}

impl Server {
    pub fn new(
        catalog: Arc<Catalog>,
        asker: Arc<Asker>,
        rate: Arc<QueryRate>,
        seen: Arc<SeenQueries>,
        scopes: Arc<dyn Scopes>,
        metrics: Metrics,
    ) -> Self {
        Self {
            catalog,
            asker,
            rate,
            seen,
            scopes,
            metrics,
        }
    }

    /// Serves the protocol until `tasks` shut down. A peer over its query rate is refused
    /// with `end` "rate limited" (within the overlay's refusal budget).
    pub fn start(self, overlay: &Overlay, tasks: &Tasks) -> Result<(), Error> {
        let inbound = overlay.accept(protocol::SEARCH_PROTOCOL, LIMITS, Arc::new(refusal))?;
        let refuser = inbound.refuser();
        let limit = Asker::flood_time(self.asker.flood_ttl()) + READ_TIMEOUT;
        let server = Arc::new(self);
        inbound.serve(tasks, "search stream", limit, move |peer, stream| {
            let (server, refuser) = (server.clone(), refuser.clone());
            async move { server.serve(&refuser, peer, stream).await }
        });
        Ok(())
    }

    async fn serve(&self, refuser: &Refuser, peer: PeerId, stream: Stream) -> Result<(), Error> {
        if !self.rate.allow(peer) {
            tracing::warn!(%peer, "query flood: peer is over its rate limit; refusing");
            self.metrics.refused();
            let bytes = protocol::encode(&end(Some("rate limited"))).unwrap_or_default();
            refuser.refuse_with(stream, bytes, Refusal::PeerLimit);
            return Ok(());
        }
        self.handle(peer, stream).await
    }

    async fn handle(&self, peer: PeerId, mut stream: Stream) -> Result<(), Error> {
        let req = tokio::time::timeout(
            READ_TIMEOUT,
            protocol::read_frame(&mut stream, protocol::MAX_QUERY_FRAME),
        )
        .await
        .map_err(|_| Error::Silent)??;
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
                self.metrics.refused();
                return Ok(protocol::write_frame(&mut stream, &end(Some(&e.to_string()))).await?);
            }
        };
        if !self.seen.first_sight(qid) {
            return Ok(protocol::write_frame(&mut stream, &end(Some("duplicate"))).await?);
        }
        self.metrics.served();
        let limit = (limit as usize).clamp(1, MAX_HITS_PER_PEER);
        if let Some(g) = group {
            self.answer_group(peer, &q, &g, limit, &mut stream).await?;
            return Ok(protocol::write_frame(&mut stream, &end(None)).await?);
        }
        let hits = self.catalog.hits(&q, limit, None);
        if !hits.is_empty() {
            protocol::write_frame(&mut stream, &SearchResponse::Hits { hits }).await?;
        }
        if ttl > 1 {
            self.forward(peer, &q, qid, ttl - 1, limit, &mut stream)
                .await?;
        }
        Ok(protocol::write_frame(&mut stream, &end(None)).await?)
    }

    /// Answers a query about group `group`: only to a device of a current member, sealed
    /// with the group's key. Anyone else gets no hits, the same answer as when nothing
    /// matches, so outsiders learn nothing of what the group holds.
    async fn answer_group(
        &self,
        peer: PeerId,
        q: &Query,
        group: &str,
        limit: usize,
        stream: &mut Stream,
    ) -> Result<(), Error> {
        if !self.scopes.may_fetch(&peer, group) {
            tracing::info!(%peer, %group, "group query from a device that is not a member's; no hits");
            return Ok(());
        }
        let hits = self.catalog.hits(q, limit, Some(group));
        for batch in hits.chunks(SEALED_BATCH) {
            let json = serde_json::to_vec(batch)?;
            let Some(sealed) = self.scopes.seal(group, &json) else {
                return Ok(());
            };
            let data = kith_core::person::to_hex(&sealed);
            protocol::write_frame(stream, &SearchResponse::Sealed { data }).await?;
        }
        Ok(())
    }

    /// Floods the query on and passes the answers back on `stream`.
    async fn forward(
        &self,
        from: PeerId,
        q: &Query,
        qid: u64,
        ttl: u8,
        limit: usize,
        stream: &mut Stream,
    ) -> Result<(), Error> {
        let (tx, mut rx) = mpsc::channel::<WireHit>(64);
        let flood = async move {
            self.asker
                .flood(&q.text, qid, ttl, limit, Some(from), &tx)
                .await;
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
}
