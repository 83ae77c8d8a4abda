//! How a master scores its volunteers: results that agreed with the quorum and results
//! that did not. A volunteer with repeated faults gets no more work; one with a long run
//! of agreement is trusted with units at a replication of one (with spot checks).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::protocol::Standing;

/// Faults after which a volunteer is dropped, unless its record outweighs them.
pub const MAX_FAULTS: u64 = 3;
/// Agreements in a row after which units may go to a volunteer alone.
pub const TRUSTED_STREAK: u64 = 10;
/// Of units first issued to a trusted volunteer, the share still checked by a quorum.
pub const SPOT_CHECK: f64 = 0.2;
/// Volunteers remembered.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Standings {
    by_key: HashMap<String, Standing>,
}

impl Standings {
    pub fn get(&self, key: &str) -> Standing {
        self.by_key.get(key).copied().unwrap_or(Standing {
            reputation: 1.0,
            ..Standing::default()
        })
    }

    fn update(&mut self, key: &str, f: impl FnOnce(&mut Standing)) {
        if !self.by_key.contains_key(key) && self.by_key.len() >= MAX_KEYS {
            return;
        }
        let s = self.by_key.entry(key.to_owned()).or_default();
        f(s);
        s.reputation = (s.agreed + 1) as f64 / (s.agreed + 4 * s.faults + 1) as f64;
        s.dropped = s.faults >= MAX_FAULTS && s.faults * 10 > s.agreed;
    }

    pub fn agreed(&mut self, key: &str) {
        self.update(key, |s| {
            s.agreed += 1;
            s.streak += 1;
        });
    }

    pub fn disagreed(&mut self, key: &str) {
        self.update(key, |s| {
            s.faults += 1;
            s.streak = 0;
        });
        if self.get(key).dropped {
            tracing::warn!(volunteer = %key, "volunteer dropped: its results disagreed with the quorum repeatedly");
        }
    }

    pub fn trusted(&self, key: &str) -> bool {
        self.get(key).streak >= TRUSTED_STREAK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheaters_are_dropped_and_a_long_record_is_trusted() {
        let mut s = Standings::default();
        assert!(!s.get("c").dropped);
        for _ in 0..MAX_FAULTS {
            s.disagreed("c");
        }
        assert!(s.get("c").dropped);
        assert!(s.get("c").reputation < 0.2);
        for _ in 0..TRUSTED_STREAK {
            s.agreed("h");
        }
        assert!(s.trusted("h"));
        assert_eq!(s.get("h").reputation, 1.0);
        s.disagreed("h");
        assert!(!s.trusted("h"), "one fault ends the streak");
        assert!(!s.get("h").dropped, "one fault is not a drop");
    }
}
