//! Reaching peers behind NATs: AutoNAT verdicts, relay reservations, hole punching (DCUtR),
//! rendezvous discovery and reconnecting to the peers a node depends on, with backoff.
//!
//! [`Nat`] is a part of the network actor: the actor hands it the events it is about and the
//! swarm to act on; nothing here blocks.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, kad, relay, rendezvous};
use tokio::time::Instant;

use crate::behaviour::Behaviour;
use crate::peers::Peers;
use crate::{CircuitLimit, RENDEZVOUS_NAMESPACE, RelayInfo, peer_of};

/// Relays a node behind a NAT holds reservations on at once.
const MAX_RESERVATIONS: usize = 2;
/// Relay candidates remembered.
const MAX_RELAY_CANDIDATES: usize = 16;
/// Rendezvous points remembered.
const MAX_POINTS: usize = 8;
/// Peers reconnected to after they drop (bootstrap peers, relays, rendezvous points).
const MAX_STICKY: usize = 32;
/// First and longest wait between two reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often peers are looked up at a rendezvous point.
const DISCOVER_EVERY: Duration = Duration::from_secs(20);
/// Registration lifetime asked of a rendezvous point (renewed at half of it): short, so
/// peers that are gone drop out of discovery soon.
const REGISTRATION_TTL: u64 = 300;
/// Peers dialled per rendezvous answer.
const MAX_DISCOVERED_DIALS: usize = 8;
/// How long a peer that could not be dialled is left alone by automatic dials.
pub(crate) const DIAL_FAILURE_QUIET: Duration = Duration::from_secs(30);
/// Failed peers remembered.
const MAX_DIAL_FAILURES: usize = 4096;

struct Reservation {
    listener: ListenerId,
    addr: Multiaddr,
    reserved: bool,
}

struct Sticky {
    addrs: Vec<Multiaddr>,
    backoff: Duration,
    next: Instant,
}

pub(crate) struct Counters {
    pub holepunch_ok: prometheus_client::metrics::counter::Counter,
    pub holepunch_failed: prometheus_client::metrics::counter::Counter,
    pub circuits_denied: prometheus_client::metrics::counter::Counter,
    pub reservations_denied: prometheus_client::metrics::counter::Counter,
    pub discovered: prometheus_client::metrics::counter::Counter,
}

impl Counters {
    pub(crate) fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let c = Self {
            holepunch_ok: Default::default(),
            holepunch_failed: Default::default(),
            circuits_denied: Default::default(),
            reservations_denied: Default::default(),
            discovered: Default::default(),
        };
        registry.register(
            "kith_holepunch_success",
            "Relayed connections upgraded to direct ones by hole punching",
            c.holepunch_ok.clone(),
        );
        registry.register(
            "kith_holepunch_failure",
            "Hole punches that failed (the connection stays relayed)",
            c.holepunch_failed.clone(),
        );
        registry.register(
            "kith_relay_circuits_denied",
            "Circuits this relay refused (limits, or no reservation at the destination)",
            c.circuits_denied.clone(),
        );
        registry.register(
            "kith_relay_reservations_denied",
            "Reservations this relay refused",
            c.reservations_denied.clone(),
        );
        registry.register(
            "kith_rendezvous_discovered",
            "Peers learned from rendezvous points",
            c.discovered.clone(),
        );
        c
    }
}

pub(crate) struct Nat {
    relays: HashMap<PeerId, Multiaddr>,
    /// Relays the user named: used while reachability is unknown too.
    configured: HashSet<PeerId>,
    reservations: HashMap<PeerId, Reservation>,
    limits: HashMap<PeerId, CircuitLimit>,
    points: HashSet<PeerId>,
    registered: HashMap<PeerId, Instant>,
    next_discover: Instant,
    sticky: HashMap<PeerId, Sticky>,
    counters: Counters,
    serving_relay: bool,
    dial_failures: HashMap<PeerId, Instant>,
}

pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl Nat {
    pub(crate) fn new(config: &crate::Config, counters: Counters) -> Self {
        let mut nat = Self {
            relays: HashMap::new(),
            configured: HashSet::new(),
            reservations: HashMap::new(),
            limits: HashMap::new(),
            points: HashSet::new(),
            registered: HashMap::new(),
            next_discover: Instant::now(),
            sticky: HashMap::new(),
            counters,
            serving_relay: config.relay.is_some(),
            dial_failures: HashMap::new(),
        };
        for addr in config
            .bootstrap
            .iter()
            .chain(&config.relays)
            .chain(&config.rendezvous)
        {
            nat.stick(addr.clone());
        }
        for addr in &config.relays {
            match peer_of(addr) {
                Some(p) => {
                    nat.relays.insert(p, addr.clone());
                    nat.configured.insert(p);
                }
                None => tracing::warn!(%addr, "relay address has no /p2p/PEER_ID; ignored"),
            }
        }
        for addr in &config.rendezvous {
            if let Some(p) = peer_of(addr) {
                nat.points.insert(p);
            }
        }
        nat
    }

    /// Keeps reconnecting to the peer at `addr` (which ends in `/p2p/PEER`) when it drops.
    pub(crate) fn stick(&mut self, addr: Multiaddr) {
        let Some(peer) = peer_of(&addr) else { return };
        if self.sticky.len() >= MAX_STICKY && !self.sticky.contains_key(&peer) {
            return;
        }
        let s = self.sticky.entry(peer).or_insert_with(|| Sticky {
            addrs: Vec::new(),
            backoff: BACKOFF_MIN,
            next: Instant::now() + BACKOFF_MIN,
        });
        if !s.addrs.contains(&addr) && s.addrs.len() < 4 {
            s.addrs.push(addr);
        }
    }

    pub(crate) fn relays(&self) -> Vec<RelayInfo> {
        self.reservations
            .iter()
            .map(|(p, r)| RelayInfo {
                peer_id: p.to_string(),
                addr: r.addr.to_string(),
                state: if r.reserved { "reserved" } else { "pending" },
            })
            .collect()
    }

    /// Notes that `peer` could not be dialled.
    pub(crate) fn dial_failed(&mut self, peer: PeerId) {
        let now = Instant::now();
        if self.dial_failures.len() >= MAX_DIAL_FAILURES {
            self.dial_failures
                .retain(|_, t| now.duration_since(*t) < DIAL_FAILURE_QUIET);
        }
        if self.dial_failures.len() < MAX_DIAL_FAILURES {
            self.dial_failures.insert(peer, now);
        }
    }

    /// Whether automatic dials (provider lookups, rendezvous) should leave `peer` alone
    /// for now: its last dial failed moments ago. Dials a user or service asks for are
    /// not affected.
    pub(crate) fn recently_failed(&self, peer: &PeerId) -> bool {
        self.dial_failures
            .get(peer)
            .is_some_and(|t| t.elapsed() < DIAL_FAILURE_QUIET)
    }

    pub(crate) fn serving_relay(&self) -> bool {
        self.serving_relay
    }

    /// The limits a relay puts on circuits, as it told us.
    pub(crate) fn limit_of(&self, relay: &PeerId) -> CircuitLimit {
        self.limits.get(relay).copied().unwrap_or_default()
    }

    fn note_limit(&mut self, relay: PeerId, secs: Option<Duration>, bytes: Option<u64>) {
        self.limits.insert(
            relay,
            CircuitLimit {
                bytes,
                secs: secs.map(|d| d.as_secs()),
            },
        );
    }
}

pub(crate) fn reachability(status: &autonat::v1::NatStatus) -> &'static str {
    match status {
        autonat::v1::NatStatus::Public(_) => "public",
        autonat::v1::NatStatus::Private => "private",
        autonat::v1::NatStatus::Unknown => "unknown",
    }
}

