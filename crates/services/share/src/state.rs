//! What the share service's tasks share: the store, rate limits, metrics, the downloads
//! running, providers hinted by searches, and the strikes against misbehaving providers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kith_core::ContentId;
use kith_core::id::Kind;
use kith_core::scope::Scopes;
use kith_core::store::{Store, StoreError};
use kith_core::tasks::Tasks;
use kith_overlay::{Overlay, PeerId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use crate::client::Client;
use crate::origins::Origins;
use crate::rate::RateLimit;
use crate::running::Running;
use crate::scoped::PrivateBlocks;
use crate::strikes::Strikes;
use crate::traffic::PeerTraffic;
use crate::{Config, Error, Event};

/// Most content IDs with provider hints kept.
const MAX_HINTS: usize = 4096;
/// Peers kept per hint.
const MAX_HINTED_PEERS: usize = 32;
/// How long a provider hint is used.
const HINT_TIME: Duration = Duration::from_secs(600);
/// Events buffered for each subscriber.
const EVENTS: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    pub blocks_served: Counter,
    pub chunks_fetched: Counter,
    pub bad_chunks: Counter,
    pub violations: Counter,
    pub downloads_done: Counter,
    pub downloads_active: Gauge,
}

impl Metrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("kith_share");
        let counters = [
            (
                "sent_bytes",
                "Content bytes sent to peers",
                &self.bytes_sent,
            ),
            (
                "received_bytes",
                "Verified content bytes received",
                &self.bytes_received,
            ),
            (
                "blocks_served",
                "Chunks and manifests served",
                &self.blocks_served,
            ),
            (
                "chunks_fetched",
                "Chunks fetched and verified",
                &self.chunks_fetched,
            ),
            (
                "bad_chunks",
                "Chunks that failed verification",
                &self.bad_chunks,
            ),
            (
                "provider_violations",
                "Providers caught breaking the protocol (framing, sizes, stalls)",
                &self.violations,
            ),
            (
                "downloads_completed",
                "Downloads completed",
                &self.downloads_done,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register(
            "downloads_active",
            "Downloads running",
            self.downloads_active.clone(),
        );
    }
}

/// A share as announced: its content, and the group it is shared with (none: public).
type Slot = (ContentId, Option<String>);

pub(crate) struct Inner {
    config: Config,
    store: Arc<Store>,
    overlay: Overlay,
    scopes: Arc<dyn Scopes>,
    /// Where content came from: what came in a group stays in it.
    origins: Origins,
    /// Blocks only group members may fetch, and their groups.
    private: PrivateBlocks,
    /// Content bytes sent to and received from each peer.
    traffic: PeerTraffic,
    /// The DHT key each share (content, and the group it is shared with) is announced
    /// under now.
    announced: Mutex<HashMap<Slot, Vec<u8>>>,
    upload_limit: RateLimit,
    /// The requesting side: streams to providers, the download rate limit.
    client: Client,
    metrics: Metrics,
    /// The downloads running, and paused ones.
    running: Running,
    strikes: Strikes,
    hints: Mutex<HashMap<ContentId, (Vec<PeerId>, Instant)>>,
    events: broadcast::Sender<Event>,
    tasks: Tasks,
}

impl Inner {
    pub fn new(
        config: Config,
        store: Arc<Store>,
        overlay: Overlay,
        scopes: Arc<dyn Scopes>,
        registry: &mut Registry,
        tasks: Tasks,
    ) -> Arc<Self> {
        let inner = Arc::new(Self {
            scopes,
            origins: Origins::load(&config.dir),
            private: PrivateBlocks::default(),
            traffic: PeerTraffic::default(),
            announced: Mutex::default(),
            upload_limit: RateLimit::new(config.upload_limit),
            client: Client::new(
                overlay.clone(),
                RateLimit::new(config.download_limit),
                config.stall_timeout,
            ),
            config,
            store,
            overlay,
            metrics: Metrics::default(),
            running: Running::default(),
            strikes: Strikes::default(),
            hints: Mutex::default(),
            events: broadcast::channel(EVENTS).0,
            tasks,
        });
        inner.metrics.register(registry);
        inner
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    pub fn scopes(&self) -> &Arc<dyn Scopes> {
        &self.scopes
    }

    /// Where content came from: what came in a group stays in it.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    pub fn upload_limit(&self) -> &RateLimit {
        &self.upload_limit
    }

    /// The requesting side: streams to providers, the download rate limit.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The downloads running, and paused ones.
    pub fn running(&self) -> &Running {
        &self.running
    }

    /// Providers shunned across downloads.
    pub fn strikes(&self) -> &Strikes {
        &self.strikes
    }

    pub fn events(&self) -> &broadcast::Sender<Event> {
        &self.events
    }

    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Content bytes sent to and received from each peer.
    pub fn traffic(&self) -> &PeerTraffic {
        &self.traffic
    }

    /// A block (manifest or chunk) from the local store, verified. Runs on the blocking
    /// pool since it reads files and hashes.
    pub async fn load_block(&self, id: ContentId) -> Result<Option<Vec<u8>>, Error> {
        let store = self.store.clone();
        let r: Result<Option<Vec<u8>>, StoreError> = self
            .tasks
            .blocking(move || match id.kind() {
                Kind::Manifest => store.block(&id),
                Kind::Raw => store.read_chunk(id.hash()),
            })
            .await?;
        Ok(r?)
    }

