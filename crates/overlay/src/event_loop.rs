//! The network actor: owns the swarm and its parts (peers, DHT, NAT traversal, gossip,
//! dials), answers commands and routes swarm events to the part they are about. It holds
//! no service logic and no logic of its parts.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::metrics::{Metrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, Swarm, identify, mdns};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::dht::Dht;
use crate::dials::Dials;
use crate::gossip::Gossip;
use crate::known::Known;
use crate::nat::Nat;
use crate::peers::Peers;
use crate::{Command, Config, OverlayError, PeerEvent, PeerInfo};

/// Shortest gap between two re-announcements triggered by new routing peers.
const REANNOUNCE_GAP: Duration = Duration::from_secs(2);

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    metrics: Metrics,
    peers: Peers,
    dht: Dht,
    nat: Nat,
    gossip: Gossip,
    dials: Dials,
    known: Known,
    /// Bootstrap peers not reached yet: a failed dial to one is a warning, once.
    bootstrap: Vec<libp2p::PeerId>,
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

/// Starts listening on every configured address and waits until each has one.
async fn listen(swarm: &mut Swarm<Behaviour>, config: &Config) -> Result<(), OverlayError> {
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
    wait_listening(swarm, listeners).await
}

impl EventLoop {
    pub(crate) async fn new(
        mut swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        registry: &mut prometheus_client::registry::Registry,
        config: &Config,
        events: broadcast::Sender<PeerEvent>,
    ) -> Result<Self, OverlayError> {
        listen(&mut swarm, config).await?;
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
        let rejected = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "kith_records_rejected",
            "DHT records and gossip messages refused by validation",
            rejected.clone(),
        );
        let counters = crate::nat::Counters::register(registry);
        Ok(Self {
            swarm,
            commands,
            metrics: Metrics::new(registry),
            peers: Peers::new(events),
            dht: Dht::new(rejected.clone()),
            nat: Nat::new(config, counters),
            gossip: Gossip::new(rejected),
            dials: Dials::default(),
            known: Known::default(),
            bootstrap: config.bootstrap.iter().filter_map(crate::peer_of).collect(),
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
                _ = maintain.tick() => self.nat.maintain(&mut self.swarm, &self.peers),
                _ = reannounce.tick() => self.dht.reannounce(&mut self.swarm),
            }
        }
        tracing::debug!("network actor stopped");
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        self.peers
            .list()
            .into_iter()
            .map(|(peer, path)| PeerInfo {
                peer,
                path,
                region: self.peers.region(&peer),
                limit: match path {
                    crate::Path::Relayed { relay } => Some(self.nat.limit_of(&relay)),
                    crate::Path::Direct => None,
                },
            })
            .collect()
    }

    fn on_command(&mut self, cmd: Command) {
        let swarm = &mut self.swarm;
        match cmd {
            Command::Status(reply) => {
                let s = crate::status::build(swarm, &self.peers, &self.nat, self.dht.providing());
                let _ = reply.send(s);
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(swarm.listeners().cloned().collect());
            }
            Command::Regions(reply) => {
                let own =
                    crate::region::regions_of(swarm.listeners().chain(swarm.external_addresses()));
                let _ = reply.send(own);
            }
            Command::AwaitUsable(peer, reply) => self.peers.await_usable(peer, reply),
            Command::Dial(addr, reply) => self.dials.dial(swarm, addr, reply),
            Command::StartProviding(key) => self.dht.start_providing(swarm, key),
            Command::StopProviding(key) => self.dht.stop_providing(swarm, key),
            Command::FindProviders(key, tx) => self.dht.find_providers(swarm, key, tx),
            Command::Disconnect(peer) => {
                let _ = swarm.disconnect_peer_id(peer);
            }
            Command::AddAddress(peer, addr) => {
                swarm.add_peer_address(peer, addr.clone());
                swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
            Command::AddExternal(addr) => swarm.add_external_address(addr),
            Command::RegisterRecords(prefix, v) => self.dht.register(prefix, v),
            Command::PutRecord(key, value, reply) => self.dht.put_record(swarm, key, value, reply),
            Command::GetRecord(key, tx) => self.dht.get_record(swarm, key, tx),
            Command::ClosestPeers(key, reply) => self.dht.closest_peers(swarm, key, reply),
            Command::ClosestKnown(key, except, reply) => {
                let target = libp2p::kad::KBucketKey::new(key);
                let peers = swarm
                    .behaviour_mut()
                    .kad
                    .find_closest_local_peers(&target, &except)
                    .map(|p| (p.node_id, p.multiaddrs.into_iter().take(4).collect()))
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Gossip(prefix, v, reply) => {
                let _ = reply.send(self.gossip.route(prefix, v));
            }
            Command::Subscribe(topic) => self.gossip.subscribe(swarm, topic),
            Command::Unsubscribe(topic) => self.gossip.unsubscribe(swarm, topic),
            Command::Publish(topic, data) => self.gossip.publish(swarm, topic, data),
            Command::KnownPeers(peers) => self.known.set(peers, swarm, &self.peers),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        let swarm = &mut self.swarm;
        match event {
            SwarmEvent::Behaviour(e) => self.on_behaviour_event(e),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.bootstrap.retain(|b| *b != peer_id);
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.dials.on_connected(connection_id, peer_id);
                let (first, close) = self.peers.on_established(peer_id, connection_id, endpoint);
                for id in close {
                    tracing::info!(peer = %peer_id, "direct connection up; closing the relayed one");
                    swarm.close_connection(id);
                }
                if first {
                    self.dht.on_connected(peer_id);
                }
                self.nat.on_connected(peer_id);
                self.known.note(swarm, &self.peers, peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), cause = ?cause, "connection closed");
                if self.peers.on_closed(peer_id, connection_id) {
                    self.nat.on_disconnected(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
                if let Some(p) = peer_id
                    && let Some(i) = self.bootstrap.iter().position(|b| *b == p)
                {
                    self.bootstrap.swap_remove(i);
                    tracing::warn!(peer = %p, error = %error, "cannot reach bootstrap peer");
                }
                let connected = peer_id.is_some_and(|p| swarm.is_connected(&p));
                if let Some(p) = peer_id
                    && !connected
                {
                    self.nat.dial_failed(p);
                }
                self.dials
                    .on_failed(connection_id, peer_id, &error.to_string(), connected);
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
                self.nat.on_listener_closed(listener_id, &reason);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(from = %send_back_addr, error = ?error, "inbound connection failed");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        let swarm = &mut self.swarm;
        match event {
            BehaviourEvent::Identify(e) => {
                self.metrics.record(&e);
                self.on_identify(e);
            }
            BehaviourEvent::Kad(e) => {
                self.metrics.record(&e);
                let routed = match &e {
                    libp2p::kad::Event::RoutingUpdated { peer, .. } => Some(*peer),
                    _ => None,
                };
                let nat = &self.nat;
                self.dht.on_event(swarm, e, |p| nat.recently_failed(p));
                if let Some(peer) = routed {
                    self.known.note(swarm, &self.peers, peer);
                }
            }
            BehaviourEvent::Ping(e) => self.metrics.record(&e),
            BehaviourEvent::Autonat(e) => self.nat.on_autonat(swarm, e),
            BehaviourEvent::RelayClient(e) => self.nat.on_relay_client(e),
            BehaviourEvent::Relay(e) => {
                self.metrics.record(&e);
                self.nat.on_relay_server(e);
            }
            BehaviourEvent::Dcutr(e) => {
                self.metrics.record(&e);
                self.nat.on_dcutr(e);
            }
            BehaviourEvent::Rendezvous(e) => self.nat.on_rendezvous(swarm, e),
            BehaviourEvent::Gossipsub(e) => {
                self.metrics.record(&e);
                self.gossip.on_event(swarm, e);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    tracing::debug!(%peer, %addr, "found peer on the local network");
                    swarm.behaviour_mut().kad.add_address(&peer, addr);
                    if !swarm.is_connected(&peer) {
                        let _ = swarm.dial(DialOpts::peer_id(peer).build());
                    }
                }
            }
            _ => {}
        }
    }

    fn on_identify(&mut self, e: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = e else {
            return;
        };
        self.nat.on_identify(&self.peers, peer_id, &info);
        let over_loopback = self.peers.get(&peer_id).is_some_and(|c| {
            c.iter()
                .any(|c| crate::dht::is_loopback(c.endpoint.get_remote_address()))
        });
        self.dht
            .on_identify(&mut self.swarm, peer_id, info, over_loopback);
        self.known.note(&mut self.swarm, &self.peers, peer_id);
    }
}
