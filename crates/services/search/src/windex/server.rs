//! Answers `/kith/windex/1.0.0`: stores holders' records, answers queries for a word.
//! Behind the overlay's inbound limits, the per-peer query rate, and the store's bounds.

use std::sync::Arc;
use std::time::Duration;

use kith_core::store::now_secs;
use kith_overlay::inbound::{Limits, Refusal};
use kith_overlay::{PeerId, Stream};
use serde::{Deserialize, Serialize};

use super::INDEX_PROTOCOL;
use super::record::WordRecord;
use super::store::Put;
use crate::Error;
use crate::protocol;
use crate::query::Query;
use crate::state::Inner;

/// Inbound index streams: per peer, and in total.
const LIMITS: Limits = Limits {
    per_peer: 8,
    total: 128,
};
/// Time for a peer to send its request once the stream is open.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time one request may take.
const SERVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest request read.
pub const MAX_REQUEST_FRAME: usize = 1 << 20;
/// Largest answer frame read.
pub const MAX_ANSWER_FRAME: usize = 1 << 20;
/// Most records in one put.
pub const MAX_PUT_RECORDS: usize = 64;
/// Most matching names one query is answered with.
pub const MAX_QUERY_MATCHES: usize = 1000;
/// Bytes of records per answer frame.
const ANSWER_BATCH_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum IndexRequest {
    /// Keep these records (each signed by its holder).
    Put { records: Vec<WordRecord> },
    /// The records of `word` with a name matching the query `text`.
    Query {
        word: String,
        text: String,
        limit: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum IndexResponse {
    /// Of a put: how many were kept (or removed), and the words refused for lack of room.
    Stored {
        stored: u32,
        full: Vec<String>,
    },
    Records {
        records: Vec<WordRecord>,
    },
    /// Of a query: the nodes closest to the word this node knows (the asker goes on to
    /// those closer than the ones it has asked), with their addresses.
    Closer {
        peers: Vec<PeerAddrs>,
    },
    End {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerAddrs {
    pub peer: String,
    pub addrs: Vec<String>,
}

/// Most peers in a `Closer` answer, and addresses per peer.
pub const MAX_CLOSER: usize = 20;
pub const MAX_CLOSER_ADDRS: usize = 4;

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

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let inbound = inner
        .overlay
        .accept(INDEX_PROTOCOL, LIMITS, Arc::new(refusal))?;
    let i = inner.clone();
    inbound.serve(
        &inner.tasks,
        "index request",
        SERVE_TIMEOUT,
        move |peer, stream| {
            let inner = i.clone();
            async move { handle(&inner, peer, stream).await }
        },
    );
    Ok(())
}

async fn handle(inner: &Arc<Inner>, peer: PeerId, mut stream: Stream) -> Result<(), Error> {
    let req = tokio::time::timeout(
        READ_TIMEOUT,
        protocol::read_frame(&mut stream, MAX_REQUEST_FRAME),
    )
    .await
    .map_err(|_| Error::Refused("no request sent".into()))??;
    let answer = match req {
        None => return Ok(()),
        Some(IndexRequest::Put { records }) => put(inner, peer, records),
        Some(IndexRequest::Query { word, text, limit }) => {
            if !inner.allow_query(peer) {
                inner.metrics.queries_refused.inc();
                end(Some("rate limited"))
            } else {
                match Query::parse(&text) {
                    Err(e) => end(Some(&e.to_string())),
                    Ok(q) => {
                        inner.metrics.queries_served.inc();
                        let limit = (limit as usize).clamp(1, MAX_QUERY_MATCHES);
                        let records = kith_core::sync::recover(&inner.windex.store).query(
                            &word,
                            &q,
                            limit,
                            now_secs(),
                        );
                        send_records(&mut stream, records).await?;
                        let closer = inner
                            .overlay
                            .closest_known(super::word_key(&word), peer)
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
                        protocol::write_frame(&mut stream, &IndexResponse::Closer { peers })
                            .await?;
                        end(None)
                    }
                }
            }
        }
    };
    Ok(protocol::write_frame(&mut stream, &answer).await?)
}

/// Checks and keeps records put by `peer` (anyone may relay a holder's signed record).
fn put(inner: &Inner, peer: PeerId, records: Vec<WordRecord>) -> IndexResponse {
    if records.len() > MAX_PUT_RECORDS {
        return end(Some("too many records"));
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
        match kith_core::sync::recover(&inner.windex.store).put(r, holder, now) {
            Put::Stored | Put::Removed => stored += 1,
            Put::Stale => {}
            Put::Full => full.push(word),
        }
    }
    IndexResponse::Stored { stored, full }
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
