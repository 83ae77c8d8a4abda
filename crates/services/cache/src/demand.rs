//! The source's side: which regions ask for which of this node's shares. When enough
//! distinct peers of one region ask for one content ID within the window, a cache node in
//! that region is asked to fetch it ahead (once per cooldown). Bounded: at most
//! [`MAX_TRACKED`] (content, region) pairs and [`MAX_PEERS`] peers each.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use kith_core::ContentId;
use kith_overlay::{PeerId, Region};
use serde::Serialize;
use tokio::time::Instant;

/// (content, region) pairs tracked at once.
pub const MAX_TRACKED: usize = 4096;
/// Peers remembered per pair.
pub const MAX_PEERS: usize = 64;
/// Hints remembered for `kith cache status`.
pub const MAX_HINTS: usize = 32;

struct Seen {
    peers: Vec<PeerId>,
    first: Instant,
    hinted: Option<Instant>,
}

/// A hint this node sent, and the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hint {
    pub id: ContentId,
    pub region: String,
    pub demand: u32,
    /// The cache node asked (none: no cache node was found in the region).
    pub node: Option<String>,
    pub answer: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A (content, region) pair and how many peers of it asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Asked {
    pub id: ContentId,
    pub region: String,
    pub peers: u32,
}

pub struct Demand {
    threshold: u32,
    window: Duration,
    cooldown: Duration,
    seen: HashMap<(ContentId, Region), Seen>,
    pub hints: VecDeque<Hint>,
}

impl Demand {
    pub fn new(threshold: u32, window: Duration, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            window,
            cooldown,
            seen: HashMap::new(),
            hints: VecDeque::new(),
        }
    }

    /// Notes that `peer` of `region` asked for `id`. Returns the peers that asked when a
    /// cache node of the region should be asked now (the threshold is reached and no hint
    /// went out within the cooldown).
    pub fn note(
        &mut self,
        id: ContentId,
        region: Region,
        peer: PeerId,
        now: Instant,
    ) -> Option<Vec<PeerId>> {
        let window = self.window;
        if !self.seen.contains_key(&(id, region)) && self.seen.len() >= MAX_TRACKED {
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.first) < window);
            if self.seen.len() >= MAX_TRACKED {
                let oldest = self
                    .seen
                    .iter()
                    .min_by_key(|(_, s)| s.first)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.seen.remove(&k);
                }
            }
        }
        let s = self.seen.entry((id, region)).or_insert_with(|| Seen {
            peers: Vec::new(),
            first: now,
            hinted: None,
        });
        if now.saturating_duration_since(s.first) >= window {
            s.peers.clear();
            s.first = now;
        }
        if !s.peers.contains(&peer) && s.peers.len() < MAX_PEERS {
            s.peers.push(peer);
        }
        let cooled = s
            .hinted
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cooldown);
        if s.peers.len() as u32 >= self.threshold && cooled {
            s.hinted = Some(now);
            return Some(s.peers.clone());
        }
        None
    }

    pub fn record(&mut self, h: Hint) {
        if self.hints.len() >= MAX_HINTS {
            self.hints.pop_front();
        }
        self.hints.push_back(h);
    }

    /// The pairs seen within the window, most asked first (at most `n`).
    pub fn top(&self, n: usize, now: Instant) -> Vec<Asked> {
        let mut v: Vec<Asked> = self
            .seen
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.first) < self.window)
            .map(|((id, r), s)| Asked {
                id: *id,
                region: r.to_string(),
                peers: s.peers.len() as u32,
            })
            .collect();
        v.sort_by(|a, b| b.peers.cmp(&a.peers).then(a.region.cmp(&b.region)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn lan(n: u8) -> Region {
        Region::of_ip(IpAddr::V4(Ipv4Addr::new(10, 0, n, 1)))
    }

    #[test]
    fn distinct_peers_of_one_region_reach_the_threshold_once_per_cooldown() {
        let mut d = Demand::new(2, Duration::from_secs(3600), Duration::from_secs(600));
        let id = ContentId::manifest(b"a");
        let (p, q, r) = (PeerId::random(), PeerId::random(), PeerId::random());
        let t = Instant::now();
        assert_eq!(d.note(id, lan(1), p, t), None);
        assert_eq!(d.note(id, lan(1), p, t), None, "the same peer twice is one");
        assert_eq!(
            d.note(id, lan(2), q, t),
            None,
            "another region counts apart"
        );
        assert_eq!(d.note(id, lan(1), q, t), Some(vec![p, q]));
        assert_eq!(d.note(id, lan(1), r, t), None, "hinted within the cooldown");
        let later = t + Duration::from_secs(601);
        assert!(d.note(id, lan(1), r, later).is_some());
        assert_eq!(d.top(10, t).first().map(|s| s.peers), Some(3));
    }

    #[test]
    fn stays_bounded() {
        let mut d = Demand::new(3, Duration::from_secs(60), Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..(MAX_TRACKED + 10) {
            let id = ContentId::manifest(&i.to_be_bytes());
            let _ = d.note(id, lan(1), PeerId::random(), t);
        }
        assert!(d.seen.len() <= MAX_TRACKED);
        let id = ContentId::manifest(b"many");
        for _ in 0..(MAX_PEERS + 10) {
            let _ = d.note(id, lan(3), PeerId::random(), t);
        }
        assert!(d.seen.values().all(|s| s.peers.len() <= MAX_PEERS));
        for i in 0..(MAX_HINTS + 5) {
            d.record(Hint {
                id,
                region: i.to_string(),
                demand: 1,
                node: None,
                answer: String::new(),
                at_ms: 0,
            });
        }
        assert_eq!(d.hints.len(), MAX_HINTS);
    }
}
