//! Answers `/kith/windex/1.0.0`: stores holders' records, answers queries for a word.
//! Behind the overlay's inbound limits, the per-peer query rate, and the store's bounds.

use std::sync::Arc;
use std::time::Duration;

use kith_core::store::now_secs;
use kith_core::tasks::Tasks;
use kith_overlay::inbound::{Limits, Refusal};
use kith_overlay::{Overlay, PeerId, Stream};

use super::protocol::{
    INDEX_PROTOCOL, IndexRequest, IndexResponse, MAX_CLOSER, MAX_CLOSER_ADDRS, MAX_PUT_RECORDS,
    MAX_QUERY_MATCHES, MAX_REQUEST_FRAME, PeerAddrs, word_key,
};
use super::record::WordRecord;
use super::store::{Held, Put};
use crate::Error;
use crate::metrics::Metrics;
use crate::protocol;
use crate::query::Query;
use crate::rate::QueryRate;

/// Inbound index streams: per peer, and in total.
const LIMITS: Limits = Limits {
    per_peer: 8,
    total: 128,
};
/// Time for a peer to send its request once the stream is open.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time one request may take.
const SERVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes of records per answer frame.
const ANSWER_BATCH_BYTES: usize = 256 << 10;

fn end(error: Option<&str>) -> IndexResponse {
    IndexResponse::End {
        error: error.map(str::to_owned),
    }
}

fn refusal(why: Refusal) -> Vec<u8> {
    let text = match why {
        Refusal::PeerLimit => "too many index requests in flight",
        Refusal::Busy => "busy",
    };
    protocol::encode(&end(Some(text))).unwrap_or_default()
}

/// What the word index's server needs: the records it keeps, the overlay (for the closer
/// nodes it knows), the per-peer query rate and the metrics.
pub(crate) struct Server {
    held: Arc<Held>,
    overlay: Overlay,
    rate: Arc<QueryRate>,
    metrics: Metrics,
}

impl Server {
    pub fn new(held: Arc<Held>, overlay: Overlay, rate: Arc<QueryRate>, metrics: Metrics) -> Self {
        Self {
            held,
            overlay,
            rate,
            metrics,
        }
    }

    /// Serves the protocol until `tasks` shut down.
    pub fn start(self, tasks: &Tasks) -> Result<(), Error> {
        let inbound = self
            .overlay
            .accept(INDEX_PROTOCOL, LIMITS, Arc::new(refusal))?;
        let server = Arc::new(self);
        inbound.serve(
            tasks,
            "index request",
            SERVE_TIMEOUT,
            move |peer, stream| {
                let server = server.clone();
                async move { server.handle(peer, stream).await }
            },
        );
        Ok(())
    }

    async fn handle(&self, peer: PeerId, mut stream: Stream) -> Result<(), Error> {
        let req = tokio::time::timeout(
            READ_TIMEOUT,
            protocol::read_frame(&mut stream, MAX_REQUEST_FRAME),
        )
        .await
        .map_err(|_| Error::Silent)??;
        let answer = match req {
            None => return Ok(()),
            Some(IndexRequest::Put { records }) => self.put(peer, records)?,
            Some(IndexRequest::Query { word, text, limit }) => {
                if !self.rate.allow(peer) {
                    self.metrics.refused();
                    end(Some("rate limited"))
                } else {
                    match Query::parse(&text) {
                        Err(e) => end(Some(&e.to_string())),
                        Ok(q) => self.query(peer, &word, &q, limit, &mut stream).await?,
                    }
                }
            }
        };
        Ok(protocol::write_frame(&mut stream, &answer).await?)
    }

    /// Answers a query: the matching records kept here, then the closer nodes known.
    async fn query(
        &self,
        peer: PeerId,
        word: &str,
        q: &Query,
        limit: u32,
        stream: &mut Stream,
    ) -> Result<IndexResponse, Error> {
        self.metrics.served();
        let limit = (limit as usize).clamp(1, MAX_QUERY_MATCHES);
        let records = self.held.query(word, q, limit, now_secs())?;
        send_records(stream, records).await?;
        let closer = self
            .overlay
            .closest_known(word_key(word), peer)
            .await
            .unwrap_or_default();
        let peers = closer
            .into_iter()
            .take(MAX_CLOSER)
            .map(|(p, a)| PeerAddrs {
                peer: p.to_string(),
                addrs: a
                    .iter()
                    .take(MAX_CLOSER_ADDRS)
                    .map(|a| a.to_string())
                    .collect(),
            })
            .collect();
        protocol::write_frame(stream, &IndexResponse::Closer { peers }).await?;
        Ok(end(None))
    }

    /// Checks and keeps records put by `peer` (anyone may relay a holder's signed record).
    fn put(&self, peer: PeerId, records: Vec<WordRecord>) -> Result<IndexResponse, Error> {
        if records.len() > MAX_PUT_RECORDS {
            return Ok(end(Some("too many records")));
        }
        let now = now_secs();
        let (mut stored, mut full) = (0u32, Vec::new());
        for r in records {
            let holder = match r.verify(now) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "refused an index record");
                    continue;
                }
            };
            let word = r.word.clone();
            match self.held.put(r, holder, now)? {
                Put::Stored | Put::Removed => stored += 1,
                Put::Stale => {}
                Put::Full => full.push(word),
            }
        }
        Ok(IndexResponse::Stored { stored, full })
    }
}

pub(crate) async fn send_records(
    stream: &mut Stream,
    records: Vec<WordRecord>,
) -> Result<(), Error> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    for r in records {
        bytes += r.weight();
        batch.push(r);
        if bytes >= ANSWER_BATCH_BYTES {
            let records = std::mem::take(&mut batch);
            protocol::write_frame(stream, &IndexResponse::Records { records }).await?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        protocol::write_frame(stream, &IndexResponse::Records { records: batch }).await?;
    }
    Ok(())
}
