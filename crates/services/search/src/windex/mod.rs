//! The distributed word index (`/kith/windex/1.0.0`, see `docs/protocols/search.md`).
//!
//! Every word of a public file name has a place in the DHT: the K (20) nodes closest to
//! the word's key. A node that shares files whose names hold the word stores one signed
//! record there — its names that contain the word, with their content IDs — at the
//! [`REPLICAS`] nodes of those K that rank highest for it (rendezvous hashing), so a
//! word's holders are spread over all K nodes and a popular word is split twenty ways
//! instead of filling one node. A query goes, for each of its words, to the K nodes of
//! the word; each answers with the records of holders that have a name matching the whole
//! query. The querier checks every record's signature and the names itself, so a storage
//! node can leave things out but cannot make anything up.
//!
//! Bounds: a record holds at most [`record::MAX_ENTRIES`] names; a node keeps at most
//! [`store::MAX_HOLDERS_PER_WORD`] holders per word, [`store::MAX_WORDS_PER_HOLDER`]
//! words per holder and [`store::MAX_BYTES`] in all; a holder whose record is refused as
//! "full" places it at its next-ranked node. Records expire ([`record::TTL_SECS`]) and are
//! published again well before ([`republish`]).

pub(crate) mod client;
pub(crate) mod publish;
pub mod record;
pub(crate) mod server;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::Mutex;

use kith_overlay::{PeerId, StreamProtocol};

/// This node's part of the index: what it keeps for others, and where its own words went.
#[derive(Default)]
pub(crate) struct Node {
    pub store: Mutex<store::Store>,
    pub placed: tokio::sync::Mutex<HashMap<String, publish::Placed>>,
}

pub const INDEX_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/windex/1.0.0");
/// Nodes of the K closest to a word that keep each holder's record.
pub const REPLICAS: usize = 3;

/// The DHT key a word's index lives at.
pub fn word_key(word: &str) -> Vec<u8> {
    format!("/kith/windex/{word}").into_bytes()
}

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
pub fn republish(round: u32, interval: std::time::Duration) -> std::time::Duration {
    const EARLY: [u64; 5] = [5, 15, 30, 60, 180];
    EARLY
        .get(round as usize)
        .map(|s| std::time::Duration::from_secs(*s))
        .unwrap_or(interval)
        .min(interval)
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
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(republish(0, hour).as_secs(), 5);
        assert_eq!(republish(9, hour), hour);
        assert_eq!(republish(0, std::time::Duration::from_secs(1)).as_secs(), 1);
    }
}
