//! Asking the word index. A query for a word is its own DHT lookup: it goes to the nodes
//! closest to the word that this node knows, each answers with the matching records it
//! keeps and the closer nodes it knows, and the query goes on to those, all at once,
//! until the K closest nodes found have all answered. So answers come in from the first
//! round on, and the lookup costs no messages beyond the queries themselves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kith_core::store::now_secs;
use kith_overlay::{Multiaddr, PeerId};
use tokio::sync::mpsc;

use kith_overlay::Overlay;

use super::protocol::{
    INDEX_PROTOCOL, IndexRequest, IndexResponse, MAX_ANSWER_FRAME, MAX_CLOSER, MAX_CLOSER_ADDRS,
    MAX_QUERY_MATCHES, word_key,
};
use super::record::WordRecord;
use super::store::Held;
use crate::Error;
use crate::metrics::Metrics;
use crate::protocol::{self, WireHit};
use crate::query::Query;

/// How long the lookup of a word's nodes may take (publishing).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one node may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Nodes a word's index lives at (Kademlia's K).
const K: usize = 20;
/// Most rounds of one query's lookup.
const MAX_ROUNDS: usize = 8;

/// Asks the word index's nodes (and this node's own part of it).
#[derive(Clone)]
pub(crate) struct Client {
    overlay: Overlay,
    held: Arc<Held>,
    metrics: Metrics,
}

impl Client {
    pub fn new(overlay: Overlay, held: Arc<Held>, metrics: Metrics) -> Self {
        Self {
            overlay,
            held,
            metrics,
        }
    }

    /// This node.
    pub fn me(&self) -> PeerId {
        self.overlay.peer_id()
    }

    /// Sends one request to `peer` and returns its answers (all frames up to `End`).
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        req: &IndexRequest,
    ) -> Result<Vec<IndexResponse>, Error> {
        let mut stream = self.overlay.open_stream(peer, INDEX_PROTOCOL).await?;
        self.metrics.sent();
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

    /// The nodes that keep `word`'s index (this node among them if it is one), found by a
    /// DHT lookup: where records are placed.
    pub(crate) async fn nodes_of(&self, word: &str) -> Vec<PeerId> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.overlay.closest_peers(word_key(word))).await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!(%word, error = %e, "word index lookup failed");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// One node's answer to a query: its matching records and the closer nodes it knows.
    async fn ask(
        &self,
        peer: PeerId,
        word: &str,
        q: &Query,
    ) -> (Vec<WordRecord>, Vec<(PeerId, Vec<Multiaddr>)>) {
        if peer == self.overlay.peer_id() {
            let local = self
                .held
                .query(word, q, MAX_QUERY_MATCHES, now_secs())
                .unwrap_or_default();
            return (local, Vec::new());
        }
        let req = IndexRequest::Query {
            word: word.to_owned(),
            text: q.text.clone(),
            limit: MAX_QUERY_MATCHES as u32,
        };
        let answers = match tokio::time::timeout(ASK_TIMEOUT, self.request(peer, &req)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "word index query failed");
                return (Vec::new(), Vec::new());
            }
            Err(_) => return (Vec::new(), Vec::new()),
        };
        let (mut records, mut closer) = (Vec::new(), Vec::new());
        for a in answers {
            match a {
                IndexResponse::Records { records: r } => records.extend(r),
                IndexResponse::Closer { peers } => {
                    closer.extend(peers.into_iter().take(MAX_CLOSER).filter_map(|p| {
                        let id: PeerId = p.peer.parse().ok()?;
                        let addrs = p
                            .addrs
                            .iter()
                            .take(MAX_CLOSER_ADDRS)
                            .filter_map(|a| a.parse().ok())
                            .collect();
                        Some((id, addrs))
                    }));
                }
                _ => {}
            }
        }
        (records, closer)
    }

    /// Queries the index of one word: rounds of asking every one of the K closest nodes
    /// known that has not answered yet; each record goes to `found` as it arrives.
    async fn lookup(&self, word: &str, q: &Query, found: &mpsc::Sender<WordRecord>) {
        let key = word_key(word);
        let me = self.overlay.peer_id();
        let mut short: Vec<PeerId> = self
            .overlay
            .closest_known(key.clone(), me)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        short.push(me);
        kith_overlay::sort_by_distance(&key, &mut short);
        short.truncate(K);
        let mut asked: HashSet<PeerId> = HashSet::new();
        for _ in 0..MAX_ROUNDS {
            let round: Vec<PeerId> = short
                .iter()
                .filter(|p| !asked.contains(p))
                .copied()
                .collect();
            if round.is_empty() {
                break;
            }
            asked.extend(round.iter().copied());
            let mut answers: FuturesUnordered<_> =
                round.into_iter().map(|p| self.ask(p, word, q)).collect();
            while let Some((records, closer)) = answers.next().await {
                // A record must be about the word it was asked for.
                for r in records.into_iter().filter(|r| r.word == word) {
                    if found.send(r).await.is_err() {
                        return;
                    }
                }
                for (p, addrs) in closer {
                    if p == me || short.contains(&p) {
                        continue;
                    }
                    for a in addrs {
                        let _ = self.overlay.add_address(p, a).await;
                    }
                    short.push(p);
                }
            }
            kith_overlay::sort_by_distance(&key, &mut short);
            short.truncate(K);
        }
    }

    /// Searches the word index for `q` (its `words`, at most four, in parallel); matching
    /// names go to `tx` as hits of their holders, each record checked first. Returns how
    /// many hits were sent.
    pub(crate) async fn search(
        &self,
        q: &Query,
        words: &[String],
        tx: &mpsc::Sender<WireHit>,
    ) -> usize {
        let me = self.overlay.peer_id();
        let (rtx, mut rrx) = mpsc::channel::<WordRecord>(64);
        let lookups = async move {
            let rtx = rtx;
            futures::future::join_all(words.iter().map(|w| self.lookup(w, q, &rtx))).await;
        };
        let take = async {
            let mut seen = HashSet::<(PeerId, String)>::new();
            let mut sent = 0;
            while let Some(r) = rrx.recv().await {
                let holder = match r.verify(now_secs()) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(error = %e, "word index answered a bad record; dropped");
                        continue;
                    }
                };
                if holder == me {
                    continue;
                }
                for e in r.matching(q) {
                    if !seen.insert((holder, e.id.clone())) {
                        continue;
                    }
                    let hit = WireHit {
                        entry: e.clone(),
                        peer: holder.to_string(),
                        addrs: Vec::new(),
                        score: 0.0,
                    };
                    if tx.send(hit).await.is_err() {
                        return sent;
                    }
                    sent += 1;
                }
            }
            sent
        };
        let ((), sent) = futures::join!(lookups, take);
        sent
    }
}
