//! kith node: assembles the overlay, the core store and the services into one running
//! peer, and serves the local HTTP API (`/api/v1`) that the CLI and other programs use.
//!
//! - [`Node`]: a running node, and the facade over its services: what spans services
//!   (get by name, search results as download hints, publish, the default search route)
//!   lives here, so a Rust program gets the same behaviour as the CLI.
//! - [`Options`], [`config::Config`] (`config.toml`), [`Home`] (the data directory).
//! - `api`: the HTTP API (axum): thin handlers over the facade, typed by `kith-api`, with
//!   its OpenAPI document generated from those types.

mod api;
mod cache;
mod compute;
pub mod config;
mod convert;
mod facade;
mod home;
mod known;
mod live;
pub mod logs;
mod people;
mod ui;
mod vault;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_cache::Cache;
use kith_compute::Compute;
use kith_core::tasks::{Fatal, Tasks};
use kith_groups::Groups;
use kith_names::Names;
use kith_overlay::{Overlay, OverlayError};
use kith_people::People;
use kith_search::Search;
use kith_share::Share;
use kith_vault::Vault;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use facade::Target;
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
    Share(#[from] kith_share::Error),
    #[error(transparent)]
    Search(#[from] kith_search::Error),
    #[error(transparent)]
    Names(#[from] kith_names::Error),
    #[error(transparent)]
    People(#[from] kith_people::Error),
    #[error(transparent)]
    Groups(#[from] kith_groups::Error),
    #[error(transparent)]
    Compute(#[from] kith_compute::Error),
    #[error(transparent)]
    Vault(#[from] kith_vault::Error),
    #[error(transparent)]
    Cache(#[from] kith_cache::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
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
    pub compute: kith_compute::Config,
    pub vault: kith_vault::Config,
    pub cache: kith_cache::Config,
}

impl Options {
    pub fn new(home: Home, config: Config) -> Self {
        let mut share = kith_share::Config::new(home.service_dir("share"));
        share.upload_limit = config.upload_limit;
        share.download_limit = config.download_limit;
        share.rescan = Duration::from_secs(config.rescan_secs.max(1));
        let compute = kith_compute::Config::new(home.service_dir("compute"));
        let mut vault = kith_vault::Config::new(home.service_dir("vault"));
        vault.offer = config.offer;
        vault.audit_every = Duration::from_secs(config.vault_audit_secs.max(1));
        vault.grace = Duration::from_secs(config.vault_grace_secs);
        let mut cache = kith_cache::Config::new(home.service_dir("cache"));
        cache.capacity = config.cache;
        cache.demand = config.cache_demand.max(1);
        let mut search = kith_search::Config::new(home.service_dir("search"));
        search.serve_broker = config.serve_broker;
        search.broker_ttl = Duration::from_secs(config.broker_ttl_secs.max(1));
        Self {
            home,
            config,
            share,
            search,
            compute,
            vault,
            cache,
        }
    }
}

pub(crate) struct Inner {
    pub overlay: Overlay,
    pub people: People,
    pub groups: Groups,
    pub share: Share,
    pub names: Names,
    pub search: Search,
    pub compute: Compute,
    pub vault: Vault,
    pub cache: Cache,
    pub registry: Registry,
    pub home: Home,
    pub token: String,
    shutdown: CancellationToken,
    fatal: Fatal,
    api_addr: SocketAddr,
    logins: ui::Logins,
    /// Wrong login codes and API tokens, per client address and in total.
    guesses: api::guesses::Guesses,
    /// Settings changed through the API that wait for a restart.
    on_restart: Mutex<std::collections::BTreeSet<String>>,
    /// Event streams (UI tabs) open.
    streams: Arc<tokio::sync::Semaphore>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("api", &self.inner.api_addr)
            .finish_non_exhaustive()
    }
}

fn parse_all(addrs: &[String]) -> Result<Vec<kith_overlay::Multiaddr>, OverlayError> {
    addrs.iter().map(|a| kith_overlay::parse_addr(a)).collect()
}

/// The overlay's configuration from the node's.
fn overlay_config(
    keypair: kith_overlay::Keypair,
    c: &Config,
) -> Result<kith_overlay::Config, OverlayError> {
    let mut o = kith_overlay::Config::new(keypair);
    o.listen = parse_all(&c.listen)?;
    o.bootstrap = parse_all(&c.bootstrap)?;
    o.mdns = c.mdns;
    o.max_connections = c.max_connections;
    o.max_connections_per_peer = c.max_connections_per_peer;
    if c.relay.unwrap_or(c.serve_broker) {
        o.relay = Some(kith_overlay::RelayLimits {
            max_reservations: c.relay_max_reservations.max(1),
            max_circuits: c.relay_max_circuits.max(1),
            max_circuit_duration: Duration::from_secs(c.relay_circuit_secs.max(1)),
            max_circuit_bytes: c.relay_circuit_bytes.max(1),
            ..kith_overlay::RelayLimits::default()
        });
    }
    // A broker is also a rendezvous point, and a relay unless told otherwise (peers find
    // that out through identify and use it once they know they are private).
    o.rendezvous_server = c.serve_broker;
    o.relays = parse_all(&c.relays)?;
    if let Some(b) = &c.broker {
        o.rendezvous.push(kith_overlay::parse_addr(b)?);
    }
    o.autonat_any_ip = c.autonat_private_ips;
    o.external = parse_all(&c.announce)?;
    Ok(o)
}

/// What the data dir gives a node: its key, its store (and where a damaged one went) and
/// its API token. Blocking: reads and creates files.
fn open_home(
    home: &Home,
) -> Result<
    (
        kith_overlay::Keypair,
        kith_core::store::Store,
        Option<std::path::PathBuf>,
        String,
    ),
    NodeError,
> {
    home.init()?;
    home.migrate_names_book();
    let keypair = home.keypair()?;
    let (store, damaged) = home.open_store()?;
    Ok((keypair, store, damaged, home.token()?))
}

/// The services, started in order: each gets the ones it builds on.
struct Services {
    overlay: Overlay,
    overlay_task: tokio::task::JoinHandle<()>,
    people: People,
    groups: Groups,
    share: Share,
    names: Names,
    search: Search,
    compute: Compute,
    vault: Vault,
    cache: Cache,
}

async fn start_services(
    opts: &Options,
    keypair: kith_overlay::Keypair,
    store: Arc<kith_core::store::Store>,
    registry: &mut Registry,
    shutdown: &CancellationToken,
    fatal: &Fatal,
) -> Result<Services, NodeError> {
    let tasks = |name| Tasks::new(name, shutdown.clone(), fatal.clone());
    let ocfg = overlay_config(keypair.clone(), &opts.config)?;
    let (overlay, actor) = Overlay::start(ocfg, registry, shutdown.clone()).await?;
    // The network actor is no service task, but a panic in it stops the node all the same.
    let f = fatal.clone();
    let overlay_task = tokio::spawn(async move {
        if let Err(e) = actor.await
            && e.is_panic()
        {
            f.report("internal error in the overlay: the network actor panicked".into());
        }
    });
    let people = People::start(
        kith_people::Config {
            dir: opts.home.service_dir("people"),
        },
        overlay.clone(),
        keypair.clone(),
        registry,
        tasks("people"),
    )
    .await?;
    let groups = Groups::start(
        kith_groups::Config {
            dir: opts.home.service_dir("groups"),
        },
        overlay.clone(),
        people.clone(),
        keypair.clone(),
        registry,
        tasks("groups"),
    )
    .await?;
    let share = Share::start(
        opts.share.clone(),
        store,
        overlay.clone(),
        groups.scopes(),
        registry,
        tasks("share"),
    )?;
    people::announce_on_key_change(&groups, &share, tasks("node"));
    known::tell_overlay(&overlay, &people, &groups, tasks("node"));
    let names_cfg = kith_names::Config {
        dir: opts.home.service_dir("names"),
    };
    let device_key = keypair.clone();
    let index_key = keypair.clone();
    let names = Names::start(
        names_cfg,
        overlay.clone(),
        keypair,
        registry,
        tasks("names"),
    )
    .await?;
    let mut scfg = opts.search.clone();
    scfg.keypair = Some(index_key);
    if let Some(b) = &opts.config.broker {
        scfg.broker = Some(kith_overlay::parse_addr(b)?);
    }
    let (o, sh, n) = (overlay.clone(), share.clone(), names.clone());
    let search = Search::start(scfg, o, sh, n, groups.scopes(), registry, tasks("search")).await?;
    let (o, sh, p) = (overlay.clone(), share.clone(), people.clone());
    let ccfg = opts.compute.clone();
    let compute = Compute::start(ccfg, o, sh, p, groups.scopes(), tasks("compute")).await?;
    // The vault's index opens with the person key where this device holds it.
    let signer = match people.person_key() {
        Ok(Some(k)) => k,
        _ => device_key,
    };
    let (o, p, vcfg) = (overlay.clone(), people.clone(), opts.vault.clone());
    let sc = groups.scopes();
    let vault = Vault::start(vcfg, o, p, sc, signer, registry, tasks("vault")).await?;
    let (o, sh) = (overlay.clone(), share.clone());
    let cache = Cache::start(opts.cache.clone(), o, sh, tasks("cache")).await?;
    Ok(Services {
        overlay,
        overlay_task,
        people,
        groups,
        share,
        names,
        search,
        compute,
        vault,
        cache,
    })
}

impl Node {
    /// Starts the overlay and the services, then serves the API.
    pub async fn start(opts: Options) -> Result<Self, NodeError> {
        let home = opts.home.clone();
        let h = home.clone();
        let (keypair, store, damaged, token) = tokio::task::spawn_blocking(move || open_home(&h))
            .await
            .map_err(|e| NodeError::BadRequest(format!("cannot open the data dir: {e}")))??;
        if let Some(aside) = damaged {
            tracing::warn!(moved_to = %aside.display(), "the metadata database was damaged and is set aside; shares are indexed again and downloads resume from what is verified on disk");
        }
        let mut registry = Registry::default();
        let shutdown = CancellationToken::new();
        let fatal = Fatal::default();
        // Whatever started stops again if the node does not come up.
        let stop_on_error = shutdown.clone().drop_guard();
        let s = start_services(
            &opts,
            keypair,
            Arc::new(store),
            &mut registry,
            &shutdown,
            &fatal,
        )
        .await?;
        let listener = api::bind(&opts.config.api, home.last_api_port()).await?;
        let api_addr = listener.local_addr().map_err(|e| NodeError::Api {
            addr: opts.config.api.clone(),
            reason: e.to_string(),
        })?;
        let node = Self {
            inner: Arc::new(Inner {
                overlay: s.overlay,
                people: s.people,
                groups: s.groups,
                share: s.share,
                names: s.names,
                search: s.search,
                compute: s.compute,
                vault: s.vault,
                cache: s.cache,
                registry,
                home: home.clone(),
                token,
                shutdown: shutdown.clone(),
                fatal,
                api_addr,
                logins: ui::Logins::default(),
                guesses: api::guesses::Guesses::default(),
                on_restart: Mutex::default(),
                streams: Arc::new(tokio::sync::Semaphore::new(api::ui::MAX_STREAMS)),
                tasks: Mutex::new(vec![s.overlay_task]),
            }),
        };
        let api_task = api::serve(node.clone(), listener, shutdown);
        kith_core::sync::recover(&node.inner.tasks).push(api_task);
        let (h, addr) = (home.clone(), api_addr);
        tokio::task::spawn_blocking(move || h.write_api_addr(addr))
            .await
            .map_err(|e| NodeError::BadRequest(e.to_string()))??;
        stop_on_error.disarm();
        tracing::info!(peer = %node.inner.overlay.peer_id(), api = %api_addr, "node running");
        Ok(node)
    }

    pub fn overlay(&self) -> &Overlay {
        &self.inner.overlay
    }

    pub fn share_service(&self) -> &Share {
        &self.inner.share
    }

    pub fn names_service(&self) -> &Names {
        &self.inner.names
    }

    pub fn search_service(&self) -> &Search {
        &self.inner.search
    }

    pub fn people_service(&self) -> &People {
        &self.inner.people
    }

    pub fn groups_service(&self) -> &Groups {
        &self.inner.groups
    }

    pub fn vault_service(&self) -> &Vault {
        &self.inner.vault
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.inner.api_addr
    }

    pub fn home(&self) -> &Home {
        &self.inner.home
    }

    /// A token that is cancelled when the node shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Resolves with the error when a service fails fatally (a panic in one of its
    /// tasks): the node must stop.
    pub async fn fatal(&self) -> String {
        self.inner.fatal.wait().await
    }

    /// Stops everything and waits (bounded) for tasks to finish; the store is left
    /// consistent because every write is a committed transaction.
    pub async fn shutdown(&self) {
        let i = &self.inner;
        i.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), i.share.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), i.search.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), i.compute.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), i.vault.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), i.cache.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), i.names.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), i.groups.stopped()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), i.people.stopped()).await;
        let tasks = std::mem::take(&mut *kith_core::sync::recover(&i.tasks));
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let home = i.home.clone();
        let _ = tokio::task::spawn_blocking(move || home.remove_api_addr()).await;
        tracing::info!("node stopped");
    }
}
