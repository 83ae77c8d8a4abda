//! Byte budgets for prefetches, per hour: what one asking peer can make this node fetch,
//! and what this node fetches from one provider. Each peer has a leaky bucket of bytes,
//! [`Budget::per_hour`] deep, that drains at that many bytes an hour (a peer that used it
//! all has a little again a minute later). A prefetch is taken only when the asker's
//! bucket, and that of the provider its root manifest came from, have room for its whole
//! size (read from the manifest); while it runs, the bytes each provider sends are
//! charged as they arrive ([`Meter`]), and what was reserved but not fetched is given
//! back at the end. Pins are the user's own and are not budgeted.

use std::collections::HashMap;

use kith_overlay::PeerId;
use tokio::time::Instant;

/// Peers whose buckets are kept. Past it, drained buckets are forgotten; a peer that still
/// finds no place gets no room (a prefetch it asks for, or would come from it, is refused)
/// until some drain, and bytes from a provider with no place take the place of the bucket
/// with the least in it.
pub const MAX_PEERS: usize = 4096;
const HOUR_MS: u128 = 3_600_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes in the bucket at `at`.
    used: u64,
    at: Instant,
}

impl Bucket {
    /// Bytes in it at `now`, after what drained since `at`.
    fn level(&self, per_hour: u64, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.at).as_millis();
        let drained = u128::from(per_hour).saturating_mul(ms) / HOUR_MS;
        self.used
            .saturating_sub(u64::try_from(drained).unwrap_or(u64::MAX))
    }
}

/// One leaky bucket of bytes per peer.
#[derive(Debug)]
pub struct Budget {
    per_hour: u64,
    peers: HashMap<PeerId, Bucket>,
}

impl Budget {
    pub fn new(per_hour: u64) -> Self {
        Self {
            per_hour,
            peers: HashMap::new(),
        }
    }

    pub fn per_hour(&self) -> u64 {
        self.per_hour
    }

    fn level(&self, b: &Bucket, now: Instant) -> u64 {
        b.level(self.per_hour, now)
    }

    fn prune(&mut self, now: Instant) {
        if self.peers.len() >= MAX_PEERS {
            let per_hour = self.per_hour;
            self.peers.retain(|_, b| b.level(per_hour, now) > 0);
        }
    }

    /// Bytes `peer` can still take this hour.
    pub fn room(&mut self, peer: &PeerId, now: Instant) -> u64 {
        match self.peers.get(peer) {
            Some(b) => self.per_hour.saturating_sub(self.level(b, now)),
            None => {
                self.prune(now);
                if self.peers.len() < MAX_PEERS {
                    self.per_hour
                } else {
                    0
                }
            }
        }
    }

    /// Whether `peer` took more than its budget (bytes charged as they came).
    pub fn over(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|b| self.level(b, now) > self.per_hour)
    }

    /// Puts `bytes` in `peer`'s bucket (it may go past the brim: bytes that came in).
    pub fn charge(&mut self, peer: PeerId, bytes: u64, now: Instant) {
        if !self.peers.contains_key(&peer) {
            self.prune(now);
            if self.peers.len() >= MAX_PEERS {
                let least = self
                    .peers
                    .iter()
                    .min_by_key(|(_, b)| self.level(b, now))
                    .map(|(p, _)| *p);
                if let Some(p) = least {
                    self.peers.remove(&p);
                }
            }
        }
        let level = self.peers.get(&peer).map_or(0, |b| self.level(b, now));
        self.peers.insert(
            peer,
            Bucket {
                used: level.saturating_add(bytes),
                at: now,
            },
        );
    }

    /// Takes `bytes` back out of `peer`'s bucket (reserved, then not fetched).
    pub fn refund(&mut self, peer: &PeerId, bytes: u64, now: Instant) {
        if let Some(b) = self.peers.get(peer).copied() {
            let used = self.level(&b, now).saturating_sub(bytes);
            self.peers.insert(*peer, Bucket { used, at: now });
        }
    }
}

/// What a prefetch was charged when it was taken: its size, to the peer that asked and to
/// the provider its root manifest came from (the one it will most likely fetch from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub asker: PeerId,
    pub provider: Option<PeerId>,
    pub bytes: u64,
}

