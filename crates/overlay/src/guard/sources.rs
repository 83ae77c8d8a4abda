//! Bounded sets of source addresses the guard remembers: those peers known to the node
//! connected from (they keep a share of the slots), and those whose handshakes it cut for
//! silence (they go first next time). A handshake does not say who the peer is before it
//! completes, so the source address is what the guard can go by.

use std::collections::HashMap;
use std::net::IpAddr;

/// Most sources of known peers remembered. A node knows a few hundred peers at most (its
/// routing table's near buckets, its groups' devices).
pub(crate) const MAX_KNOWN: usize = 1024;
/// Most sources of silent handshakes remembered: more than an attacker's addresses in one
/// IPv4 /20; one with more only cycles through them, each going first again once
/// remembered.
pub(crate) const MAX_SILENT: usize = 4096;

/// Sources, the least recently seen forgotten first.
#[derive(Debug)]
pub(crate) struct Sources {
    /// Source → when it was last seen (a counter).
    seen: HashMap<IpAddr, u64>,
    tick: u64,
    cap: usize,
}

impl Sources {
    pub fn new(cap: usize) -> Self {
        Self {
            seen: HashMap::new(),
            tick: 0,
            cap,
        }
    }

    pub fn note(&mut self, source: IpAddr) {
        self.tick += 1;
        if !self.seen.contains_key(&source)
            && self.seen.len() >= self.cap
            && let Some(oldest) = self.seen.iter().min_by_key(|(_, t)| **t).map(|(s, _)| *s)
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(source, self.tick);
    }

    pub fn contains(&self, source: &IpAddr) -> bool {
        self.seen.contains_key(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_seen_source_goes_first() {
        let mut k = Sources::new(MAX_KNOWN);
        let ip = |i: usize| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..MAX_KNOWN {
            k.note(ip(i));
        }
        k.note(ip(0)); // seen again: now the most recent
        k.note(ip(MAX_KNOWN));
        assert_eq!(k.seen.len(), MAX_KNOWN);
        assert!(k.contains(&ip(0)));
        assert!(!k.contains(&ip(1)));
        assert!(k.contains(&ip(MAX_KNOWN)));
    }
}
