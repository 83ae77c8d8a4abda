//! Inbound connections that have not finished their handshake: capped, and cut short
//! when they hold a slot others need.
//!
//! A peer that opens TCP connections and never completes the security handshake holds a
//! pending slot until it is cut. The guard bounds that three ways:
//!
//! - **Per source**: one address (an IPv4 address or an IPv6 /64) holds at most
//!   [`Limits::per_ip`] slots, so one host cannot take them all.
//! - **Eviction**: when the slots are taken, a new handshake takes the place of the
//!   oldest one whose peer has sent nothing yet (as a SYN cache drops its oldest
//!   half-open entry), so silent sockets from many addresses cannot lock new peers out:
//!   a real peer speaks at once and is not evicted. Sources whose handshakes were cut for
//!   silence before go first, so a flood that comes back from the same addresses
//!   replaces itself rather than a new peer.
//! - **Deadline under pressure**: a handshake may take [`CALM_DEADLINE`] while at most
//!   half of [`Limits::total`] is held by handshakes whose peer has spoken (a silent one
//!   is as good as free), less as they fill it, and [`PRESSED_DEADLINE`] from three
//!   quarters on, so a peer that sends a byte and waits must keep reconnecting (and
//!   sending) to hold a slot.
//!
//! [`Limits::reserved`] of the slots are for sources that peers known to the node came
//! from (its routing table, and the peers the node names with `Overlay::set_known_peers`,
//! such as its groups' devices; see `known`): sources the node has not seen share the
//! rest, and cannot evict a known peer's handshake. Known peers' handshakes keep the calm
//! deadline.
//!
//! The guard sees a connection through the swarm (admission, outcome) and, for TCP, through
//! the `Tap` on its socket (bytes heard, and the cut); see `tap`.

mod sources;
mod tap;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use sources::Sources;
use tap::Slot;
pub(crate) use tap::{Handoff, Tcp};

/// How long a handshake may take while at most half the slots are taken: the transport's
/// own deadline, time enough for a slow link.
/// Longest time an inbound or outbound TCP connection may take to finish its security and
/// multiplexer handshakes. Inbound ones get less while the handshake slots fill, and one
/// that says nothing may be evicted sooner (`guard`).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub const CALM_DEADLINE: Duration = HANDSHAKE_TIMEOUT;
/// How long a handshake may take once three quarters of the slots are taken by peers that
/// have spoken. The guard counts from the accepted connection; multistream-select, TLS or
/// Noise and Yamux take three round trips, so peers up to ~300 ms away still fit.
pub const PRESSED_DEADLINE: Duration = Duration::from_secs(1);

/// Caps on handshakes in progress.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Handshakes in progress from one source address at once.
    pub per_ip: usize,
    /// Handshakes in progress in total.
    pub total: usize,
    /// Of `total`, the slots only sources of known peers may take.
    pub reserved: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_ip: 8,
            total: 128,
            reserved: 32,
        }
    }
}

/// Why an inbound connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("too many handshakes in progress from this address")]
    PerSource,
    #[error("too many handshakes in progress, and none of those it may replace is silent")]
    Full,
}

/// The source of a connection: an IPv4 address, or the /64 of an IPv6 address (one host
/// usually holds a whole /64). Relayed connections have none: the relay limits those.
fn source(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => {
            let s = a.segments();
            Some(IpAddr::V6(std::net::Ipv6Addr::new(
                s[0], s[1], s[2], s[3], 0, 0, 0, 0,
            )))
        }
        _ => None,
    })
}

/// A handshake in progress.
#[derive(Debug)]
struct Pending {
    /// Where it comes from (for the logs).
    remote: Multiaddr,
    source: IpAddr,
    since: Instant,
    /// From a source of a known peer (counted in the reserved share).
    known: bool,
    /// Shared with the connection's tap (TCP); `None` where the guard cannot cut the
    /// handshake (QUIC, whose own handshake timeout ends it).
    slot: Option<Arc<Slot>>,
}

impl Pending {
    /// The peer has sent nothing yet (not even bytes waiting to be read), and the guard
    /// can cut it.
    fn silent(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| !s.heard())
    }

    /// As `silent`, by what the handshake has read so far (no system call).
    fn silent_as_far_as_read(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| !s.has_read())
    }
}