/// One fill's bytes per provider, from share's progress (`fetched_from`, running totals):
/// what each sent since the last look. The reserved provider is charged only for bytes
/// beyond its reservation.
#[derive(Debug, Default)]
pub struct Meter {
    seen: HashMap<String, u64>,
    reserved: Option<(PeerId, u64)>,
}

impl Meter {
    pub fn new(r: Option<&Reservation>) -> Self {
        Self {
            seen: HashMap::new(),
            reserved: r.and_then(|r| r.provider.map(|p| (p, r.bytes))),
        }
    }

    /// The bytes to charge each provider for what it sent since the last look.
    pub fn since(&mut self, fetched_from: &[(String, u64)]) -> Vec<(PeerId, u64)> {
        let mut out = Vec::new();
        for (who, total) in fetched_from {
            let Ok(peer) = who.parse::<PeerId>() else {
                continue;
            };
            let last = self.seen.insert(who.clone(), *total).unwrap_or(0);
            let free = match self.reserved {
                Some((p, r)) if p == peer => r,
                _ => 0,
            };
            let delta = total
                .saturating_sub(free)
                .saturating_sub(last.saturating_sub(free));
            if delta > 0 {
                out.push((peer, delta));
            }
        }
        out
    }

    /// What the reserved provider did not send of its reservation (to give back).
    pub fn unused(&self) -> Option<(PeerId, u64)> {
        self.reserved.map(|(p, r)| {
            let sent = self.seen.get(&p.to_string()).copied().unwrap_or(0);
            (p, r.saturating_sub(sent))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_fills_drains_over_the_hour_and_gives_back() {
        let mut b = Budget::new(3600);
        let (p, q) = (PeerId::random(), PeerId::random());
        let t = Instant::now();
        assert_eq!(b.room(&p, t), 3600);
        b.charge(p, 3000, t);
        assert_eq!(b.room(&p, t), 600);
        assert_eq!(b.room(&q, t), 3600, "each peer has its own");
        assert_eq!(
            b.room(&p, t + Duration::from_secs(60)),
            660,
            "a byte a second"
        );
        b.charge(p, 1000, t);
        assert!(b.over(&p, t), "bytes that came in go past the brim");
        assert_eq!(b.room(&p, t), 0);
        b.refund(&p, 2500, t);
        assert_eq!(b.room(&p, t), 2100);
        assert_eq!(b.room(&p, t + Duration::from_secs(3600)), 3600);
    }

    #[test]
    fn the_peers_kept_are_bounded() {
        let mut b = Budget::new(1000);
        let t = Instant::now();
        for _ in 0..(MAX_PEERS + 10) {
            b.charge(PeerId::random(), 500, t);
        }
        assert_eq!(b.peers.len(), MAX_PEERS);
        assert_eq!(b.room(&PeerId::random(), t), 0, "no place: no room");
        let later = t + Duration::from_secs(3600);
        assert_eq!(b.room(&PeerId::random(), later), 1000, "drained ones go");
        assert!(b.peers.is_empty());
    }

    #[test]
    fn a_meter_charges_what_came_since_and_spares_the_reservation() {
        let (p, q) = (PeerId::random(), PeerId::random());
        let r = Reservation {
            asker: PeerId::random(),
            provider: Some(p),
            bytes: 100,
        };
        let mut m = Meter::new(Some(&r));
        let (ps, qs) = (p.to_string(), q.to_string());
        assert_eq!(m.since(&[(ps.clone(), 60)]), vec![]);
        assert_eq!(
            m.since(&[(ps.clone(), 60), (qs.clone(), 30)]),
            vec![(q, 30)]
        );
        assert_eq!(
            m.since(&[(ps.clone(), 130), (qs.clone(), 30), ("junk".into(), 9)]),
            vec![(p, 30)],
            "only beyond its reservation"
        );
        assert_eq!(m.since(&[(ps.clone(), 140)]), vec![(p, 10)]);
        assert_eq!(m.unused(), Some((p, 0)));
        let mut m = Meter::new(Some(&r));
        assert_eq!(m.since(&[(ps, 40)]), vec![]);
        assert_eq!(m.unused(), Some((p, 60)));
        assert_eq!(Meter::new(None).unused(), None);
    }
}
