//! Link codes handed out and not used yet: each valid for [`LINK_TTL`], once.

use std::collections::HashMap;
use std::time::Instant;

use kith_overlay::PeerId;

use crate::LINK_TTL;

/// Link codes outstanding at once.
pub(crate) const MAX_CODES: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Codes {
    /// Secret → when it was handed out.
    issued: HashMap<[u8; 32], Instant>,
}

impl Codes {
    fn expire(&mut self, now: Instant) {
        self.issued
            .retain(|_, at| now.saturating_duration_since(*at) < LINK_TTL);
    }

    /// Remembers a new code's secret; `false` when too many are outstanding.
    pub fn add(&mut self, secret: [u8; 32], now: Instant) -> bool {
        self.expire(now);
        if self.issued.len() >= MAX_CODES {
            return false;
        }
        self.issued.insert(secret, now);
        true
    }

    /// Takes the code `proof` was made with for `device`, once: `false` if none matches
    /// or it expired.
    pub fn take(&mut self, proof: &blake3::Hash, device: &PeerId, now: Instant) -> bool {
        self.expire(now);
        let hit = self
            .issued
            .keys()
            .find(|s| crate::protocol::proof(s, device) == *proof)
            .copied();
        hit.is_some_and(|s| self.issued.remove(&s).is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::proof;

    #[test]
    fn a_code_works_once_for_the_device_that_proves_it_and_expires() {
        let (me, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut c = Codes::default();
        assert!(c.add([1; 32], t0));
        // A proof made for another device does not take it.
        assert!(!c.take(&proof(&[1; 32], &other), &me, t0));
        assert!(c.take(&proof(&[1; 32], &me), &me, t0));
        assert!(!c.take(&proof(&[1; 32], &me), &me, t0), "single use");
        assert!(c.add([2; 32], t0));
        let late = t0 + LINK_TTL + Duration::from_secs(1);
        assert!(!c.take(&proof(&[2; 32], &me), &me, late), "expired");
        for i in 0..MAX_CODES as u8 {
            assert!(c.add([10 + i; 32], t0));
        }
        assert!(!c.add([99; 32], t0), "bounded");
        assert!(c.add([99; 32], late), "room again once they expired");
    }
}
