//! Near providers first: a provider in one of this node's regions (its LAN, or a cache
//! placed there) is asked before a far one. Far providers wait in reserve while near ones
//! deliver; they join when no chunk has landed for [`NEAR_WAIT`], when no near or unknown
//! provider is left once the finder's first round is in, or as soon as a far provider
//! delivers anyway. A peer that is not connected yet is unknown and tried at once.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kith_overlay::PeerId;
use tokio::time::Instant;

use super::session::Session;
use crate::state::Inner;

/// How long near providers may go without a chunk landing before far ones join.
pub(crate) const NEAR_WAIT: Duration = Duration::from_secs(2);

/// The peers of `peers` that are connected and in none of this node's regions (two
/// questions to the overlay, however many peers).
pub(crate) async fn far_among(inner: &Inner, peers: &[PeerId]) -> HashSet<PeerId> {
    let (Ok(connected), Ok(own)) = (
        inner.overlay().connected_peers().await,
        inner.overlay().own_regions().await,
    ) else {
        return HashSet::new();
    };
    connected
        .into_iter()
        .filter(|i| peers.contains(&i.peer) && !i.region.is_some_and(|r| own.contains(&r)))
        .map(|i| i.peer)
        .collect()
}

pub(crate) struct Nearness {
    /// Far providers held back.
    reserve: Vec<PeerId>,
    /// Peers known to be far.
    far: HashSet<PeerId>,
    /// Far providers are no longer held back.
    released: bool,
    /// The last chunk landed (or the scheduler started).
    last_landed: Instant,
}

impl Nearness {
    pub fn new() -> Self {
        Self {
            reserve: Vec::new(),
            far: HashSet::new(),
            released: false,
            last_landed: Instant::now(),
        }
    }

    /// Whether `peer` must wait in reserve; it is kept there if so.
    pub async fn hold(&mut self, s: &Session, peer: PeerId) -> bool {
        if self.released {
            return false;
        }
        let far = matches!(s.inner.overlay().is_near(peer).await, Ok(Some(false)));
        if far {
            self.far.insert(peer);
            if !self.reserve.contains(&peer) {
                self.reserve.push(peer);
            }
        }
        far
    }

    /// A chunk landed from `peer`.
    pub fn landed(&mut self, peer: &PeerId) {
        self.last_landed = Instant::now();
        if self.far.contains(peer) {
            self.released = true;
        }
    }

    /// When the far providers join unless a chunk lands first; `None` when none wait.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.released && !self.reserve.is_empty()).then_some(self.last_landed + NEAR_WAIT)
    }

    /// The far providers to start now (and from now on none is held back): when near ones
    /// stopped delivering, or `live_near` is false (none left) after the first round.
    pub fn release(&mut self, s: &Session, live_near: bool) -> Vec<PeerId> {
        if self.released {
            return std::mem::take(&mut self.reserve);
        }
        let stalled = self.deadline().is_some_and(|d| Instant::now() >= d);
        let none_near = !live_near && s.first_round.load(Ordering::Relaxed);
        if stalled || none_near {
            self.released = true;
            if !self.reserve.is_empty() {
                tracing::debug!(far = self.reserve.len(), stalled, "far providers join");
            }
            return std::mem::take(&mut self.reserve);
        }
        Vec::new()
    }
}