impl Nat {
    /// Runs once a second: reconnects, reserves relay slots, registers and discovers.
    pub(crate) fn maintain(&mut self, swarm: &mut Swarm<Behaviour>, peers: &Peers) {
        let now = Instant::now();
        // Reconnect with exponential backoff (jittered), never more than once per wait.
        let due: Vec<(PeerId, Vec<Multiaddr>)> = self
            .sticky
            .iter_mut()
            .filter(|(p, s)| s.next <= now && !peers.is_connected(p))
            .map(|(p, s)| {
                let jitter = Duration::from_millis(rand::random::<u64>() % 500);
                s.next = now + s.backoff + jitter;
                s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
                (*p, s.addrs.clone())
            })
            .collect();
        for (peer, addrs) in due {
            tracing::debug!(%peer, "reconnecting");
            let opts = DialOpts::peer_id(peer).addresses(addrs).build();
            if let Err(e) = swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "reconnect failed");
            }
        }

        let status = swarm.behaviour().autonat.nat_status();
        // Relays found on the way are used once AutoNAT says this node is private; the
        // relays a user named, already while it does not know.
        let private = matches!(status, autonat::v1::NatStatus::Private);
        if status.is_public() {
            // Reachable directly: relayed addresses are no longer needed.
            for (relay, r) in self.reservations.drain() {
                tracing::info!(%relay, "publicly reachable; dropping the relay reservation");
                swarm.remove_listener(r.listener);
            }
        } else if self.reservations.len() < MAX_RESERVATIONS {
            let candidates: Vec<(PeerId, Multiaddr)> = self
                .relays
                .iter()
                .filter(|(p, _)| !self.reservations.contains_key(p))
                .filter(|(p, _)| private || self.configured.contains(p))
                .filter(|(p, _)| peers.has_direct(p))
                .map(|(p, a)| (*p, a.clone()))
                .take(MAX_RESERVATIONS - self.reservations.len())
                .collect();
            for (relay, addr) in candidates {
                let circuit = addr.with(Protocol::P2pCircuit);
                match swarm.listen_on(circuit.clone()) {
                    Ok(listener) => {
                        tracing::info!(%relay, addr = %circuit, "asking the relay for a reservation");
                        self.reservations.insert(
                            relay,
                            Reservation {
                                listener,
                                addr: circuit.with(Protocol::P2p(*swarm.local_peer_id())),
                                reserved: false,
                            },
                        );
                    }
                    Err(e) => tracing::warn!(%relay, error = %e, "cannot listen through relay"),
                }
            }
        }

        // Rendezvous: register where we are not (or soon no longer) registered, and look
        // for peers now and then.
        let has_external = swarm.external_addresses().next().is_some();
        let points: Vec<PeerId> = self
            .points
            .iter()
            .filter(|p| swarm.is_connected(p))
            .copied()
            .collect();
        for p in &points {
            if has_external && self.registered.get(p).is_none_or(|t| *t <= now) {
                let ns = rendezvous::Namespace::from_static(RENDEZVOUS_NAMESPACE);
                match swarm
                    .behaviour_mut()
                    .rendezvous
                    .register(ns, *p, Some(REGISTRATION_TTL))
                {
                    Ok(()) => {
                        // Retried in a while if no answer comes.
                        self.registered.insert(*p, now + Duration::from_secs(30));
                    }
                    Err(e) => tracing::debug!(point = %p, error = %e, "cannot register"),
                }
            }
        }
        if now >= self.next_discover && !points.is_empty() {
            self.next_discover = now + DISCOVER_EVERY;
            for p in points {
                let ns = rendezvous::Namespace::from_static(RENDEZVOUS_NAMESPACE);
                swarm
                    .behaviour_mut()
                    .rendezvous
                    .discover(Some(ns), None, Some(100), p);
            }
        }
    }

    /// A new connection: reset the backoff; a rendezvous point: look for peers soon.
    pub(crate) fn on_connected(&mut self, peer: PeerId) {
        self.dial_failures.remove(&peer);
        if let Some(s) = self.sticky.get_mut(&peer) {
            s.backoff = BACKOFF_MIN;
            s.next = Instant::now() + BACKOFF_MIN;
        }
        if self.points.contains(&peer) {
            self.next_discover = Instant::now();
        }
    }

    pub(crate) fn on_identify(&mut self, peers: &Peers, peer: PeerId, info: &identify::Info) {
        if info.protocols.contains(&relay::HOP_PROTOCOL_NAME)
            && (self.relays.len() < MAX_RELAY_CANDIDATES || self.relays.contains_key(&peer))
        {
            // Reserve through the address we reached it at ourselves.
            let dialed = peers.get(&peer).and_then(|c| {
                c.iter().find_map(|c| match &c.endpoint {
                    libp2p::core::ConnectedPoint::Dialer { address, .. }
                        if !is_relayed(address) =>
                    {
                        Some(address.clone())
                    }
                    _ => None,
                })
            });
            if let Some(mut addr) = dialed {
                if peer_of(&addr).is_none() {
                    addr.push(Protocol::P2p(peer));
                }
                if !self.relays.contains_key(&peer) {
                    tracing::debug!(%peer, %addr, "found a relay");
                }
                self.relays.insert(peer, addr);
            }
        }
        if info.protocols.contains(&rendezvous::PROTOCOL_NAME)
            && self.points.len() < MAX_POINTS
            && self.points.insert(peer)
        {
            tracing::debug!(%peer, "found a rendezvous point");
            self.next_discover = Instant::now();
        }
    }

    pub(crate) fn on_autonat(&mut self, swarm: &mut Swarm<Behaviour>, e: autonat::v1::Event) {
        if let autonat::v1::Event::StatusChanged { old, new } = e {
            tracing::info!(
                from = reachability(&old),
                to = reachability(&new),
                "reachability changed"
            );
            // A node others cannot dial must not sit in their routing tables: every query
            // that picks it waits for a dial that cannot succeed. Behind a NAT the node
            // stays a DHT client (it queries and announces, through public nodes); public
            // and not-yet-known nodes serve.
            let mode = if matches!(new, autonat::v1::NatStatus::Private) {
                kad::Mode::Client
            } else {
                kad::Mode::Server
            };
            swarm.behaviour_mut().kad.set_mode(Some(mode));
        }
    }

    pub(crate) fn on_relay_client(&mut self, e: relay::client::Event) {
        match e {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                limit,
            } => {
                if let Some(r) = self.reservations.get_mut(&relay_peer_id) {
                    r.reserved = true;
                    if !renewal {
                        tracing::info!(relay = %relay_peer_id, addr = %r.addr, "relay reservation accepted; reachable through the relay");
                    }
                }
                if let Some(l) = limit {
                    self.note_limit(relay_peer_id, l.duration(), l.data_in_bytes());
                }
            }
            relay::client::Event::OutboundCircuitEstablished {
                relay_peer_id,
                limit,
            } => {
                tracing::debug!(relay = %relay_peer_id, "circuit through relay established");
                if let Some(l) = limit {
                    self.note_limit(relay_peer_id, l.duration(), l.data_in_bytes());
                }
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "peer reached us through a relay");
            }
        }
    }

    pub(crate) fn on_relay_server(&mut self, e: relay::Event) {
        match e {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "relay: reservation accepted");
            }
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                self.counters.reservations_denied.inc();
                tracing::warn!(peer = %src_peer_id, "relay: reservation refused (over the limits)");
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                ..
            } => {
                self.counters.circuits_denied.inc();
                tracing::warn!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit refused (over the limits, or no reservation at the destination)");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit opened");
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => {
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, error = ?error, "relay: circuit closed");
            }
            _ => {}
        }
    }

    pub(crate) fn on_dcutr(&mut self, e: dcutr::Event) {
        match e.result {
            Ok(_) => {
                self.counters.holepunch_ok.inc();
                tracing::info!(peer = %e.remote_peer_id, "hole punch succeeded; connection is direct");
            }
            Err(err) => {
                self.counters.holepunch_failed.inc();
                tracing::info!(peer = %e.remote_peer_id, error = %err, "hole punch failed; the connection stays relayed (transfers are capped by the relay's limits)");
            }
        }
    }

    pub(crate) fn on_rendezvous(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        e: rendezvous::client::Event,
    ) {
        match e {
            rendezvous::client::Event::Registered {
                rendezvous_node,
                ttl,
                ..
            } => {
                tracing::debug!(point = %rendezvous_node, ttl, "registered at rendezvous point");
                // Look for the others now that we are listed too.
                self.next_discover = Instant::now();
                self.registered.insert(
                    rendezvous_node,
                    Instant::now() + Duration::from_secs((ttl / 2).max(10)),
                );
            }
            rendezvous::client::Event::RegisterFailed {
                rendezvous_node,
                error,
                ..
            } => {
                tracing::warn!(point = %rendezvous_node, error = ?error, "rendezvous registration refused");
            }
            rendezvous::client::Event::Discovered { registrations, .. } => {
                let me = *swarm.local_peer_id();
                let mut dials = 0;
                for r in registrations {
                    let peer = r.record.peer_id();
                    if peer == me {
                        continue;
                    }
                    self.counters.discovered.inc();
                    if swarm.is_connected(&peer) || self.recently_failed(&peer) {
                        continue;
                    }
                    if dials >= MAX_DISCOVERED_DIALS {
                        break;
                    }
                    dials += 1;
                    let addrs: Vec<Multiaddr> =
                        r.record.addresses().iter().take(8).cloned().collect();
                    // Not into the routing table: identify adds the peer there if it
                    // serves the DHT.
                    tracing::debug!(%peer, "found peer at rendezvous point; dialling");
                    let _ = swarm.dial(DialOpts::peer_id(peer).addresses(addrs).build());
                }
            }
            rendezvous::client::Event::DiscoverFailed {
                rendezvous_node,
                error,
                ..
            } => {
                tracing::debug!(point = %rendezvous_node, error = ?error, "rendezvous discovery failed");
            }
            rendezvous::client::Event::Expired { .. } => {}
        }
    }

    /// A relay listener closed (the relay went away or refused): try again later.
    pub(crate) fn on_listener_closed(&mut self, listener: ListenerId, reason: &str) {
        let gone: Vec<PeerId> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.listener == listener)
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            tracing::info!(relay = %p, %reason, "relay reservation ended; will ask again");
            self.reservations.remove(&p);
        }
    }

    /// A rendezvous point we were registered with dropped: register again on reconnect.
    pub(crate) fn on_disconnected(&mut self, peer: PeerId) {
        self.registered.remove(&peer);
    }
}
