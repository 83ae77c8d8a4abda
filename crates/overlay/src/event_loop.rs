//! The network actor: owns the swarm, answers commands, routes events. No service logic.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::metrics::{Metrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionId, DialError, SwarmEvent,
    dial_opts::{DialOpts, PeerCondition},
};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::{
    Command, Config, ConnectionInfo, GossipMessage, KAD_PROTOCOL, OverlayError, RecordValidator,
    Status,
};
use kad::store::RecordStore;

/// Most pending `dial` replies kept at once.
const MAX_PENDING_DIALS: usize = 256;
/// Most concurrent provider lookups.
const MAX_LOOKUPS: usize = 256;
/// Most peers remembered as DHT servers (to announce again to when they come back).
const MAX_DHT_SERVERS: usize = 4096;
/// Shortest gap between two re-announcements triggered by new routing peers.
const REANNOUNCE_GAP: Duration = Duration::from_secs(2);
/// Most new DHT peers remembered between two re-announcements; past it, every key is
/// announced again.
const MAX_REANNOUNCE_PEERS: usize = 1024;

pub(crate) struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    metrics: Metrics,
    pub(crate) connections: HashMap<PeerId, Vec<(ConnectionId, ConnectedPoint)>>,
    pub(crate) nat: crate::nat::Nat,
    pub(crate) upgrades: tokio::sync::broadcast::Sender<PeerId>,
    connected: tokio::sync::broadcast::Sender<PeerId>,
    /// Peers seen serving the DHT (identify), at most [`MAX_DHT_SERVERS`].
    dht_servers: HashSet<PeerId>,
    lookups: HashMap<kad::QueryId, (mpsc::Sender<PeerId>, HashSet<PeerId>)>,
    pending_dials: HashMap<ConnectionId, oneshot::Sender<Result<(), OverlayError>>>,
    /// `dial` calls for a peer that another dial is already connecting to: answered when it
    /// connects or fails (at most [`MAX_PENDING_DIALS`] in all).
    dial_waiters: HashMap<PeerId, Vec<oneshot::Sender<Result<(), OverlayError>>>>,
    providing: HashSet<Vec<u8>>,
    /// DHT peers that joined the routing table (or came back) since the last re-announce:
    /// keys they should hold a provider record for are announced again.
    reannounce_for: HashSet<PeerId>,
    /// Too many peers joined to check them one by one: announce every key.
    reannounce_all: bool,
    bootstrapped: bool,
    validator: Option<std::sync::Arc<dyn RecordValidator>>,
    gossip_tx: mpsc::Sender<GossipMessage>,
    record_gets: HashMap<kad::QueryId, mpsc::Sender<Vec<u8>>>,
    record_puts: HashMap<kad::QueryId, oneshot::Sender<Result<usize, OverlayError>>>,
    rejected: prometheus_client::metrics::counter::Counter,
}

/// The keys among `keys` for which one of `peers` is among the closest peers in the
/// routing table (the peers a provider record is stored on).
fn keys_closest_to(
    kad: &mut kad::Behaviour<kad::store::MemoryStore>,
    keys: &HashSet<Vec<u8>>,
    peers: &HashSet<PeerId>,
) -> Vec<Vec<u8>> {
    keys.iter()
        .filter(|key| {
            let target = kad::KBucketKey::new(kad::RecordKey::new(key));
            kad.get_closest_local_peers(&target)
                .take(kad::K_VALUE.get())
                .any(|p| peers.contains(p.preimage()))
        })
        .cloned()
        .collect()
}

fn transport_of(addr: &Multiaddr) -> &'static str {
    let quic = addr
        .iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic));
    let relayed = addr.iter().any(|p| matches!(p, Protocol::P2pCircuit));
    match (relayed, quic) {
        (true, _) => "relay",
        (false, true) => "quic",
        (false, false) => "tcp",
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(a) => a.is_loopback(),
        Protocol::Ip6(a) => a.is_loopback(),
        _ => false,
    })
}