/// Which handshakes a new one may evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Among {
    /// Only those from unknown sources (their share is full).
    Unknown,
    /// Those from unknown sources first, then known ones.
    Any,
}

struct Metrics {
    pending: Gauge,
    refused: Counter,
    evicted: Counter,
    expired: Counter,
}

impl Metrics {
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            pending: Gauge::default(),
            refused: Counter::default(),
            evicted: Counter::default(),
            expired: Counter::default(),
        };
        registry.register(
            "kith_inbound_handshakes_pending",
            "Inbound connections whose handshake is in progress",
            m.pending.clone(),
        );
        registry.register(
            "kith_inbound_handshakes_refused",
            "Inbound connections refused: their source had too many handshakes in progress, or no slot was free or held by a silent peer",
            m.refused.clone(),
        );
        registry.register(
            "kith_inbound_handshakes_evicted",
            "Inbound handshakes cut for a new one because their peer had sent nothing",
            m.evicted.clone(),
        );
        registry.register(
            "kith_inbound_handshakes_expired",
            "Inbound handshakes cut at their deadline (shorter as the slots fill)",
            m.expired.clone(),
        );
        m
    }
}

pub struct Behaviour {
    limits: Limits,
    handoff: Handoff,
    /// Oldest first (connection IDs grow).
    pending: BTreeMap<ConnectionId, Pending>,
    per_ip: HashMap<IpAddr, usize>,
    /// Pending handshakes from unknown sources.
    unknown: usize,
    /// Sources of peers known to the node.
    known: Sources,
    /// Sources whose handshakes were cut for silence: theirs go first.
    silent: Sources,
    /// Wakes the guard at the next deadline (and when that is).
    timer: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
    metrics: Metrics,
}

