//! kith overlay: the peer-to-peer network, built on rust-libp2p. It routes; services decide.
//!
//! - [`Overlay`]: a cheap, cloneable handle to the network actor (bounded command channel).
//! - [`Config`]: identity, listen and bootstrap addresses, mDNS, connection limits, relay.
//! - [`PeerEvent`]: typed facts about peers (connected, path changed direct⇄relayed,
//!   closed) for services, from [`Overlay::peer_events`].
//! - [`inbound`]: the streams of a service protocol, behind per-peer and global caps, with
//!   the protocol's own "busy" answer for the ones over them.
//! - [`RecordValidator`]: a service's check of its DHT records and gossip, registered by
//!   key prefix ([`Overlay::register_records`], [`Overlay::gossip`]).
//! - `behaviour`: QUIC + TCP (Noise, Yamux), identify, ping, Kademlia (`/kith/kad/1.0.0`),
//!   gossipsub, mDNS, connection limits; AutoNAT, circuit relay v2, DCUtR, rendezvous.
//!
//! The actor (`event_loop`) only routes: the DHT (`dht`), peers and their paths (`peers`),
//! NAT traversal (`nat`), gossip (`gossip`), dials (`dials`) and the peers the node knows
//! (`known`) are parts it owns. `guard` caps inbound handshakes (`behaviour`'s TCP
//! transport taps their sockets for it).

pub mod behaviour;
mod dht;
mod dials;
mod event_loop;
mod gossip;
mod guard;
pub mod inbound;
mod known;
pub mod mux;
mod nat;
mod peers;
pub mod region;
pub mod secure;
mod status;

use std::sync::Arc;
use std::time::Duration;

pub use guard::Limits as HandshakeLimits;
pub use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, identity::Keypair, multiaddr};
pub use libp2p_stream::OpenStreamError;
pub use region::Region;
pub use status::{ConnectionInfo, RelayInfo, Status};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Kademlia protocol name: kith's DHT is its own network.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/kad/1.0.0");
/// Identify protocol version string.
pub const PROTOCOL_VERSION: &str = "/kith/1.0.0";
/// How long a provider record lives in the DHT.
pub const PROVIDER_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often this node re-announces what it provides (well before the TTL runs out).
pub const PROVIDER_REPUBLISH: Duration = Duration::from_secs(6 * 3600);
/// Capacity of the command channel to the actor.
const COMMAND_QUEUE: usize = 256;
/// Largest gossip message accepted or sent.
pub const MAX_GOSSIP_BYTES: usize = 16 * 1024;
/// Peer events buffered for each subscriber; a subscriber that falls further behind is
/// told it lagged (and reads [`Overlay::connected_peers`] again).
const PEER_EVENTS: usize = 1024;
/// Longest wait in [`Overlay::open_stream`] for a closing relayed connection to go.
const USABLE_WAIT: Duration = Duration::from_secs(3);
/// Longest time to open a stream, dialling included.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a DHT record or gossip message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// A service's check of DHT records and gossip messages under its key prefix, run before
/// they are stored or passed on.
pub trait RecordValidator: Send + Sync + 'static {
    /// `key` is the DHT record key (or the gossip topic); `existing` is the record stored
    /// under that key, if any.
    fn validate(&self, key: &[u8], value: &[u8], existing: Option<&[u8]>) -> Result<(), Rejected>;

    /// Checks a gossip message on `topic` from `source` (the peer that signed it). By
    /// default, as a record under the topic's name.
    fn validate_gossip(
        &self,
        topic: &str,
        data: &[u8],
        source: Option<&PeerId>,
    ) -> Result<(), Rejected> {
        let _ = source;
        self.validate(topic.as_bytes(), data, None)
    }
}

impl std::fmt::Debug for dyn RecordValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordValidator")
    }
}

/// A gossip message that passed its topic's validator.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    pub topic: String,
    pub data: Vec<u8>,
    /// The peer that published it (signed by that peer).
    pub source: Option<PeerId>,
    /// The neighbour that passed it on (the publisher itself, or a peer on the way).
    pub via: PeerId,
}

/// How this node reaches a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    Direct,
    /// Through a circuit relay (slower, and capped by the relay).
    Relayed {
        relay: PeerId,
    },
}

/// What a relay allows a circuit, as it told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CircuitLimit {
    pub bytes: Option<u64>,
    pub secs: Option<u64>,
}

/// A connected peer and its best path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub path: Path,
    /// For a relayed path: the relay's limits.
    pub limit: Option<CircuitLimit>,
    /// Where the peer is: the subnet its best connection comes from, or its relay.
    pub region: Option<Region>,
}

