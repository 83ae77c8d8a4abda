//! kith overlay: the peer-to-peer network, built on rust-libp2p.
//!
//! - [`Overlay`]: a cheap, cloneable handle to the network actor (bounded command channel).
//! - [`Config`]: identity, listen and bootstrap addresses, mDNS, connection limits.
//! - [`behaviour::Behaviour`]: QUIC + TCP (Noise, Yamux), identify, ping, Kademlia
//!   (`/kith/kad/1.0.0`), mDNS, connection limits and libp2p-stream for service protocols.
//!
//! The actor (`event_loop`) routes swarm events and owns no service logic: services open
//! and accept their own streams through [`Overlay::streams`].

pub mod behaviour;
mod event_loop;

use std::time::Duration;

pub use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, identity::Keypair};
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

#[derive(Debug, Clone)]
pub struct Config {
    pub keypair: Keypair,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub idle_timeout: Duration,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub peer_id: String,
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
}

/// Handle to the running network.
#[derive(Clone)]
pub struct Overlay {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    control: Control,
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
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let mut actor = event_loop::EventLoop::new(swarm, rx, metrics, &config).await?;
        let task = tokio::spawn(async move { actor.run(shutdown).await });
        Ok((
            Self {
                peer_id,
                commands: tx,
                control,
            },
            task,
        ))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
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

    /// Closes every connection to `peer` (used for peers caught misbehaving).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), OverlayError> {
        self.send(Command::Disconnect(peer)).await
    }
}