    /// Applies store writes on the blocking pool.
    pub async fn apply(&self, ops: Vec<kith_core::store::Op>) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        Ok(self.tasks.blocking(move || store.apply(ops)).await??)
    }

    /// Peers said to have `id` (by a search), tried before the DHT.
    pub fn hinted(&self, id: &ContentId) -> Vec<PeerId> {
        kith_core::sync::recover(&self.hints)
            .get(id)
            .filter(|(_, t)| t.elapsed() < HINT_TIME)
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
    }

    pub fn hint(&self, id: ContentId, peers: Vec<PeerId>) {
        let mut h = kith_core::sync::recover(&self.hints);
        if h.len() >= MAX_HINTS {
            h.retain(|_, (_, t)| t.elapsed() < HINT_TIME);
            if h.len() >= MAX_HINTS {
                h.clear();
            }
        }
        let e = h.entry(id).or_insert_with(|| (Vec::new(), Instant::now()));
        e.1 = Instant::now();
        for p in peers.into_iter().take(MAX_HINTED_PEERS) {
            if !e.0.contains(&p) && e.0.len() < MAX_HINTED_PEERS {
                e.0.push(p);
            }
        }
    }

    /// The set of shared content changed: the journal is written again, the blocks only
    /// group members may fetch are worked out again, and services are told.
    pub async fn changed(self: &Arc<Self>) {
        self.save_journal().await;
        let inner = self.clone();
        match self
            .tasks
            .blocking(move || crate::scoped::private_blocks(&inner.store, &inner.origins))
            .await
        {
            Ok(Ok(p)) => self.private.set(p),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot work out which blocks are a group's"),
            Err(_) => {}
        }
        let _ = self.events.send(Event::SharesChanged);
    }

    /// Every block under `root` that is here is the group's until the next
    /// [`Inner::changed`] works the private blocks out again (a download of the group's
    /// content that has not finished).
    pub async fn hold_private(self: &Arc<Self>, root: ContentId, group: String) {
        if self.is_public_share(&root) {
            return;
        }
        let inner = self.clone();
        let blocks = self
            .tasks
            .blocking(move || {
                let mut out = std::collections::HashSet::new();
                crate::scoped::blocks_of(&inner.store, &root, &mut out).map(|()| out)
            })
            .await;
        let Ok(Ok(blocks)) = blocks else { return };
        self.private.hold(blocks, &group);
    }

    /// Whether `id` is content only a group's members may see.
    pub fn is_private(&self, id: &ContentId) -> bool {
        self.private.groups_of(id.hash()).is_some()
    }

    /// Whether `peer` may fetch block `id`: public content, or a group's content and the
    /// peer is one of that group's members' devices. (Otherwise the answer is "not
    /// found", the same as for content that does not exist.)
    pub fn may_serve(&self, peer: &kith_overlay::PeerId, id: &ContentId) -> bool {
        match self.private.groups_of(id.hash()) {
            None => true,
            Some(scopes) => scopes.iter().any(|s| self.scopes.may_fetch(peer, s)),
        }
    }

    /// Announces a share: under its content ID, or for a group's content under the
    /// group's locator (replacing the one it had).
    pub async fn announce(&self, id: ContentId, scope: Option<&str>) {
        let key = match scope {
            None => Some(id.dht_key()),
            Some(s) => self.scopes.locator(s, &id.dht_key()),
        };
        let (old, others) = {
            let mut a = kith_core::sync::recover(&self.announced);
            let slot = (id, scope.map(str::to_owned));
            // One share per content ID: shared again with another group (or publicly),
            // it is no longer announced where it was.
            let others: Vec<Vec<u8>> = a
                .iter()
                .filter(|((i, s), _)| *i == id && s.as_deref() != scope)
                .map(|(_, k)| k.clone())
                .collect();
            a.retain(|(i, s), _| *i != id || s.as_deref() == scope);
            let old = match &key {
                Some(k) => a.insert(slot, k.clone()),
                None => a.remove(&slot),
            };
            (old, others)
        };
        for o in others {
            let _ = self.overlay.stop_providing(o).await;
        }
        if old.is_some() && old == key {
            return;
        }
        if let Some(o) = old {
            let _ = self.overlay.stop_providing(o).await;
        }
        if let Some(k) = key {
            let _ = self.overlay.start_providing(k).await;
        }
    }

    /// Whether `id` is a share of this node announced publicly.
    pub fn is_public_share(&self, id: &ContentId) -> bool {
        kith_core::sync::recover(&self.announced).contains_key(&(*id, None))
    }

    /// Stops announcing a share.
    pub async fn withdraw(&self, id: ContentId, scope: Option<&str>) {
        let slot = (id, scope.map(str::to_owned));
        let old = kith_core::sync::recover(&self.announced).remove(&slot);
        if let Some(k) = old {
            let _ = self.overlay.stop_providing(k).await;
        }
    }

    /// Writes the journal (what to rebuild from if the store is lost).
    pub async fn save_journal(&self) {
        let store = self.store.clone();
        let dir = self.config.dir.clone();
        match self
            .tasks
            .blocking(move || crate::journal::save(&store, &dir))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the share journal"),
            Err(_) => {}
        }
    }
}