impl Behaviour {
    pub(crate) fn new(
        limits: Limits,
        handoff: Handoff,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Self {
        Self {
            limits,
            handoff,
            pending: BTreeMap::new(),
            per_ip: HashMap::new(),
            unknown: 0,
            known: Sources::new(sources::MAX_KNOWN),
            silent: Sources::new(sources::MAX_SILENT),
            timer: None,
            metrics: Metrics::register(registry),
        }
    }

    /// Notes that a peer known to the node connected from (or was reached at) `addr`: its
    /// source may use the reserved slots from now on.
    pub(crate) fn note_known(&mut self, addr: &Multiaddr) {
        if let Some(s) = source(addr) {
            self.known.note(s);
        }
    }

    fn admit(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
        now: Instant,
    ) -> Result<(), Refused> {
        let Some(source) = source(remote) else {
            return Ok(());
        };
        if self.per_ip.get(&source).copied().unwrap_or(0) >= self.limits.per_ip {
            return Err(Refused::PerSource);
        }
        let known = self.known.contains(&source);
        if let Some(among) = self.over_cap(known) {
            let victim = self.oldest_silent(among).ok_or(Refused::Full)?;
            self.cut(victim, "evicted: the oldest silent one, for a new one");
            self.metrics.evicted.inc();
        }
        let slot = self.handoff.take(local, remote);
        self.pending.insert(
            id,
            Pending {
                remote: remote.clone(),
                source,
                since: now,
                known,
                slot,
            },
        );
        *self.per_ip.entry(source).or_default() += 1;
        if !known {
            self.unknown += 1;
        }
        Ok(())
    }

    /// Whether a new handshake from a known (or unknown) source finds its slots taken, and
    /// then which handshakes it may evict.
    fn over_cap(&self, known: bool) -> Option<Among> {
        let open = self.limits.total.saturating_sub(self.limits.reserved);
        if !known && self.unknown >= open {
            Some(Among::Unknown)
        } else if self.pending.len() >= self.limits.total {
            Some(Among::Any)
        } else {
            None
        }
    }

    /// The handshake a new one takes the place of: the oldest whose peer has sent
    /// nothing, from an unknown source if any, and among those first from a source whose
    /// handshakes were cut for silence before (a flood's addresses all are soon, so a new
    /// peer is not the next to go however fast the flood comes back).
    fn oldest_silent(&self, among: Among) -> Option<ConnectionId> {
        let find = |known: bool, cut_before: bool| {
            self.pending
                .iter()
                .filter(|(_, p)| p.known == known)
                .filter(|(_, p)| !cut_before || self.silent.contains(&p.source))
                .find(|(_, p)| p.silent())
                .map(|(id, _)| *id)
        };
        find(false, true)
            .or_else(|| find(false, false))
            .or_else(|| (among == Among::Any).then(|| find(true, false)).flatten())
    }

    /// How long a handshake may take with the slots as full as they are now. A slot whose
    /// peer has not spoken is as good as free (the next handshake takes it), so only the
    /// others count: a flood of silent sockets leaves real handshakes their time, and
    /// the deadline is short exactly when new peers would find no slot to take.
    fn deadline(&self) -> Duration {
        let total = self.limits.total.max(1) as f64;
        let held = self
            .pending
            .values()
            .filter(|p| !p.silent_as_far_as_read())
            .count();
        let fill = held as f64 / total;
        // 10 s up to half full, 1 s from three quarters, in a straight line between.
        let pressure = ((fill - 0.5) / 0.25).clamp(0.0, 1.0);
        CALM_DEADLINE
            .saturating_sub((CALM_DEADLINE.saturating_sub(PRESSED_DEADLINE)).mul_f64(pressure))
    }

    /// The handshake whose deadline comes first, and when. Those from sources of known
    /// peers keep the calm deadline: the reserve is for them, and a known peer on a slow
    /// link must still get through while strangers flood the node.
    fn next_due(&self) -> Option<(ConnectionId, Instant)> {
        let first = |known: bool, deadline: Duration| {
            self.pending
                .iter()
                .find(|(_, p)| p.known == known && p.slot.is_some())
                .map(|(id, p)| (*id, p.since + deadline))
        };
        let unknown = first(false, self.deadline());
        let known = first(true, CALM_DEADLINE);
        match (unknown, known) {
            (Some(u), Some(k)) => Some(if k.1 < u.1 { k } else { u }),
            (u, k) => u.or(k),
        }
    }

    /// Cuts the handshakes past their deadline; each one cut makes the rest's longer.
    fn expire(&mut self, now: Instant) {
        while let Some((id, due)) = self.next_due()
            && due <= now
        {
            self.cut(id, "past its deadline");
            self.metrics.expired.inc();
        }
    }

    fn remove(&mut self, id: ConnectionId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&p.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&p.source);
            }
        }
        if !p.known {
            self.unknown = self.unknown.saturating_sub(1);
        }
        Some(p)
    }

    fn cut(&mut self, id: ConnectionId, why: &'static str) {
        let Some(p) = self.remove(id) else { return };
        tracing::debug!(remote = %p.remote, age = ?p.since.elapsed(), why, "inbound handshake cut");
        if p.silent() {
            self.silent.note(p.source);
        }
        if let Some(slot) = p.slot {
            slot.cut();
        }
    }

    /// The handshake is over (done or failed).
    fn done(&mut self, id: ConnectionId) {
        if let Some(slot) = self.remove(id).and_then(|p| p.slot) {
            slot.settle();
        }
        self.metrics.pending.set(self.pending.len() as i64);
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let r = self.admit(connection_id, local, remote, Instant::now());
        self.metrics.pending.set(self.pending.len() as i64);
        r.map_err(|why| {
            self.metrics.refused.inc();
            tracing::debug!(%remote, %why, "inbound connection refused");
            ConnectionDenied::new(why)
        })
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.done(connection_id);
        let _ = self.handoff.take(local, remote);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ListenFailure(f) = event {
            self.done(f.connection_id);
            // Left by the transport for a connection refused before the guard saw it.
            let _ = self.handoff.take(f.local_addr, f.send_back_addr);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.expire(Instant::now());
        self.metrics.pending.set(self.pending.len() as i64);
        match self.next_due() {
            None => self.timer = None,
            Some((_, due)) => {
                let at = tokio::time::Instant::from_std(due);
                let (set, timer) = self
                    .timer
                    .get_or_insert_with(|| (due, Box::pin(tokio::time::sleep_until(at))));
                if *set != due {
                    *set = due;
                    timer.as_mut().reset(at);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
