//! kith overlay: the peer-to-peer network, built on rust-libp2p.
//!
//! - [`Overlay`]: a cheap, cloneable handle to the network actor (bounded command channel).
//! - [`Config`]: identity, listen and bootstrap addresses, mDNS, connection limits.
//! - [`behaviour::Behaviour`]: QUIC + TCP (Noise, Yamux), identify, ping, Kademlia
//!   (`/kith/kad/1.0.0`), mDNS, connection limits and libp2p-stream for service protocols;
//!   for peers behind NATs: AutoNAT, circuit relay v2 (client, and server on public nodes),
//!   DCUtR hole punching and rendezvous.
//!
//! The actor (`event_loop`) routes swarm events and owns no service logic: services open
//! and accept their own streams through [`Overlay::streams`].

pub mod behaviour;
mod event_loop;
mod nat;

use std::time::Duration;

pub use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, identity::Keypair, multiaddr};
pub use libp2p_stream::{Control, IncomingStreams, OpenStreamError};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
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
/// Gossip messages queued for services before new ones are dropped.
const GOSSIP_QUEUE: usize = 256;

/// Checks DHT records and gossip messages before they are stored or passed on. Services
/// that put records in the DHT (names) supply one; without it, no record is accepted.
pub trait RecordValidator: Send + Sync + 'static {
    /// `key` is the DHT record key (or the gossip topic); `existing` is the record stored
    /// under that key, if any. An error says why the record is rejected.
    fn validate(&self, key: &[u8], value: &[u8], existing: Option<&[u8]>) -> Result<(), String>;
}

/// A gossip message that passed validation.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    pub topic: String,
    pub data: Vec<u8>,
    /// The peer that published it (signed by that peer).
    pub source: Option<PeerId>,
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
    pub idle_timeout: Duration,
    /// Validator for DHT records and gossip; `None` rejects all of them.
    pub validator: Option<std::sync::Arc<dyn RecordValidator>>,
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

impl std::fmt::Debug for dyn RecordValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordValidator")
    }
}

impl Config {
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            listen: vec![
                "/ip4/127.0.0.1/udp/0/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 256,
            max_connections_per_peer: 4,
            idle_timeout: Duration::from_secs(60),
            validator: None,
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
pub fn parse_addr(s: &str) -> Result<Multiaddr, OverlayError> {
    s.trim()
        .parse()
        .map_err(|e: libp2p::multiaddr::Error| OverlayError::BadAddr {
            addr: s.to_owned(),
            reason: e.to_string(),
        })
}

/// One open connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub peer_id: String,
    pub addr: String,
    /// `dialer` when we opened it, `listener` when the peer did.
    pub role: &'static str,
    pub transport: &'static str,
    /// `direct`, or `relayed` through a circuit relay.
    pub path: &'static str,
    /// For relayed connections: the relay's peer ID and the limits of the circuit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_secs: Option<u64>,
}

/// A relay this node holds (or asks for) a reservation on.
#[derive(Debug, Clone, Serialize)]
pub struct RelayInfo {
    pub peer_id: String,
    /// The relayed address others can reach this node at.
    pub addr: String,
    /// `reserved` or `pending`.
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub peer_id: String,
    /// AutoNAT's verdict: `public`, `private` or `unknown`.
    pub reachability: &'static str,
    /// `server` when this node answers DHT queries, `client` when it only asks (behind a
    /// NAT, where others could not reach it).
    pub dht: &'static str,
    /// Relays this node serves circuits for others on (when it is one).
    pub relay_server: bool,
    pub relays: Vec<RelayInfo>,
    pub listen_addrs: Vec<String>,
    pub external_addrs: Vec<String>,
    pub connections: Vec<ConnectionInfo>,
    pub routing_table_peers: usize,
    pub providing: usize,
}

#[derive(Debug)]
pub(crate) enum Command {
    Status(oneshot::Sender<Status>),
    Dial(Multiaddr, oneshot::Sender<Result<(), OverlayError>>),
    StartProviding(Vec<u8>),
    StopProviding(Vec<u8>),
    FindProviders(Vec<u8>, mpsc::Sender<PeerId>),
    Disconnect(PeerId),
    AddAddress(PeerId, Multiaddr),
    AddExternal(Multiaddr),
    PutRecord(
        Vec<u8>,
        Vec<u8>,
        oneshot::Sender<Result<usize, OverlayError>>,
    ),
    GetRecord(Vec<u8>, mpsc::Sender<Vec<u8>>),
    Subscribe(String),
    Unsubscribe(String),
    Publish(String, Vec<u8>),
}

/// Handle to the running network.
#[derive(Clone)]
pub struct Overlay {
    peer_id: PeerId,
    upgrades: tokio::sync::broadcast::Sender<PeerId>,
    connected: tokio::sync::broadcast::Sender<PeerId>,
    commands: mpsc::Sender<Command>,
    control: Control,
    gossip: std::sync::Arc<std::sync::Mutex<Option<mpsc::Receiver<GossipMessage>>>>,
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
        let (swarm, control) = behaviour::build_swarm(&config, registry)?;
        let metrics = libp2p::metrics::Metrics::new(registry);
        let rejected = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "kith_records_rejected",
            "DHT records and gossip messages refused by validation",
            rejected.clone(),
        );
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
        let counters = nat::Counters::register(registry);
        let (upgrades, _) = tokio::sync::broadcast::channel(64);
        let (connected, _) = tokio::sync::broadcast::channel(256);
        let out = event_loop::Outputs {
            gossip_tx,
            rejected,
            counters,
            upgrades: upgrades.clone(),
            connected: connected.clone(),
        };
        let mut actor = event_loop::EventLoop::new(swarm, rx, metrics, &config, out).await?;
        let task = tokio::spawn(async move { actor.run(shutdown).await });
        Ok((
            Self {
                peer_id,
                upgrades,
                connected,
                commands: tx,
                control,
                gossip: std::sync::Arc::new(std::sync::Mutex::new(Some(gossip_rx))),
            },
            task,
        ))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Peers whose relayed connection is being replaced by a direct one. A relayed
    /// connection closes gracefully, waiting for its streams: services drop their streams
    /// to such a peer and open new ones, which use the direct connection.
    pub fn upgrades(&self) -> tokio::sync::broadcast::Receiver<PeerId> {
        self.upgrades.subscribe()
    }