/// libp2p listens with `SO_REUSEPORT` (for hole punching), so a port held by another
/// process would be shared silently. Binding once without it first turns that into a clear
/// "address in use" error.
fn probe_port(addr: &Multiaddr) -> Result<(), OverlayError> {
    let mut ip = None;
    let mut tcp = None;
    let mut udp = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(port) => tcp = Some(port),
            Protocol::Udp(port) => udp = Some(port),
            _ => {}
        }
    }
    let Some(ip) = ip else { return Ok(()) };
    let err = |e: std::io::Error| OverlayError::Listen {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    match (tcp, udp) {
        (Some(port), _) if port != 0 => {
            std::net::TcpListener::bind((ip, port)).map_err(err)?;
        }
        (_, Some(port)) if port != 0 => {
            std::net::UdpSocket::bind((ip, port)).map_err(err)?;
        }
        _ => {}
    }
    Ok(())
}

/// Drives the swarm until every listener has an address, so a node that reports itself
/// started can be dialled. Fails if a listener closes (e.g. address not available).
async fn wait_listening(
    swarm: &mut Swarm<Behaviour>,
    mut pending: HashMap<libp2p::core::transport::ListenerId, Multiaddr>,
) -> Result<(), OverlayError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pending.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| OverlayError::Listen {
                addr: pending
                    .values()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: "no address after 10 s".into(),
            })?;
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                pending.remove(&listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(addr) = pending.remove(&listener_id) {
                    return Err(OverlayError::Listen {
                        addr: addr.to_string(),
                        reason: match reason {
                            Ok(()) => "listener closed".into(),
                            Err(e) => e.to_string(),
                        },
                    });
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error, "listener error");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Where the actor reports to: validated gossip, counters, connection upgrades.
pub(crate) struct Outputs {
    pub gossip_tx: mpsc::Sender<GossipMessage>,
    pub rejected: prometheus_client::metrics::counter::Counter,
    pub counters: crate::nat::Counters,
    pub upgrades: tokio::sync::broadcast::Sender<PeerId>,
    pub connected: tokio::sync::broadcast::Sender<PeerId>,
}

impl EventLoop {
    pub(crate) async fn new(
        mut swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        metrics: Metrics,
        config: &Config,
        out: Outputs,
    ) -> Result<Self, OverlayError> {
        let Outputs {
            gossip_tx,
            rejected,
            counters,
            upgrades,
            connected,
        } = out;
        let mut listeners = HashMap::new();
        for addr in &config.listen {
            probe_port(addr)?;
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| OverlayError::Listen {
                    addr: addr.to_string(),
                    reason: match e {
                        libp2p::TransportError::MultiaddrNotSupported(_) => {
                            "address not supported (use /ip4/…/tcp/PORT or /ip4/…/udp/PORT/quic-v1)"
                                .to_owned()
                        }
                        libp2p::TransportError::Other(e) => e.to_string(),
                    },
                })?;
            listeners.insert(id, addr.clone());
        }
        wait_listening(&mut swarm, listeners).await?;
        for addr in &config.external {
            swarm.add_external_address(addr.clone());
        }
        for addr in &config.bootstrap {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        Ok(Self {
            swarm,
            commands,
            metrics,
            connections: HashMap::new(),
            nat: crate::nat::Nat::new(config, counters),
            upgrades,
            connected,
            dht_servers: HashSet::new(),
            lookups: HashMap::new(),
            pending_dials: HashMap::new(),
            dial_waiters: HashMap::new(),
            providing: HashSet::new(),
            reannounce_for: HashSet::new(),
            reannounce_all: false,
            bootstrapped: false,
            validator: config.validator.clone(),
            gossip_tx,
            record_gets: HashMap::new(),
            record_puts: HashMap::new(),
            rejected,
        })
    }

    pub(crate) async fn run(&mut self, shutdown: CancellationToken) {
        let mut reannounce = tokio::time::interval(REANNOUNCE_GAP);
        reannounce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintain = tokio::time::interval(Duration::from_secs(1));
        maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                cmd = self.commands.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                _ = maintain.tick() => self.maintain(),
                _ = reannounce.tick() => self.reannounce(),
            }
        }
        tracing::debug!("network actor stopped");
    }

    /// Notes that `peer` (a DHT server) joined the routing table or came back: it may be
    /// one of the peers that should hold provider records for what this node provides.
    fn reannounce_later(&mut self, peer: PeerId) {
        if self.providing.is_empty() {
            return;
        }
        if self.reannounce_for.len() < MAX_REANNOUNCE_PEERS {
            self.reannounce_for.insert(peer);
        } else {
            self.reannounce_all = true;
        }
    }

    /// Announces again the provided keys for which a peer noted by
    /// [`EventLoop::reannounce_later`] is now among the closest known peers (the ones a
    /// provider record is stored on). So content shared before any peer was known reaches
    /// the DHT as soon as the routing table fills, and a DHT server that restarted gets back
    /// the records it lost, while a node in a large network does not re-announce every key
    /// each time some peer joins.
    fn reannounce(&mut self) {
        if self.reannounce_for.is_empty() && !self.reannounce_all {
            return;
        }
        let fresh = std::mem::take(&mut self.reannounce_for);
        let all = std::mem::replace(&mut self.reannounce_all, false);
        let keys: Vec<Vec<u8>> = if all {
            self.providing.iter().cloned().collect()
        } else {
            keys_closest_to(&mut self.swarm.behaviour_mut().kad, &self.providing, &fresh)
        };
        tracing::debug!(
            peers = fresh.len(),
            keys = keys.len(),
            of = self.providing.len(),
            "announcing provided content again"
        );
        for key in keys {
            self.announce(&key);
        }
    }

    /// Starts (or renews) announcing `key` as provided by this node.
    fn announce(&mut self, key: &[u8]) {
        let record = kad::RecordKey::new(&key);
        if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(record) {
            tracing::warn!(error = %e, "cannot announce content");
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Dial(addr, reply) => {
                let waiting = self.dial_waiters.values().map(Vec::len).sum::<usize>();
                if self.pending_dials.len() + waiting >= MAX_PENDING_DIALS {
                    let _ = reply.send(Err(OverlayError::Dial("too many dials in flight".into())));
                    return;
                }
                let peer = match addr.iter().last() {
                    Some(Protocol::P2p(peer)) => Some(peer),
                    _ => None,
                };
                // A peer already connected, or being dialled (a bootstrap peer that is also
                // the broker): no second connection.
                let opts = match peer {
                    Some(peer) if self.swarm.is_connected(&peer) => {
                        let _ = reply.send(Ok(()));
                        return;
                    }
                    Some(peer) => {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer, addr.clone());
                        DialOpts::peer_id(peer)
                            .addresses(vec![addr])
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build()
                    }
                    None => DialOpts::unknown_peer_id().address(addr).build(),
                };
                let id = opts.connection_id();
                match (self.swarm.dial(opts), peer) {
                    (Ok(()), _) => {
                        self.pending_dials.insert(id, reply);
                    }
                    (Err(DialError::DialPeerConditionFalse(_)), Some(peer)) => {
                        self.dial_waiters.entry(peer).or_default().push(reply);
                    }
                    (Err(e), _) => {
                        let _ = reply.send(Err(OverlayError::Dial(e.to_string())));
                    }
                }
            }
            Command::StartProviding(key) => {
                self.announce(&key);
                self.providing.insert(key);
            }
            Command::StopProviding(key) => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&kad::RecordKey::new(&key));
                self.providing.remove(&key);
            }
            Command::FindProviders(key, tx) => {
                if self.lookups.len() >= MAX_LOOKUPS {
                    tracing::warn!("too many provider lookups in flight; dropping one");
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.lookups.insert(id, (tx, HashSet::new()));
            }
            Command::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::AddAddress(peer, addr) => {
                self.swarm.add_peer_address(peer, addr.clone());
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
            Command::AddExternal(addr) => self.swarm.add_external_address(addr),
            Command::PutRecord(key, value, reply) => {
                if self.record_puts.len() >= MAX_LOOKUPS {
                    let _ = reply.send(Err(OverlayError::Dial("too many record puts".into())));
                    return;
                }
                let record = kad::Record::new(key, value);
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    Ok(id) => {
                        self.record_puts.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(OverlayError::Dial(format!("{e:?}"))));
                    }
                }
            }
            Command::GetRecord(key, tx) => {
                if self.record_gets.len() >= MAX_LOOKUPS {
                    tracing::warn!("too many record lookups in flight; dropping one");
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(kad::RecordKey::new(&key));
                self.record_gets.insert(id, tx);
            }
            Command::Subscribe(topic) => {
                let t = gossipsub::IdentTopic::new(topic);
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&t) {
                    tracing::warn!(error = ?e, "cannot subscribe");
                }
            }
            Command::Unsubscribe(topic) => {
                let t = gossipsub::IdentTopic::new(topic);
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&t);
            }
            Command::Publish(topic, data) => {
                let t = gossipsub::IdentTopic::new(topic);
                match self.swarm.behaviour_mut().gossipsub.publish(t, data) {
                    Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(e) => tracing::debug!(error = ?e, "gossip publish failed"),
                }
            }
        }
    }

    fn status(&mut self) -> Status {
        let nat = &self.nat;
        let connections = self
            .connections
            .iter()
            .flat_map(|(peer, conns)| {
                conns.iter().map(move |(_, point)| {
                    let (addr, role) = match point {
                        ConnectedPoint::Dialer { address, .. } => (address.clone(), "dialer"),
                        ConnectedPoint::Listener { send_back_addr, .. } => {
                            (send_back_addr.clone(), "listener")
                        }
                    };
                    // A relayed connection we accepted shows the relay in our address.
                    let via = match point {
                        ConnectedPoint::Dialer { address, .. } => address,
                        ConnectedPoint::Listener { local_addr, .. } => local_addr,
                    };
                    let relay = crate::nat::relay_of(via);
                    let (secs, bytes) = relay.map(|r| nat.limit_of(&r)).unwrap_or_default();
                    ConnectionInfo {
                        peer_id: peer.to_string(),
                        transport: transport_of(via),
                        path: if point.is_relayed() {
                            "relayed"
                        } else {
                            "direct"
                        },
                        relay: relay.map(|r| r.to_string()),
                        limit_bytes: bytes,
                        limit_secs: secs.map(|d| d.as_secs()),
                        addr: addr.to_string(),
                        role,
                    }
                })
            })
            .collect();
        let routing_table_peers = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        Status {
            peer_id: self.swarm.local_peer_id().to_string(),
            reachability: crate::nat::reachability(&self.swarm.behaviour().autonat.nat_status()),
            dht: match self.swarm.behaviour().kad.mode() {
                kad::Mode::Server => "server",
                kad::Mode::Client => "client",
            },
            relay_server: self.nat.serving_relay(),
            relays: self.nat.relays(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            connections,
            routing_table_peers,
            providing: self.providing.len(),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => {
                self.metrics.record(&e);
                self.on_identify(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => {
                self.metrics.record(&e);
                self.on_kad(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.metrics.record(&e),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.on_autonat(e),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.on_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => {
                self.metrics.record(&e);
                self.on_relay_server(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => {
                self.metrics.record(&e);
                self.on_dcutr(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(e)) => self.on_rendezvous(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => {
                self.metrics.record(&e);
                self.on_gossip(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                for (peer, addr) in list {
                    tracing::debug!(%peer, %addr, "found peer on the local network");
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(DialOpts::peer_id(peer).build());
                    }
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                for reply in self.dial_waiters.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                let relayed = endpoint.is_relayed();
                if !self.connections.contains_key(&peer_id) {
                    let _ = self.connected.send(peer_id);
                    // A DHT server we knew is back: it may have restarted and lost what
                    // it stored for us.
                    if self.dht_servers.contains(&peer_id) {
                        tracing::debug!(peer = %peer_id, "DHT peer (re)connected");
                        self.reannounce_later(peer_id);
                    }
                }
                self.connections
                    .entry(peer_id)
                    .or_default()
                    .push((connection_id, endpoint));
                self.nat_on_connected(peer_id, relayed);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), cause = ?cause, "connection closed");
                if let Some(list) = self.connections.get_mut(&peer_id) {
                    list.retain(|(c, _)| *c != connection_id);
                    if list.is_empty() {
                        self.connections.remove(&peer_id);
                        self.nat_on_disconnected(peer_id);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
                if let Some(p) = peer_id
                    && !self.swarm.is_connected(&p)
                {
                    self.nat.dial_failed(p);
                }
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(OverlayError::Dial(error.to_string())));
                }
                // The dial they waited on failed (or one of several did; callers retry).
                if let Some(p) = peer_id
                    && !self.swarm.is_connected(&p)
                {
                    for reply in self.dial_waiters.remove(&p).unwrap_or_default() {
                        let _ = reply.send(Err(OverlayError::Dial(error.to_string())));
                    }
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error, "listener error");
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let reason = match reason {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.nat_on_listener_closed(listener_id, &reason);
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            _ => {}
        }
    }

    fn on_identify(&mut self, e: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = e else {
            return;
        };
        self.nat_on_identify(peer_id, &info);
        if !info.protocols.contains(&KAD_PROTOCOL) {
            // Not (or no longer, e.g. found to be behind a NAT) a DHT server: queries must
            // not be sent its way.
            self.dht_servers.remove(&peer_id);
            if self
                .swarm
                .behaviour_mut()
                .kad
                .remove_peer(&peer_id)
                .is_some()
            {
                tracing::debug!(peer = %peer_id, "peer left the routing table: it serves no DHT");
            }
            return;
        }
        if self.dht_servers.len() < MAX_DHT_SERVERS {
            self.dht_servers.insert(peer_id);
        }
        // Bound what a peer can make us store. A peer's loopback addresses mean nothing
        // to a peer on another machine (they would reach our own host): keep them only
        // when the peer is itself reached over loopback.
        let local = self
            .connections
            .get(&peer_id)
            .is_some_and(|c| c.iter().any(|(_, e)| is_loopback(e.get_remote_address())));
        for addr in info
            .listen_addrs
            .into_iter()
            .filter(|a| local || !is_loopback(a))
            .take(16)
        {
            self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
        }
        if !self.bootstrapped {
            self.bootstrapped = true;
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn on_kad(&mut self, e: kad::Event) {
        match e {
            kad::Event::RoutingUpdated {
                is_new_peer: true,
                peer,
                ..
            } => {
                tracing::debug!(%peer, "new peer in routing table");
                self.reannounce_later(peer);
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => match result {
                kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })) => {
                    let local = *self.swarm.local_peer_id();
                    let mut to_dial = Vec::new();
                    if let Some((tx, seen)) = self.lookups.get_mut(&id) {
                        for p in providers {
                            if p != local && seen.insert(p) {
                                to_dial.push(p);
                                // The receiver may be slow or gone; never block the actor.
                                let _ = tx.try_send(p);
                            }
                        }
                    }
                    // Dial while the query is live: its addresses for the provider are only
                    // known to Kademlia until the query ends.
                    for p in to_dial {
                        if !self.swarm.is_connected(&p) && !self.nat.recently_failed(&p) {
                            let _ = self.swarm.dial(DialOpts::peer_id(p).build());
                        }
                    }
                    if step.last {
                        self.lookups.remove(&id);
                    }
                }
                kad::QueryResult::GetProviders(_) if step.last => {
                    let found = self.lookups.remove(&id).map_or(0, |(_, seen)| seen.len());
                    tracing::debug!(
                        found,
                        requests = stats.num_requests(),
                        failures = stats.num_failures(),
                        ms = stats.duration().map_or(0, |d| d.as_millis()),
                        "provider lookup ended"
                    );
                }
                kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(r))) => {
                    let valid = self.check_record(&r.record.key, &r.record.value, None);
                    if let Some(tx) = self.record_gets.get(&id) {
                        match valid {
                            Ok(()) => {
                                let _ = tx.try_send(r.record.value);
                            }
                            Err(reason) => {
                                self.rejected.inc();
                                tracing::warn!(peer = ?r.peer, %reason, "rejected a DHT record");
                            }
                        }
                    }
                    if step.last {
                        self.record_gets.remove(&id);
                    }
                }
                kad::QueryResult::GetRecord(_) if step.last => {
                    self.record_gets.remove(&id);
                }
                kad::QueryResult::PutRecord(r) => {
                    if let Some(reply) = self.record_puts.remove(&id) {
                        let n = match r {
                            Ok(_) => Ok(1),
                            // Stored locally; it reached too few peers (e.g. none known yet).
                            Err(kad::PutRecordError::QuorumFailed { success, .. })
                            | Err(kad::PutRecordError::Timeout { success, .. }) => {
                                Ok(success.len())
                            }
                        };
                        let _ = reply.send(n);
                    }
                }
                kad::QueryResult::StartProviding(r) => {
                    tracing::debug!(
                        ok = r.is_ok(),
                        requests = stats.num_requests(),
                        successes = stats.num_successes(),
                        failures = stats.num_failures(),
                        ms = stats.duration().map_or(0, |d| d.as_millis()),
                        "announcement ended"
                    );
                }
                _ => {}
            },
            kad::Event::InboundRequest { request } => self.on_inbound(request),
            _ => {}
        }
    }

    fn check_record(
        &self,
        key: &kad::RecordKey,
        value: &[u8],
        existing: Option<&[u8]>,
    ) -> Result<(), String> {
        match &self.validator {
            Some(v) => v.validate(key.as_ref(), value, existing),
            None => Err("this node accepts no DHT records".into()),
        }
    }

    /// Stores what peers put in the DHT, once it is checked.
    fn on_inbound(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                let existing = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .get(&record.key)
                    .map(|r| r.value.clone());
                match self.check_record(&record.key, &record.value, existing.as_deref()) {
                    Ok(()) => {
                        if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                            tracing::debug!(error = ?e, "cannot store a DHT record");
                        }
                    }
                    Err(reason) => {
                        self.rejected.inc();
                        tracing::warn!(peer = %source, %reason, "rejected a DHT record");
                    }
                }
            }
            kad::InboundRequest::AddProvider {
                record: Some(record),
                ..
            } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(record)
                {
                    tracing::debug!(error = ?e, "cannot store a provider record");
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        else {
            return;
        };
        let topic = message.topic.as_str().to_owned();
        let verdict = match &self.validator {
            Some(v) => v.validate(topic.as_bytes(), &message.data, None),
            None => Err("this node accepts no gossip".into()),
        };
        let acceptance = match &verdict {
            Ok(()) => gossipsub::MessageAcceptance::Accept,
            Err(reason) => {
                self.rejected.inc();
                tracing::warn!(peer = %propagation_source, %topic, %reason, "rejected a gossip message");
                gossipsub::MessageAcceptance::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if verdict.is_ok() {
            let msg = GossipMessage {
                topic,
                data: message.data,
                source: message.source,
            };
            if self.gossip_tx.try_send(msg).is_err() {
                tracing::warn!("gossip queue full; dropping a message");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(me: PeerId, peers: &[PeerId]) -> kad::Behaviour<kad::store::MemoryStore> {
        let mut kad = kad::Behaviour::new(me, kad::store::MemoryStore::new(me));
        for (i, p) in peers.iter().enumerate() {
            let addr: Multiaddr = format!("/ip4/10.0.0.1/tcp/{}", 1000 + i)
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty());
            kad.add_address(p, addr);
        }
        kad
    }

    fn keys(n: usize) -> HashSet<Vec<u8>> {
        (0..n).map(|i| format!("key {i}").into_bytes()).collect()
    }

    /// Brute force: is `peer` among the K closest of `all` to `key`?
    fn among_closest(all: &[PeerId], peer: &PeerId, key: &[u8]) -> bool {
        let target = kad::KBucketKey::new(kad::RecordKey::new(&key));
        let d = |p: &PeerId| kad::KBucketKey::from(*p).distance(&target);
        all.iter().filter(|p| d(p) < d(peer)).count() < kad::K_VALUE.get()
    }

    #[test]
    fn a_new_peer_in_a_small_network_gets_every_key() {
        let peers: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        let mut kad = table(PeerId::random(), &peers);
        let ks = keys(200);
        let fresh = HashSet::from([peers[3]]);
        assert_eq!(keys_closest_to(&mut kad, &ks, &fresh).len(), ks.len());
    }

    #[test]
    fn a_new_peer_in_a_large_network_gets_only_the_keys_it_is_close_to() {
        let peers: Vec<PeerId> = (0..200).map(|_| PeerId::random()).collect();
        let me = PeerId::random();
        let mut kad = table(me, &peers);
        // Buckets are capped at K, so some far peers are not in the table: the closest
        // peers are those the table holds. (In the far buckets, each of the K peers known is
        // among the closest for a whole region of keys; but full buckets take no new peers.
        // New peers come into the near buckets, where the table is as dense as the network.)
        let known: Vec<PeerId> = kad
            .kbuckets()
            .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
            .collect();
        assert!(known.len() > 3 * kad::K_VALUE.get(), "{}", known.len());
        let me_key = kad::KBucketKey::from(me);
        let new = known
            .iter()
            .copied()
            .min_by_key(|p| kad::KBucketKey::from(*p).distance(&me_key))
            .ok_or("empty table")
            .unwrap_or(me);
        let ks = keys(2000);
        let chosen: HashSet<Vec<u8>> = keys_closest_to(&mut kad, &ks, &HashSet::from([new]))
            .into_iter()
            .collect();
        for k in &ks {
            assert_eq!(
                chosen.contains(k),
                among_closest(&known, &new, k),
                "key {:?}",
                String::from_utf8_lossy(k)
            );
        }
        // Some keys, far fewer than all of them.
        assert!(!chosen.is_empty());
        assert!(
            chosen.len() < ks.len() / 4,
            "{} of {}",
            chosen.len(),
            ks.len()
        );
    }
}
