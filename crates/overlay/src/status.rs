//! The node's network state for display (`kith status`, `kith peers`). Services never read
//! it: they get typed facts ([`crate::PeerEvent`], [`crate::Overlay::connected_peers`]).

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, Swarm, kad};
use serde::Serialize;

use crate::behaviour::Behaviour;
use crate::nat::Nat;
use crate::peers::Peers;
use crate::region::relay_of;

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

fn connections(peers: &Peers, nat: &Nat) -> Vec<ConnectionInfo> {
    peers
        .iter()
        .flat_map(|(peer, conns)| {
            conns.iter().map(move |c| {
                let (addr, role) = match &c.endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address.clone(), "dialer"),
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), "listener")
                    }
                };
                let relay = relay_of(c.via());
                let limit = relay.map(|r| nat.limit_of(&r)).unwrap_or_default();
                ConnectionInfo {
                    peer_id: peer.to_string(),
                    transport: transport_of(c.via()),
                    path: if c.endpoint.is_relayed() {
                        "relayed"
                    } else {
                        "direct"
                    },
                    relay: relay.map(|r| r.to_string()),
                    limit_bytes: limit.bytes,
                    limit_secs: limit.secs,
                    addr: addr.to_string(),
                    role,
                }
            })
        })
        .collect()
}

pub(crate) fn build(
    swarm: &mut Swarm<Behaviour>,
    peers: &Peers,
    nat: &Nat,
    providing: usize,
) -> Status {
    let routing_table_peers = swarm
        .behaviour_mut()
        .kad
        .kbuckets()
        .map(|b| b.num_entries())
        .sum();
    Status {
        peer_id: swarm.local_peer_id().to_string(),
        reachability: crate::nat::reachability(&swarm.behaviour().autonat.nat_status()),
        dht: match swarm.behaviour().kad.mode() {
            kad::Mode::Server => "server",
            kad::Mode::Client => "client",
        },
        relay_server: nat.serving_relay(),
        relays: nat.relays(),
        listen_addrs: swarm.listeners().map(|a| a.to_string()).collect(),
        external_addrs: swarm.external_addresses().map(|a| a.to_string()).collect(),
        connections: connections(peers, nat),
        routing_table_peers,
        providing,
    }
}
