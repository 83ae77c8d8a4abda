//! Per-peer query rates (token buckets) and the query IDs seen recently (duplicate
//! suppression for flooding). Every state of either is valid, so a poisoned lock is taken
//! back ([`kith_core::sync::recover`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kith_core::sync::recover;
use kith_overlay::PeerId;

/// Most peers with a query rate remembered.
const MAX_RATED_PEERS: usize = 10_000;

/// A token bucket per peer.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How many queries each peer may send: `rate` a second sustained, `burst` at once.
#[derive(Debug)]
pub(crate) struct QueryRate {
    buckets: Mutex<HashMap<PeerId, Bucket>>,
    rate: f64,
    burst: f64,
}

impl QueryRate {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            buckets: Mutex::default(),
            rate,
            burst,
        }
    }

    /// Whether `peer` may send another query now (and counts it if so).
    pub fn allow(&self, peer: PeerId) -> bool {
        let mut m = recover(&self.buckets);
        if m.len() > MAX_RATED_PEERS {
            m.retain(|_, b| b.at.elapsed() < Duration::from_secs(60));
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = m.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: Instant::now(),
        });
        b.tokens = (b.tokens + b.at.elapsed().as_secs_f64() * rate).min(burst);
        b.at = Instant::now();
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Query IDs seen recently, the oldest forgotten first.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    const CAP: usize = 8192;

    fn insert(&mut self, qid: u64) -> bool {
        if !self.set.insert(qid) {
            return false;
        }
        self.order.push_back(qid);
        if self.order.len() > Self::CAP
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// The query IDs this node has seen (sent or answered).
#[derive(Debug, Default)]
pub(crate) struct SeenQueries(Mutex<Seen>);

impl SeenQueries {
    /// `true` the first time query `qid` is seen here.
    pub fn first_sight(&self, qid: u64) -> bool {
        recover(&self.0).insert(qid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_burst_then_is_refused() {
        let r = QueryRate::new(0.001, 3.0);
        let p = PeerId::random();
        assert!((0..3).all(|_| r.allow(p)));
        assert!(!r.allow(p));
        assert!(r.allow(PeerId::random()), "another peer has its own bucket");
    }

    #[test]
    fn a_query_is_new_once() {
        let s = SeenQueries::default();
        assert!(s.first_sight(7));
        assert!(!s.first_sight(7));
    }
}