/// Typed facts about peers, as they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// The peer's first connection is up (whoever dialled).
    Connected { peer: PeerId, path: Path },
    /// The peer's best path changed: a direct connection replaced a relayed one (the
    /// relayed one is closing: streams on it should move), or the direct one went.
    PathChanged { peer: PeerId, path: Path },
    /// The peer's last connection closed.
    Closed { peer: PeerId },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("bad multiaddr {addr:?}: {reason}")]
    BadAddr { addr: String, reason: String },
    #[error("network setup failed: {0}")]
    Setup(String),
    #[error("the network actor has stopped")]
    Stopped,
    #[error("dial failed: {0}")]
    Dial(String),
    #[error("cannot open a stream to {peer}: {reason}")]
    OpenStream { peer: PeerId, reason: String },
    #[error("too many {0} in flight")]
    Busy(&'static str),
    #[error("protocol {0} is already accepted by another service")]
    AlreadyAccepted(String),
    #[error("DHT record refused: {0}")]
    Rejected(#[from] Rejected),
}

/// Limits of the circuit relay a node serves, so that it cannot be used as an open proxy.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub reservation_duration: Duration,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    pub max_circuit_duration: Duration,
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 16,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(600),
            max_circuit_bytes: 64 << 20,
        }
    }
}

/// Rendezvous namespace kith peers register under.
pub const RENDEZVOUS_NAMESPACE: &str = "kith";

#[derive(Debug, Clone)]
pub struct Config {
    pub keypair: Keypair,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Caps on inbound connections whose handshake is in progress.
    pub handshakes: HandshakeLimits,
    pub idle_timeout: Duration,
    /// Serve as a circuit relay (and AutoNAT server) with these limits.
    pub relay: Option<RelayLimits>,
    /// Serve as a rendezvous point.
    pub rendezvous_server: bool,
    /// Relays to reserve a slot on while this node is not publicly reachable (any relay
    /// this node connects to is used as well).
    pub relays: Vec<Multiaddr>,
    /// Rendezvous points to register with and discover peers through.
    pub rendezvous: Vec<Multiaddr>,
    /// AutoNAT also on private and loopback addresses (LANs and test networks).
    pub autonat_any_ip: bool,
    /// Addresses this node is known to be reachable at (a server's public address):
    /// confirmed at once, without waiting for AutoNAT.
    pub external: Vec<Multiaddr>,
}

impl Config {
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            listen: ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"]
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 256,
            max_connections_per_peer: 4,
            handshakes: HandshakeLimits::default(),
            idle_timeout: Duration::from_secs(60),
            relay: None,
            rendezvous_server: false,
            relays: Vec::new(),
            rendezvous: Vec::new(),
            autonat_any_ip: false,
            external: Vec::new(),
        }
    }
}

/// Parses a multiaddr given by a user.
/// Sorts `peers` by their DHT distance to `key`, closest first (Kademlia's XOR metric).
pub fn sort_by_distance(key: &[u8], peers: &mut [PeerId]) {
    let target = libp2p::kad::KBucketKey::new(key.to_vec());
    peers.sort_by_cached_key(|p| libp2p::kad::KBucketKey::from(*p).distance(&target));
}

pub fn parse_addr(s: &str) -> Result<Multiaddr, OverlayError> {
    s.trim()
        .parse()
        .map_err(|e: libp2p::multiaddr::Error| OverlayError::BadAddr {
            addr: s.to_owned(),
            reason: e.to_string(),
        })
}

