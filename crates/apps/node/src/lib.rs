//! kith node: assembles the overlay, the core store and the services into one running
//! peer, and serves the local HTTP API (`/api/v1`) that the CLI and other programs use.
//!
//! - [`Node`]: a running node; [`Node::start`] and [`Node::shutdown`].
//! - [`Home`]: the data directory (key, config, database, API token and address).
//! - `api`: the HTTP API (axum), described by `openapi.json`.

mod api;
mod home;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kith_core::config::Config;
use kith_overlay::{Overlay, OverlayError};
use kith_search::Search;
use kith_share::Share;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use home::{Home, HomeError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Store(#[from] kith_core::store::StoreError),
    #[error(transparent)]
    Share(#[from] kith_share::ShareError),
    #[error(transparent)]
    Search(#[from] kith_search::SearchError),
    #[error("cannot serve the API on {addr}: {reason}")]
    Api { addr: String, reason: String },
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub home: Home,
    pub config: Config,
    /// Service tuning not in the config file (tests shorten waits).
    pub share: kith_share::Config,
    pub search: kith_search::Config,
}

impl Options {
    pub fn new(home: Home, config: Config) -> Self {
        let share = kith_share::Config {
            upload_limit: config.upload_limit,
            download_limit: config.download_limit,
            rescan: Duration::from_secs(config.rescan_secs.max(1)),
            ..kith_share::Config::default()
        };
        let mut search = kith_search::Config::new(home.dir().join("search"));
        search.serve_broker = config.serve_broker;
        search.broker_ttl = Duration::from_secs(config.broker_ttl_secs.max(1));
        Self {
            home,
            config,
            share,
            search,
        }
    }
}

/// A running node.
pub struct Node {
    pub overlay: Overlay,
    pub share: Share,
    pub search: Search,
    api_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    home: Home,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("api", &self.api_addr)
            .finish_non_exhaustive()
    }
}

pub(crate) struct State {
    pub overlay: Overlay,
    pub share: Share,
    pub search: Search,
    pub has_broker: bool,
    pub token: String,
    pub registry: Registry,
}

impl Node {
    pub async fn start(opts: Options) -> Result<Self, NodeError> {
        let home = opts.home.clone();
        home.init()?;
        let keypair = home.keypair()?;
        let store = Arc::new(home.open_store()?);
        let token = home.token()?;
        let mut registry = Registry::default();
        let shutdown = CancellationToken::new();

        let mut ocfg = kith_overlay::Config::new(keypair.clone());
        ocfg.validator = Some(Arc::new(kith_search::names::NameValidator));
        ocfg.listen = parse_all(&opts.config.listen)?;
        ocfg.bootstrap = parse_all(&opts.config.bootstrap)?;
        ocfg.mdns = opts.config.mdns;
        ocfg.max_connections = opts.config.max_connections;
        ocfg.max_connections_per_peer = opts.config.max_connections_per_peer;
        let c = &opts.config;
        if c.relay.unwrap_or(c.serve_broker) {
            ocfg.relay = Some(kith_overlay::RelayLimits {
                max_reservations: c.relay_max_reservations.max(1),
                max_circuits: c.relay_max_circuits.max(1),
                max_circuit_duration: Duration::from_secs(c.relay_circuit_secs.max(1)),
                max_circuit_bytes: c.relay_circuit_bytes.max(1),
                ..kith_overlay::RelayLimits::default()
            });
        }
        // A broker is also a rendezvous point, and a relay unless told otherwise (peers
        // find that out through identify and use it once they know they are private).
        ocfg.rendezvous_server = c.serve_broker;
        ocfg.relays = parse_all(&c.relays)?;
        if let Some(b) = &c.broker {
            ocfg.rendezvous.push(kith_overlay::parse_addr(b)?);
        }
        ocfg.autonat_any_ip = c.autonat_private_ips;
        ocfg.external = parse_all(&c.announce)?;
        let (overlay, overlay_task) = Overlay::start(ocfg, &mut registry, shutdown.clone()).await?;

        let share = Share::start(
            opts.share.clone(),
            store.clone(),
            overlay.clone(),
            &mut registry,
            shutdown.clone(),
        )?;
        let mut scfg = opts.search.clone();
        if let Some(b) = &opts.config.broker {
            scfg.broker = Some(kith_overlay::parse_addr(b)?);
        }
        let search = Search::start(
            scfg,
            store.clone(),
            overlay.clone(),
            keypair,
            share.changes(),
            &mut registry,
            shutdown.clone(),
        )?;

        let listener = tokio::net::TcpListener::bind(&opts.config.api)
            .await
            .map_err(|e| NodeError::Api {
                addr: opts.config.api.clone(),
                reason: e.to_string(),
            })?;
        let api_addr = listener.local_addr().map_err(|e| NodeError::Api {
            addr: opts.config.api.clone(),
            reason: e.to_string(),
        })?;
        let state = Arc::new(State {
            overlay: overlay.clone(),
            share: share.clone(),
            search: search.clone(),
            has_broker: opts.config.broker.is_some() || opts.config.serve_broker,
            token,
            registry,
        });
        let router = api::router(state);
        let sd = shutdown.clone();
        let api_task = tokio::spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(async move { sd.cancelled().await })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "API server stopped");
            }
        });
        home.write_api_addr(api_addr)?;
        tracing::info!(peer = %overlay.peer_id(), api = %api_addr, "node running");
        Ok(Self {
            overlay,
            share,
            search,
            api_addr,
            shutdown,
            tasks: vec![overlay_task, api_task],
            home,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// A token that is cancelled when the node shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops everything and waits (bounded) for tasks to finish; the store is left
    /// consistent because every write is a committed transaction.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.share.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.search.stopped()).await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.home.remove_api_addr();
        tracing::info!("node stopped");
    }
}

fn parse_all(addrs: &[String]) -> Result<Vec<kith_overlay::Multiaddr>, OverlayError> {
    addrs.iter().map(|a| kith_overlay::parse_addr(a)).collect()
}
