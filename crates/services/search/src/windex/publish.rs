//! Publishing this node's words: a signed record per word of its public names, placed at
//! the word's nodes; again when the catalogue changes (the changed words) and on a timer
//! (all of them, before they expire); removal records for words no longer shared.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_core::store::{now_ms, now_secs};
use kith_overlay::{Keypair, PeerId};

use super::client::{nodes_of, request};
use super::record::{MAX_ENTRIES, MAX_WORD_BYTES, WordRecord};
use super::server::{IndexRequest, IndexResponse};
use super::store::Put;
use super::{REPLICAS, rank, republish};
use crate::protocol::Entry;
use crate::state::Inner;
use crate::{Error, MAX_KEYWORDS, query};

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

/// Publishes on catalogue changes and on the republish schedule, until shutdown.
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(key) = inner.config.keypair.clone() else {
        return;
    };
    let mut generation = inner.generation.subscribe();
    let mut round = 0u32;
    let mut next_all = tokio::time::Instant::now() + republish(round, inner.config.index_republish);
    loop {
        // Words no node took yet (no peers known, or they timed out) are tried again soon.
        let mut wake = next_all;
        if published(&inner).await.1 > 0 {
            wake = wake.min(tokio::time::Instant::now() + RETRY_UNPLACED);
        }
        let all = tokio::select! {
            () = inner.tasks.shutdown().cancelled() => return,
            () = tokio::time::sleep_until(wake) => {
                let all = tokio::time::Instant::now() >= next_all;
                if all {
                    round = round.saturating_add(1);
                    next_all = tokio::time::Instant::now()
                        + republish(round, inner.config.index_republish);
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
        kith_core::sync::recover(&inner.windex.store).sweep(now_secs());
        if let Err(e) = publish(&inner, &key, all).await
            && !inner.tasks.is_stopping()
        {
            tracing::warn!(error = %e, "cannot publish to the word index");
        }
    }
}

/// Publishes the words whose entries changed (all of them with `all`) and removes the
/// words no longer shared.
pub(crate) async fn publish(inner: &Arc<Inner>, key: &Keypair, all: bool) -> Result<(), Error> {
    let words = words_of(&inner.catalogue()?);
    let before = inner.windex.placed.lock().await.clone();
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
        .map(|(w, entries, old)| place(inner, key, w, entries, old, seq, now))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut placed = inner.windex.placed.lock().await;
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
    inner: &Arc<Inner>,
    key: &Keypair,
    word: String,
    entries: Vec<Entry>,
    old: Placed,
    seq: u64,
    now: u64,
) -> (String, Option<Placed>) {
    let d = digest(&entries);
    let removing = entries.is_empty();
    let record = match WordRecord::sign(key, &word, entries, seq, now) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%word, error = %e, "cannot sign an index record");
            return (word, Some(old));
        }
    };
    let mut nodes = Vec::new();
    if !removing {
        let closest = nodes_of(inner, &word).await;
        for p in rank(&closest, &inner.peer_id(), &word) {
            if nodes.len() == REPLICAS {
                break;
            }
            if put(inner, p, &record).await {
                nodes.push(p);
            }
        }
    }
    // Where it was and is no more: withdrawn (a newer record without entries).
    if let Ok(gone) = WordRecord::sign(key, &word, Vec::new(), seq, now) {
        for p in old.nodes.iter().filter(|p| !nodes.contains(p)) {
            put(inner, *p, &gone).await;
        }
    }
    if removing {
        return (word, None);
    }
    (word, Some(Placed { digest: d, nodes }))
}

/// Puts one record at `peer`; true when it was kept there.
async fn put(inner: &Inner, peer: PeerId, r: &WordRecord) -> bool {
    if peer == inner.peer_id() {
        let me = inner.peer_id();
        let got = kith_core::sync::recover(&inner.windex.store).put(r.clone(), me, now_secs());
        return got != Put::Full;
    }
    let req = IndexRequest::Put {
        records: vec![r.clone()],
    };
    match tokio::time::timeout(PUT_TIMEOUT, request(inner, peer, &req)).await {
        Ok(Ok(answers)) => answers
            .iter()
            .any(|a| matches!(a, IndexResponse::Stored { full, .. } if !full.contains(&r.word))),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "index put failed");
            false
        }
        Err(_) => false,
    }
}

/// Words this node publishes, and how many of them no node took.
pub(crate) async fn published(inner: &Inner) -> (usize, usize) {
    let placed = inner.windex.placed.lock().await;
    let nowhere = placed.values().filter(|p| p.nodes.is_empty()).count();
    (placed.len(), nowhere)
}