/// The peer ID at the end of `addr` (`…/p2p/PEER`).
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(multiaddr::Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

pub(crate) enum Command {
    Status(oneshot::Sender<Status>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Regions(oneshot::Sender<Vec<Region>>),
    AwaitUsable(PeerId, oneshot::Sender<()>),
    Dial(Multiaddr, oneshot::Sender<Result<(), OverlayError>>),
    StartProviding(Vec<u8>),
    StopProviding(Vec<u8>),
    FindProviders(Vec<u8>, mpsc::Sender<PeerId>),
    Disconnect(PeerId),
    AddAddress(PeerId, Multiaddr),
    AddExternal(Multiaddr),
    RegisterRecords(Vec<u8>, Arc<dyn RecordValidator>),
    PutRecord(
        Vec<u8>,
        Vec<u8>,
        oneshot::Sender<Result<usize, OverlayError>>,
    ),
    GetRecord(Vec<u8>, mpsc::Sender<Vec<u8>>),
    ClosestPeers(Vec<u8>, oneshot::Sender<Vec<PeerId>>),
    ClosestKnown(
        Vec<u8>,
        PeerId,
        oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>,
    ),
    Gossip(
        String,
        Arc<dyn RecordValidator>,
        oneshot::Sender<mpsc::Receiver<GossipMessage>>,
    ),
    Subscribe(String),
    Unsubscribe(String),
    Publish(String, Vec<u8>),
    KnownPeers(Vec<PeerId>),
}

/// Handle to the running network.
#[derive(Clone)]
pub struct Overlay {
    peer_id: PeerId,
    events: broadcast::Sender<PeerEvent>,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    inbound: Arc<inbound::Shared>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

impl Overlay {
    /// Builds the swarm, starts listening and spawns the actor. Listen errors (such as a
    /// port already in use) are returned here, before anything runs.
    pub async fn start(
        config: Config,
        registry: &mut prometheus_client::registry::Registry,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), OverlayError> {
        let peer_id = config.keypair.public().to_peer_id();
        let inbound = inbound::Shared::new(registry);
        let (swarm, control) = behaviour::build_swarm(&config, registry, inbound.clone())?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(PEER_EVENTS);
        let mut actor =
            event_loop::EventLoop::new(swarm, rx, registry, &config, events.clone()).await?;
        let task = tokio::spawn(async move { actor.run(shutdown).await });
        Ok((
            Self {
                peer_id,
                events,
                commands: tx,
                control,
                inbound,
            },
            task,
        ))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Peer events from now on. Subscribe before reading [`Overlay::connected_peers`] so
    /// that nothing is missed in between.
    pub fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// Accepts inbound streams of `protocol` within `limits`; refused streams get the
    /// bytes `busy` returns, then close.
    pub fn accept(
        &self,
        protocol: StreamProtocol,
        limits: inbound::Limits,
        busy: inbound::Busy,
    ) -> Result<inbound::Inbound, OverlayError> {
        self.inbound.register(protocol, limits, busy)
    }

    /// Opens a stream of `protocol` to `peer`, dialling it if needed. Never on a relayed
    /// connection that is closing because a direct one replaced it.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, OverlayError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::AwaitUsable(peer, tx)).await?;
        let _ = tokio::time::timeout(USABLE_WAIT, rx).await;
        let mut control = self.control.clone();
        tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol))
            .await
            .map_err(|_| OverlayError::OpenStream {
                peer,
                reason: "timed out".into(),
            })?
            .map_err(|e| OverlayError::OpenStream {
                peer,
                reason: e.to_string(),
            })
    }

    async fn send(&self, c: Command) -> Result<(), OverlayError> {
        self.commands
            .send(c)
            .await
            .map_err(|_| OverlayError::Stopped)
    }

    async fn ask<T>(
        &self,
        c: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, OverlayError> {
        let (tx, rx) = oneshot::channel();
        self.send(c(tx)).await?;
        rx.await.map_err(|_| OverlayError::Stopped)
    }

    /// The node's state for display (`kith status`); services use the typed calls.
    pub async fn status(&self) -> Result<Status, OverlayError> {
        self.ask(Command::Status).await
    }

    /// Connected peers and their best paths.
    pub async fn connected_peers(&self) -> Result<Vec<PeerInfo>, OverlayError> {
        self.ask(Command::Peers).await
    }

    /// How this node reaches `peer`, if it is connected.
    pub async fn peer_info(&self, peer: PeerId) -> Result<Option<PeerInfo>, OverlayError> {
        Ok(self
            .connected_peers()
            .await?
            .into_iter()
            .find(|p| p.peer == peer))
    }

    /// Addresses this node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, OverlayError> {
        self.ask(Command::ListenAddrs).await
    }

    /// The regions this node is in: those of its listen and external addresses, and the
    /// relays it listens through.
    pub async fn own_regions(&self) -> Result<Vec<Region>, OverlayError> {
        self.ask(Command::Regions).await
    }

    /// Whether `peer` is connected and in one of this node's regions (`None`: not
    /// connected, so not known).
    pub async fn is_near(&self, peer: PeerId) -> Result<Option<bool>, OverlayError> {
        let Some(info) = self.peer_info(peer).await? else {
            return Ok(None);
        };
        let own = self.own_regions().await?;
        Ok(Some(info.region.is_some_and(|r| own.contains(&r))))
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), OverlayError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// Announces in the DHT that this node provides `key`, and keeps announcing it.
    pub async fn start_providing(&self, key: Vec<u8>) -> Result<(), OverlayError> {
        self.send(Command::StartProviding(key)).await
    }

    pub async fn stop_providing(&self, key: Vec<u8>) -> Result<(), OverlayError> {
        self.send(Command::StopProviding(key)).await
    }

    /// Looks up providers of `key` in the DHT. Providers arrive on the returned channel as
    /// they are found (and are being dialled); it closes when the lookup ends.
    pub async fn find_providers(
        &self,
        key: Vec<u8>,
    ) -> Result<mpsc::Receiver<PeerId>, OverlayError> {
        let (tx, rx) = mpsc::channel(64);
        self.send(Command::FindProviders(key, tx)).await?;
        Ok(rx)
    }

    /// The DHT's closest nodes to `key` (an iterative lookup), this node among them if it
    /// is one: at most K (20), closest first. Their addresses are kept for dialling.
    pub async fn closest_peers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, OverlayError> {
        self.ask(|tx| Command::ClosestPeers(key, tx)).await
    }

    /// The nodes closest to `key` in this node's own routing table (no lookup), with their
    /// addresses, not `except`: at most K, closest first. What a node tells a peer that
    /// looks `key` up through it.
    pub async fn closest_known(
        &self,
        key: Vec<u8>,
        except: PeerId,
    ) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, OverlayError> {
        self.ask(|tx| Command::ClosestKnown(key, except, tx)).await
    }

    /// Remembers an address of `peer` (from a broker or a search answer).
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), OverlayError> {
        self.send(Command::AddAddress(peer, addr)).await
    }

    /// Declares an address this node is reachable at (as `Config::external`).
    pub async fn add_external_address(&self, addr: Multiaddr) -> Result<(), OverlayError> {
        self.send(Command::AddExternal(addr)).await
    }

    /// Registers the validator of DHT records whose keys start with `prefix`. Records
    /// under no registered prefix are refused.
    pub async fn register_records(
        &self,
        prefix: &str,
        validator: Arc<dyn RecordValidator>,
    ) -> Result<(), OverlayError> {
        self.send(Command::RegisterRecords(
            prefix.as_bytes().to_vec(),
            validator,
        ))
        .await
    }

    /// Stores a record in the DHT (and locally). Returns how many peers stored it; a
    /// record that reached no peer yet is still kept locally and republished.
    pub async fn put_record(&self, key: Vec<u8>, value: Vec<u8>) -> Result<usize, OverlayError> {
        self.ask(|tx| Command::PutRecord(key, value, tx)).await?
    }

    /// Looks up a record in the DHT; validated values arrive on the channel as peers
    /// answer, and it closes when the lookup ends.
    pub async fn get_record(&self, key: Vec<u8>) -> Result<mpsc::Receiver<Vec<u8>>, OverlayError> {
        let (tx, rx) = mpsc::channel(16);
        self.send(Command::GetRecord(key, tx)).await?;
        Ok(rx)
    }

    /// The gossip messages on topics that start with `prefix`, checked by `validator`
    /// (messages it refuses are not passed on to other peers either). One receiver per
    /// prefix; topics under no registered prefix are refused.
    pub async fn gossip(
        &self,
        prefix: &str,
        validator: Arc<dyn RecordValidator>,
    ) -> Result<mpsc::Receiver<GossipMessage>, OverlayError> {
        self.ask(|tx| Command::Gossip(prefix.to_owned(), validator, tx))
            .await
    }

    pub async fn subscribe(&self, topic: String) -> Result<(), OverlayError> {
        self.send(Command::Subscribe(topic)).await
    }

    pub async fn unsubscribe(&self, topic: String) -> Result<(), OverlayError> {
        self.send(Command::Unsubscribe(topic)).await
    }

    /// Publishes on a gossip topic (best effort: no subscribed peer is not an error).
    pub async fn publish(&self, topic: String, data: Vec<u8>) -> Result<(), OverlayError> {
        self.send(Command::Publish(topic, data)).await
    }

    /// Names the peers the node knows beyond its routing table (its groups' devices, its
    /// person's other devices), replacing those named before. Where they connect from
    /// keeps a share of the slots for inbound handshakes, so a flood of strangers cannot
    /// keep them out. At most 4096 are kept.
    pub async fn set_known_peers(&self, peers: Vec<PeerId>) -> Result<(), OverlayError> {
        self.send(Command::KnownPeers(peers)).await
    }

    /// Closes every connection to `peer` (used for peers caught misbehaving).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), OverlayError> {
        self.send(Command::Disconnect(peer)).await
    }
}
