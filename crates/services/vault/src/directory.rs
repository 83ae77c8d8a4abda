//! Holders this owner knows of: those found in the DHT or that offered room (most recent
//! last), and those that did not answer lately (asked last).
//!
//! Both are sets of peer IDs that any state leaves valid, so a poisoned lock is taken
//! back ([`kith_core::sync::recover`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kith_core::sync::recover;
use kith_overlay::PeerId;

/// How long a holder that did not answer is asked last.
const AWAY: Duration = Duration::from_secs(60);
/// Most holders remembered as away.
const MAX_AWAY: usize = 4096;
/// Most holders remembered as known.
const MAX_KNOWN: usize = 256;

#[derive(Default)]
pub(crate) struct Directory {
    away: Mutex<HashMap<String, Instant>>,
    known: Mutex<Vec<PeerId>>,
}

impl Directory {
    pub fn remember(&self, peers: &[PeerId]) {
        let mut k = recover(&self.known);
        for p in peers {
            k.retain(|x| x != p);
            k.push(*p);
        }
        let over = k.len().saturating_sub(MAX_KNOWN);
        k.drain(..over);
    }

    pub fn known(&self) -> Vec<PeerId> {
        recover(&self.known).clone()
    }

    /// Notes that a holder did not answer.
    pub fn away(&self, holder: &str) {
        let mut a = recover(&self.away);
        if a.len() >= MAX_AWAY {
            a.retain(|_, t| t.elapsed() < AWAY);
        }
        if a.len() < MAX_AWAY {
            a.insert(holder.to_owned(), Instant::now());
        }
    }

    pub fn is_away(&self, holder: &str) -> bool {
        recover(&self.away)
            .get(holder)
            .is_some_and(|t| t.elapsed() < AWAY)
    }
}
