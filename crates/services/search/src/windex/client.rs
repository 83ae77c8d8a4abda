//! Asking the word index: for each word of a query, its K closest nodes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use kith_core::store::now_secs;
use kith_overlay::PeerId;
use tokio::sync::mpsc;

use super::record::WordRecord;
use super::server::{IndexRequest, IndexResponse, MAX_ANSWER_FRAME, MAX_QUERY_MATCHES};
use super::{INDEX_PROTOCOL, word_key};
use crate::Error;
use crate::protocol::{self, WireHit};
use crate::query::Query;
use crate::state::Inner;

/// How long the lookup of a word's nodes may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one node may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one request to `peer` and returns its answers (all frames up to `End`).
pub(crate) async fn request(
    inner: &Inner,
    peer: PeerId,
    req: &IndexRequest,
) -> Result<Vec<IndexResponse>, Error> {
    let mut stream = inner.overlay.open_stream(peer, INDEX_PROTOCOL).await?;
    inner.metrics.messages_sent.inc();
    protocol::write_frame(&mut stream, req).await?;
    let mut out = Vec::new();
    while let Some(r) =
        protocol::read_frame::<_, IndexResponse>(&mut stream, MAX_ANSWER_FRAME).await?
    {
        let end = matches!(r, IndexResponse::End { .. });
        out.push(r);
        if end || out.len() > 64 {
            break;
        }
    }
    Ok(out)
}

/// The nodes that keep `word`'s index (this node among them if it is one).
pub(crate) async fn nodes_of(inner: &Inner, word: &str) -> Vec<PeerId> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, inner.overlay.closest_peers(word_key(word))).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::debug!(%word, error = %e, "word index lookup failed");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// Asks one node for `word`'s records matching `q`.
async fn ask(inner: &Inner, peer: PeerId, word: &str, q: &Query) -> Vec<WordRecord> {
    if peer == inner.peer_id() {
        return kith_core::sync::recover(&inner.windex.store).query(
            word,
            q,
            MAX_QUERY_MATCHES,
            now_secs(),
        );
    }
    let req = IndexRequest::Query {
        word: word.to_owned(),
        text: q.text.clone(),
        limit: MAX_QUERY_MATCHES as u32,
    };
    match tokio::time::timeout(ASK_TIMEOUT, request(inner, peer, &req)).await {
        Ok(Ok(answers)) => answers
            .into_iter()
            .flat_map(|a| match a {
                IndexResponse::Records { records } => records,
                _ => Vec::new(),
            })
            .collect(),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "word index query failed");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// Searches the word index for `q` (its `words`, at most four, in parallel); matching
/// names go to `tx` as hits of their holders. Returns how many were sent.
pub(crate) async fn search(
    inner: &Arc<Inner>,
    q: &Query,
    words: &[String],
    tx: &mpsc::Sender<WireHit>,
) -> usize {
    let me = inner.peer_id();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let seen = std::sync::Mutex::new(HashSet::<(PeerId, String)>::new());
    join_all(words.iter().map(|w| {
        let (sent, seen) = (&sent, &seen);
        async move {
            let nodes = nodes_of(inner, w).await;
            join_all(nodes.into_iter().map(|node| async move {
                let now = now_secs();
                for r in ask(inner, node, w, q).await {
                    if r.word != *w {
                        continue;
                    }
                    let holder = match r.verify(now) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!(peer = %node, error = %e, "word index answered a bad record; dropped");
                            continue;
                        }
                    };
                    if holder == me {
                        continue;
                    }
                    for e in r.matching(q) {
                        if !kith_core::sync::recover(seen).insert((holder, e.id.clone())) {
                            continue;
                        }
                        let hit = WireHit {
                            entry: e.clone(),
                            peer: holder.to_string(),
                            addrs: Vec::new(),
                            score: 0.0,
                        };
                        if tx.send(hit).await.is_err() {
                            return;
                        }
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }))
            .await;
        }
    }))
    .await;
    sent.into_inner()
}
