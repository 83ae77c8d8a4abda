//! How a master scores its volunteers: results that a quorum of distinct people agreed
//! on, and results that disagreed with one. A volunteer with repeated faults gets no more
//! work; one with a long run of agreements with several other people is trusted with
//! units at a replication of one (with spot checks). A result accepted on trust alone
//! verifies nothing and scores nothing (BOINC's adaptive replication counts only
//! replicated results).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::protocol::Standing;

/// Faults after which a volunteer is dropped, unless its record outweighs them.
pub const MAX_FAULTS: u64 = 3;
/// Agreements in a row after which units may go to a volunteer alone (BOINC's
/// adaptive replication asks 10 consecutive valid results).
pub const TRUSTED_STREAK: u64 = 10;
/// Other people that run of agreements must include: a pair or a trio of people who
/// vouch only for each other never gain trust. (Devices of one person are one key, so
/// agreeing with one's own devices counts for nothing.)
pub const TRUST_PARTNERS: usize = 3;
/// Of units first issued to a trusted volunteer, the share still checked by a quorum.
pub const SPOT_CHECK: f64 = 0.2;
/// Volunteers remembered.
const MAX_KEYS: usize = 100_000;

/// A volunteer's standing and the other people its current run of agreements was with.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    standing: Standing,
    /// At most [`TRUST_PARTNERS`]; cleared by a fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    partners: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Standings {
    by_key: HashMap<String, Record>,
}

impl Standings {
    pub fn get(&self, key: &str) -> Standing {
        self.by_key
            .get(key)
            .map(|r| r.standing)
            .unwrap_or(Standing {
                reputation: 1.0,
                ..Standing::default()
            })
    }

    fn update(&mut self, key: &str, f: impl FnOnce(&mut Record)) {
        if !self.by_key.contains_key(key) && self.by_key.len() >= MAX_KEYS {
            return;
        }
        let r = self.by_key.entry(key.to_owned()).or_default();
        f(r);
        let s = &mut r.standing;
        s.reputation = (s.agreed + 1) as f64 / (s.agreed + 4 * s.faults + 1) as f64;
        s.dropped = s.faults >= MAX_FAULTS && s.faults * 10 > s.agreed;
    }

    /// `key`'s result agreed with those of `with` (other keys) on a unit. Without another
    /// key nothing was verified, and nothing is scored.
    pub fn agreed(&mut self, key: &str, with: &[&str]) {
        let with: Vec<&str> = with.iter().copied().filter(|k| *k != key).collect();
        if with.is_empty() {
            return;
        }
        self.update(key, |r| {
            r.standing.agreed += 1;
            r.standing.streak += 1;
            for k in with {
                if r.partners.len() < TRUST_PARTNERS && !r.partners.iter().any(|p| p == k) {
                    r.partners.push(k.to_owned());
                }
            }
        });
    }

    pub fn disagreed(&mut self, key: &str) {
        self.update(key, |r| {
            r.standing.faults += 1;
            r.standing.streak = 0;
            r.partners.clear();
        });
        if self.get(key).dropped {
            tracing::warn!(volunteer = %key, "volunteer dropped: its results disagreed with the quorum repeatedly");
        }
    }

    /// Whether units may go to `key` alone: a run of [`TRUSTED_STREAK`] agreements with
    /// at least [`TRUST_PARTNERS`] other people since its last fault.
    pub fn trusted(&self, key: &str) -> bool {
        self.by_key.get(key).is_some_and(|r| {
            r.standing.streak >= TRUSTED_STREAK
                && r.partners.len() >= TRUST_PARTNERS
                && !r.standing.dropped
        })
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
        for p in ["p1", "p2", "p3"]
            .iter()
            .cycle()
            .take(TRUSTED_STREAK as usize)
        {
            s.agreed("h", &[p]);
        }
        assert!(s.trusted("h"));
        assert_eq!(s.get("h").reputation, 1.0);
        s.disagreed("h");
        assert!(!s.trusted("h"), "one fault ends the streak");
        assert!(!s.get("h").dropped, "one fault is not a drop");
    }

    #[test]
    fn trust_takes_agreements_with_several_other_people() {
        let mut s = Standings::default();
        // Two people agreeing only with each other, however long.
        for _ in 0..3 * TRUSTED_STREAK {
            s.agreed("a", &["b"]);
            s.agreed("b", &["a"]);
        }
        assert!(!s.trusted("a") && !s.trusted("b"));
        // Results nobody else checked score nothing.
        for _ in 0..3 * TRUSTED_STREAK {
            s.agreed("c", &[]);
            s.agreed("c", &["c"]);
        }
        assert_eq!(s.get("c").agreed, 0);
        assert!(!s.trusted("c"));
        // With a third and a fourth person, the run counts.
        s.agreed("a", &["c"]);
        assert!(!s.trusted("a"));
        s.agreed("a", &["d", "e"]);
        assert!(s.trusted("a"));
        // A fault starts both over: the run and the people in it.
        s.disagreed("a");
        for _ in 0..TRUSTED_STREAK {
            s.agreed("a", &["b"]);
        }
        assert!(!s.trusted("a"), "{:?}", s.by_key.get("a"));
    }
}
