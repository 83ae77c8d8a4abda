//! Strikes against providers, shared by every download: a provider that sends bytes that
//! do not match their ID, or breaks the protocol's framing (a status it does not define, a
//! body over the limit), is shunned at once; one that stalls in the middle of a response,
//! or cuts one short while its connection stays up, gets a strike, and a second shuns it.
//! (A provider that shuts down cuts its responses short too, but its connection goes.) A shunned provider is
//! dropped by every download and not asked again until its shunning ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kith_overlay::PeerId;

/// How long a shunned provider is left alone.
pub const BAN_TIME: Duration = Duration::from_secs(600);
/// How long a strike counts.
const STRIKE_TIME: Duration = Duration::from_secs(600);
/// Points that shun a provider.
const SHUN: u32 = 2;
/// Most providers with strikes remembered.
const MAX_PEERS: usize = 4096;

/// What a provider did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Offence {
    /// Bytes that do not match the ID they were sent for.
    WrongBytes,
    /// A response that breaks the protocol.
    Violation(String),
    /// A response that stopped in the middle.
    Stall,
    /// A response cut short while the connection stayed up.
    Truncated,
}

impl Offence {
    fn points(&self) -> u32 {
        match self {
            Offence::WrongBytes | Offence::Violation(_) => SHUN,
            Offence::Stall | Offence::Truncated => 1,
        }
    }
}

impl std::fmt::Display for Offence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offence::WrongBytes => f.write_str("sent bytes that do not match their ID"),
            Offence::Violation(what) => write!(f, "broke the protocol ({what})"),
            Offence::Stall => f.write_str("stalled in the middle of a response"),
            Offence::Truncated => f.write_str("cut a response short"),
        }
    }
}

#[derive(Debug)]
struct Record {
    points: u32,
    last: Instant,
    shunned_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct Strikes {
    peers: Mutex<HashMap<PeerId, Record>>,
}

impl Strikes {
    /// Records an offence; returns true when it shunned the provider just now (so the
    /// caller logs it once, not once per download).
    pub fn strike(&self, peer: PeerId, offence: &Offence) -> bool {
        let mut peers = kith_core::sync::recover(&self.peers);
        let now = Instant::now();
        if peers.len() >= MAX_PEERS {
            peers.retain(|_, r| {
                r.last.elapsed() < STRIKE_TIME || r.shunned_until.is_some_and(|t| t > now)
            });
        }
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            return false;
        }
        let r = peers.entry(peer).or_insert(Record {
            points: 0,
            last: now,
            shunned_until: None,
        });
        if r.shunned_until.is_some_and(|t| t > now) {
            return false;
        }
        if r.last.elapsed() >= STRIKE_TIME {
            r.points = 0;
        }
        r.points += offence.points();
        r.last = now;
        if r.points >= SHUN {
            r.points = 0;
            r.shunned_until = Some(now + BAN_TIME);
            tracing::warn!(%peer, %offence, "provider shunned");
            return true;
        }
        tracing::info!(%peer, %offence, "strike against provider");
        false
    }

    pub fn is_shunned(&self, peer: &PeerId) -> bool {
        kith_core::sync::recover(&self.peers)
            .get(peer)
            .and_then(|r| r.shunned_until)
            .is_some_and(|t| t > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liars_are_shunned_at_once_stallers_on_the_second_stall() {
        let s = Strikes::default();
        let (liar, framer, staller) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert!(s.strike(liar, &Offence::WrongBytes));
        assert!(s.is_shunned(&liar));
        assert!(
            !s.strike(liar, &Offence::WrongBytes),
            "shunned once, not again"
        );
        assert!(s.strike(framer, &Offence::Violation("body of 4 GiB".into())));
        assert!(!s.strike(staller, &Offence::Stall));
        assert!(!s.is_shunned(&staller));
        assert!(s.strike(staller, &Offence::Stall));
        assert!(s.is_shunned(&staller));
        let cutter = PeerId::random();
        assert!(!s.strike(cutter, &Offence::Truncated));
        assert!(
            s.strike(cutter, &Offence::Stall),
            "strikes of both kinds add up"
        );
        assert!(!s.is_shunned(&PeerId::random()));
    }
}