    /// Peers as they become connected (their first connection), whoever dialled: a
    /// service waiting for a peer that went away learns it is back.
    pub fn connected(&self) -> tokio::sync::broadcast::Receiver<PeerId> {
        self.connected.subscribe()
    }

    /// Opens and accepts streams of service protocols.
    pub fn streams(&self) -> Control {
        self.control.clone()
    }

    async fn send(&self, c: Command) -> Result<(), OverlayError> {
        self.commands
            .send(c)
            .await
            .map_err(|_| OverlayError::Stopped)
    }

    pub async fn status(&self) -> Result<Status, OverlayError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Status(tx)).await?;
        rx.await.map_err(|_| OverlayError::Stopped)
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), OverlayError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Dial(addr, tx)).await?;
        rx.await.map_err(|_| OverlayError::Stopped)?
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

    /// Remembers an address of `peer` (from a broker or a search answer).
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), OverlayError> {
        self.send(Command::AddAddress(peer, addr)).await
    }

    /// Declares an address this node is reachable at (as `Config::external`).
    pub async fn add_external_address(&self, addr: Multiaddr) -> Result<(), OverlayError> {
        self.send(Command::AddExternal(addr)).await
    }

    /// Stores a record in the DHT (and locally). Returns how many peers stored it; a
    /// record that reached no peer yet is still kept locally and republished.
    pub async fn put_record(&self, key: Vec<u8>, value: Vec<u8>) -> Result<usize, OverlayError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::PutRecord(key, value, tx)).await?;
        rx.await.map_err(|_| OverlayError::Stopped)?
    }

    /// Looks up a record in the DHT; validated values arrive on the channel as peers
    /// answer, and it closes when the lookup ends.
    pub async fn get_record(&self, key: Vec<u8>) -> Result<mpsc::Receiver<Vec<u8>>, OverlayError> {
        let (tx, rx) = mpsc::channel(16);
        self.send(Command::GetRecord(key, tx)).await?;
        Ok(rx)
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

    /// The stream of validated gossip messages; only the first caller gets it.
    pub fn gossip_messages(&self) -> Option<mpsc::Receiver<GossipMessage>> {
        self.gossip.lock().ok().and_then(|mut g| g.take())
    }

    /// Closes every connection to `peer` (used for peers caught misbehaving).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), OverlayError> {
        self.send(Command::Disconnect(peer)).await
    }
}
