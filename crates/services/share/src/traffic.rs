//! Content bytes sent to and received from each peer since the node started (for the
//! UI's per-peer rates): at most [`MAX_PEER_TRAFFIC`] peers, the quietest forgotten first.

use std::collections::HashMap;
use std::sync::Mutex;

use kith_core::sync::recover;
use kith_overlay::PeerId;

/// Peers whose traffic is counted.
pub const MAX_PEER_TRAFFIC: usize = 4096;

/// Counters only (every state is valid): taken back from a poisoned lock.
#[derive(Default)]
pub(crate) struct PeerTraffic(Mutex<HashMap<PeerId, (u64, u64)>>);

impl PeerTraffic {
    /// Counts content bytes sent to and received from `peer`.
    pub fn count(&self, peer: PeerId, sent: u64, received: u64) {
        let mut m = recover(&self.0);
        if !m.contains_key(&peer) && m.len() >= MAX_PEER_TRAFFIC {
            let quietest = m.iter().min_by_key(|(_, (s, r))| s + r).map(|(p, _)| *p);
            if let Some(q) = quietest {
                m.remove(&q);
            }
        }
        let e = m.entry(peer).or_default();
        e.0 += sent;
        e.1 += received;
    }

    /// Each peer's bytes sent and received.
    pub fn snapshot(&self) -> Vec<(PeerId, u64, u64)> {
        recover(&self.0)
            .iter()
            .map(|(p, (s, r))| (*p, *s, *r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quietest_peer_goes_first_when_full() {
        let t = PeerTraffic::default();
        let quiet = PeerId::random();
        t.count(quiet, 1, 0);
        for _ in 1..MAX_PEER_TRAFFIC {
            t.count(PeerId::random(), 10, 10);
        }
        t.count(quiet, 1, 0);
        assert!(t.snapshot().iter().any(|(p, s, _)| *p == quiet && *s == 2));
        t.count(PeerId::random(), 5, 5);
        assert_eq!(t.snapshot().len(), MAX_PEER_TRAFFIC);
        assert!(!t.snapshot().iter().any(|(p, _, _)| *p == quiet));
    }
}
