//! The composed libp2p behaviour and the swarm that runs it.

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Swarm, autonat, connection_limits, dcutr, gossipsub, identify, kad, mdns, ping, relay,
    rendezvous, tcp,
};

use crate::{
    Config, KAD_PROTOCOL, OverlayError, PROTOCOL_VERSION, PROVIDER_REPUBLISH, PROVIDER_TTL,
};

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub guard: crate::guard::Behaviour,
    pub inbound: crate::inbound::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub gossipsub: gossipsub::Behaviour,
    pub stream: libp2p_stream::Behaviour,
    pub autonat: autonat::v1::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub relay: Toggle<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
    pub rendezvous: rendezvous::client::Behaviour,
    pub rendezvous_server: Toggle<rendezvous::server::Behaviour>,
}

fn relay_config(l: &crate::RelayLimits) -> relay::Config {
    relay::Config {
        max_reservations: l.max_reservations,
        max_reservations_per_peer: l.max_reservations_per_peer,
        reservation_duration: l.reservation_duration,
        max_circuits: l.max_circuits,
        max_circuits_per_peer: l.max_circuits_per_peer,
        max_circuit_duration: l.max_circuit_duration,
        max_circuit_bytes: l.max_circuit_bytes,
        reservation_rate_limiters: Vec::new(),
        circuit_src_rate_limiters: Vec::new(),
    }
    // Rate limits: per peer, and per IP address, which many peers behind one NAT share
    // (libp2p's defaults of 60 circuits a minute per IP starve a busy home network).
    .reservation_rate_per_peer(nz(10), MINUTE)
    .reservation_rate_per_ip(nz(120), MINUTE)
    .circuit_src_per_peer(nz(60), MINUTE)
    .circuit_src_per_ip(nz(600), MINUTE)
}

const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

fn nz(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN)
}

fn setup<E: std::fmt::Display>(e: E) -> OverlayError {
    OverlayError::Setup(e.to_string())
}

/// Kademlia on kith's own protocol, checking what peers store.
fn kademlia(peer_id: libp2p::PeerId) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut kcfg = kad::Config::new(KAD_PROTOCOL);
    kcfg.set_provider_record_ttl(Some(PROVIDER_TTL))
        .set_provider_publication_interval(Some(PROVIDER_REPUBLISH))
        .set_query_timeout(std::time::Duration::from_secs(30))
        .set_max_packet_size(64 * 1024)
        // Records and provider announcements are checked before they are stored
        // (see `Dht::on_inbound`).
        .set_record_filtering(kad::StoreInserts::FilterBoth);
    let store_cfg = kad::store::MemoryStoreConfig {
        max_records: 4096,
        max_value_bytes: 16 * 1024,
        max_providers_per_key: 256,
        max_provided_keys: 1 << 20,
    };
    let mut kad = kad::Behaviour::with_config(
        peer_id,
        kad::store::MemoryStore::with_config(peer_id, store_cfg),
        kcfg,
    );
    // Every kith node answers DHT queries, also on loopback and LANs where no external
    // address gets confirmed (behind a NAT, AutoNAT turns it into a client).
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// Gossipsub with signed messages that services validate before they are passed on.
fn gossip(key: &libp2p::identity::Keypair) -> Result<gossipsub::Behaviour, std::io::Error> {
    let gcfg = gossipsub::ConfigBuilder::default()
        .max_transmit_size(crate::MAX_GOSSIP_BYTES)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .heartbeat_interval(std::time::Duration::from_millis(700))
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)
        .map_err(std::io::Error::other)
}

fn limits_of(config: &Config) -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        // The guard keeps inbound handshakes to `handshakes.total`. Those it has cut are
        // counted here until their task sees the cut (a flood cuts hundreds a second), so
        // this cap, a bound on memory only, leaves room for three times as many.
        .with_max_pending_incoming(Some(
            u32::try_from(config.handshakes.total.saturating_mul(4)).unwrap_or(u32::MAX),
        ))
        .with_max_pending_outgoing(Some(64))
}

fn autonat_config(config: &Config) -> autonat::v1::Config {
    autonat::v1::Config {
        boot_delay: std::time::Duration::from_secs(2),
        retry_interval: std::time::Duration::from_secs(10),
        refresh_interval: std::time::Duration::from_secs(300),
        throttle_server_period: std::time::Duration::from_secs(5),
        only_global_ips: !config.autonat_any_ip,
        // Longer than a dial-back to an address that drops packets takes to fail (10 s).
        timeout: std::time::Duration::from_secs(30),
        ..autonat::v1::Config::default()
    }
}

pub(crate) fn build_swarm(
    config: &Config,
    registry: &mut prometheus_client::registry::Registry,
    inbound: std::sync::Arc<crate::inbound::Shared>,
) -> Result<(Swarm<Behaviour>, libp2p_stream::Control), OverlayError> {
    let limits = limits_of(config);
    let handoff = crate::guard::Handoff::default();
    let guard = crate::guard::Behaviour::new(config.handshakes, handoff.clone(), registry);
    let mdns_enabled = config.mdns;
    let relay_limits = config.relay.clone();
    let rendezvous_server = config.rendezvous_server;
    let autonat_cfg = autonat_config(config);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_quic()
        // TCP with TLS (AES-GCM first) or Noise, and Yamux, plus a handshake deadline (the
        // builder sets none: a silent socket would hold its pending slot for ever). Inbound
        // sockets are tapped for the guard before the handshake reads them.
        .with_other_transport(|key| {
            use libp2p::Transport as _;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                crate::guard::Tcp::new(tcp::Config::default().nodelay(true), handoff)
                    .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                    .authenticate(crate::secure::Secure::new(key)?)
                    .multiplex(crate::mux::muxer())
                    .timeout(crate::guard::HANDSHAKE_TIMEOUT),
            )
        })
        .map_err(setup)?
        .with_relay_client(crate::secure::Secure::new, crate::mux::muxer)
        .map_err(setup)?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let kad = kademlia(peer_id);
            let mdns = if mdns_enabled {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            let gossipsub = gossip(key)?;
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                guard,
                inbound: crate::inbound::Behaviour::new(inbound),
                identify: identify::Behaviour::new(
                    identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                        .with_agent_version(format!("kith/{}", env!("CARGO_PKG_VERSION")))
                        // New addresses (a relay reservation) reach peers at once.
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::default(),
                kad,
                mdns: Toggle::from(mdns),
                gossipsub,
                stream: libp2p_stream::Behaviour::new(),
                autonat: autonat::v1::Behaviour::new(peer_id, autonat_cfg),
                relay_client,
                relay: Toggle::from(
                    relay_limits.map(|l| relay::Behaviour::new(peer_id, relay_config(&l))),
                ),
                dcutr: dcutr::Behaviour::new(peer_id),
                rendezvous: rendezvous::client::Behaviour::new(key.clone()),
                rendezvous_server: Toggle::from(rendezvous_server.then(|| {
                    rendezvous::server::Behaviour::new(
                        rendezvous::server::Config::default()
                            .with_max_registration_per_peer(4)
                            // kith peers register for minutes and renew, so a peer that
                            // is gone drops out of discovery soon.
                            .with_min_ttl(60),
                    )
                })),
            })
        })
        .map_err(setup)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    let control = swarm.behaviour().stream.new_control();
    Ok((swarm, control))
}
