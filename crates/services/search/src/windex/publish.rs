//! Publishing this node's words: a signed record per word of its public names, placed at
//! the word's nodes; again when the catalogue changes (the changed words) and on a timer
//! (all of them, before they expire); removal records for words no longer shared.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_core::store::{now_ms, now_secs};
use kith_core::tasks::Tasks;
use kith_overlay::{Keypair, PeerId};

use super::client::Client;
use super::protocol::{IndexRequest, IndexResponse};
use super::record::{MAX_ENTRIES, MAX_WORD_BYTES, WordRecord};
use super::store::{Held, Put};
use crate::catalog::Catalog;
use crate::protocol::Entry;
use crate::{Error, MAX_KEYWORDS, query};

/// Nodes of the K closest to a word that keep each holder's record.
pub const REPLICAS: usize = 3;

/// `closest` ordered by how high each ranks for `holder` (rendezvous hashing): the first
/// [`REPLICAS`] that accept keep the holder's record.
pub fn rank(closest: &[PeerId], holder: &PeerId, word: &str) -> Vec<PeerId> {
    let mut scored: Vec<([u8; 32], PeerId)> = closest
        .iter()
        .map(|p| {
            let mut h = blake3::Hasher::new();
            h.update(word.as_bytes());
            h.update(&holder.to_bytes());
            h.update(&p.to_bytes());
            (*h.finalize().as_bytes(), *p)
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().map(|(_, p)| p).collect()
}

/// When to publish again after start (the network is still forming), then every
/// `interval`.
pub fn republish(round: u32, interval: Duration) -> Duration {
    const EARLY: [u64; 5] = [5, 15, 30, 60, 180];
    EARLY
        .get(round as usize)
        .map(|s| Duration::from_secs(*s))
        .unwrap_or(interval)
        .min(interval)
}

/// Words placed at once.
const PARALLEL: usize = 8;
/// How soon words that no node took are tried again.
const RETRY_UNPLACED: Duration = Duration::from_secs(10);
/// How long one put may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(5);

/// What was last published for a word: a digest of its entries, and where it went.
#[derive(Debug, Clone, Default)]
pub(crate) struct Placed {
    digest: [u8; 32],
    nodes: Vec<PeerId>,
}

/// The words of the public catalogue's names, each with the entries whose names hold it.
pub(crate) fn words_of(entries: &[Entry]) -> BTreeMap<String, Vec<Entry>> {
    let mut words: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        for t in query::tokens(&e.name) {
            if t.chars().count() < query::MIN_KEYWORD_CHARS || t.len() > MAX_WORD_BYTES {
                continue;
            }
            if !words.contains_key(&t) && words.len() >= MAX_KEYWORDS {
                continue;
            }
            let list = words.entry(t).or_default();
            if list.len() < MAX_ENTRIES && !list.contains(e) {
                list.push(e.clone());
            }
        }
    }
    words
}

fn digest(entries: &[Entry]) -> [u8; 32] {
    *blake3::hash(&serde_json::to_vec(entries).unwrap_or_default()).as_bytes()
}

/// Where this node's words went, by word. Only the publisher writes it; a status read
/// waits for the publisher to finish a round.
#[derive(Default)]
pub(crate) struct Placements(tokio::sync::Mutex<HashMap<String, Placed>>);

impl Placements {
    /// Words this node publishes, and how many of them no node took.
    pub async fn published(&self) -> (usize, usize) {
        let placed = self.0.lock().await;
        let nowhere = placed.values().filter(|p| p.nodes.is_empty()).count();
        (placed.len(), nowhere)
    }
}

/// Publishes this node's words: what it needs of the catalogue, the word index's client
/// and its own part of the index, and where its words went.
pub(crate) struct Publisher {
    catalog: Arc<Catalog>,
    client: Client,
    held: Arc<Held>,
    placements: Arc<Placements>,
    key: Keypair,
    interval: Duration,
    tasks: Tasks,
}

impl Publisher {
    pub fn new(
        catalog: Arc<Catalog>,
        client: Client,
        held: Arc<Held>,
        placements: Arc<Placements>,
        key: Keypair,
        interval: Duration,
        tasks: Tasks,
    ) -> Self {
        Self {
            catalog,
            client,
            held,
            placements,
            key,
            interval,
            tasks,
        }
    }

    /// Publishes on catalogue changes and on the republish schedule, until shutdown.
    pub(crate) async fn run(self) {
        let mut generation = self.catalog.changes();
        let mut round = 0u32;
        let mut next_all = tokio::time::Instant::now() + republish(round, self.interval);
        loop {
            // Words no node took yet (no peers known, or they timed out) are tried again soon.
            let mut wake = next_all;
            if self.placements.published().await.1 > 0 {
                wake = wake.min(tokio::time::Instant::now() + RETRY_UNPLACED);
            }
            let all = tokio::select! {
                () = self.tasks.shutdown().cancelled() => return,
                () = tokio::time::sleep_until(wake) => {
                    let all = tokio::time::Instant::now() >= next_all;
                    if all {
                        round = round.saturating_add(1);
                        next_all = tokio::time::Instant::now()
                            + republish(round, self.interval);
                    }
                    all
                }
                r = generation.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // Let a burst of changes settle.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    false
                }
            };
            if let Err(e) = self.held.sweep(now_secs()) {
                tracing::warn!(error = %e, "cannot sweep the word index");
                return;
            }
            if let Err(e) = self.publish(all).await
                && !self.tasks.is_stopping()
            {
                tracing::warn!(error = %e, "cannot publish to the word index");
            }
        }
    }

    /// Publishes the words whose entries changed (all of them with `all`) and removes the
    /// words no longer shared.
    async fn publish(&self, all: bool) -> Result<(), Error> {
        let words = words_of(&self.catalog.public()?);
        let before = self.placements.0.lock().await.clone();
        let (seq, now) = (now_ms(), now_secs());
        let mut jobs: Vec<(String, Vec<Entry>, Placed)> = Vec::new();
        for (w, p) in &before {
            if !words.contains_key(w) {
                jobs.push((w.clone(), Vec::new(), p.clone()));
            }
        }
        for (w, entries) in words {
            let old = before.get(&w).cloned().unwrap_or_default();
            if all || old.digest != digest(&entries) || old.nodes.is_empty() {
                jobs.push((w, entries, old));
            }
        }
        let count = jobs.len();
        let results: Vec<(String, Option<Placed>)> = futures::stream::iter(jobs)
            .map(|(w, entries, old)| self.place(w, entries, old, seq, now))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut placed = self.placements.0.lock().await;
        let mut nowhere = 0;
        for (w, p) in results {
            match p {
                Some(p) => {
                    nowhere += usize::from(p.nodes.is_empty());
                    placed.insert(w, p);
                }
                None => {
                    placed.remove(&w);
                }
            }
        }
        tracing::debug!(words = count, nowhere, "published to the word index");
        Ok(())
    }

    /// Places one word's record (or removes it, with no entries); `None` once removed.
    async fn place(
        &self,
        word: String,
        entries: Vec<Entry>,
        old: Placed,
        seq: u64,
        now: u64,
    ) -> (String, Option<Placed>) {
        let d = digest(&entries);
        let removing = entries.is_empty();
        let record = match WordRecord::sign(&self.key, &word, entries, seq, now) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%word, error = %e, "cannot sign an index record");
                return (word, Some(old));
            }
        };
        let mut nodes = Vec::new();
        if !removing {
            let closest = self.client.nodes_of(&word).await;
            let me = self.client.me();
            for p in rank(&closest, &me, &word) {
                if nodes.len() == REPLICAS {
                    break;
                }
                if self.put(p, &record).await {
                    nodes.push(p);
                }
            }
        }
        // Where it was and is no more: withdrawn (a newer record without entries).
        if let Ok(gone) = WordRecord::sign(&self.key, &word, Vec::new(), seq, now) {
            for p in old.nodes.iter().filter(|p| !nodes.contains(p)) {
                self.put(*p, &gone).await;
            }
        }
        if removing {
            return (word, None);
        }
        (word, Some(Placed { digest: d, nodes }))
    }

    /// Puts one record at `peer`; true when it was kept there.
    async fn put(&self, peer: PeerId, r: &WordRecord) -> bool {
        let me = self.client.me();
        if peer == me {
            return matches!(
                self.held.put(r.clone(), me, now_secs()),
                Ok(Put::Stored | Put::Removed | Put::Stale)
            );
        }
        let req = IndexRequest::Put {
            records: vec![r.clone()],
        };
        match tokio::time::timeout(PUT_TIMEOUT, self.client.request(peer, &req)).await {
            Ok(Ok(answers)) => answers.iter().any(
                |a| matches!(a, IndexResponse::Stored { full, .. } if !full.contains(&r.word)),
            ),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "index put failed");
                false
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_spread_over_the_closest_nodes() {
        let closest: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        let mut kept = std::collections::HashMap::<PeerId, usize>::new();
        for _ in 0..2000 {
            let holder = PeerId::random();
            let ranked = rank(&closest, &holder, "word");
            assert_eq!(ranked.len(), closest.len());
            for p in ranked.iter().take(REPLICAS) {
                *kept.entry(*p).or_default() += 1;
            }
            // The same inputs rank the same way.
            assert_eq!(ranked, rank(&closest, &holder, "word"));
        }
        // 6000 placements over 20 nodes: about 300 each, none empty or swamped.
        assert_eq!(kept.len(), 20);
        assert!(kept.values().all(|n| (150..450).contains(n)), "{kept:?}");
    }

    #[test]
    fn early_republishing_then_the_interval() {
        let hour = Duration::from_secs(3600);
        assert_eq!(republish(0, hour).as_secs(), 5);
        assert_eq!(republish(9, hour), hour);
        assert_eq!(republish(0, Duration::from_secs(1)).as_secs(), 1);
    }
}
