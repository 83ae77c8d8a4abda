//! The search service composed: each part owns its state (the catalogue, the word index,
//! the broker's directory and client, the askers and the server, query rates) and gets
//! only the other parts it needs; `Inner` holds them for the handle and starts them.

use std::sync::Arc;
use std::time::Duration;

use kith_core::scope::Scopes;
use kith_core::tasks::Tasks;
use kith_names::Names;
use kith_overlay::Overlay;
use kith_share::Share;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};

use crate::broker::{self, Directory};
use crate::catalog::Catalog;
use crate::client::Asker;
use crate::metrics::Metrics;
use crate::protocol::WireHit;
use crate::query::Query;
use crate::rate::{QueryRate, SeenQueries};
use crate::server::Server;
use crate::windex::WordIndex;
use crate::{Config, Error, Event, MAX_RESULTS, SearchResult, Via, WordIndexStatus, aggregate};

/// Hits waiting to be merged, and results waiting for the caller.
const CHANNEL: usize = 256;

pub(crate) struct Inner {
    overlay: Overlay,
    names: Names,
    scopes: Arc<dyn Scopes>,
    catalog: Arc<Catalog>,
    windex: WordIndex,
    asker: Arc<Asker>,
    broker: broker::client::Asker,
    directory: Option<Arc<Directory>>,
    /// Whether this node has a broker to ask (its own directory, or one it registers with).
    has_broker: bool,
    tasks: Tasks,
}

impl Inner {
    /// Opens the catalogue, builds every part and starts serving.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        share: Share,
        names: Names,
        scopes: Arc<dyn Scopes>,
        registry: &mut Registry,
        tasks: Tasks,
    ) -> Result<Arc<Self>, Error> {
        let metrics = Metrics::default();
        metrics.register(registry);
        let catalog = Arc::new(
            Catalog::open(
                config.dir.clone(),
                share,
                names.clone(),
                overlay.clone(),
                tasks.clone(),
            )
            .await?,
        );
        let directory = config
            .serve_broker
            .then(|| Directory::new(config.broker_ttl))
            .transpose()?
            .map(Arc::new);
        let rate = Arc::new(QueryRate::new(config.query_rate, config.query_burst));
        let seen = Arc::new(SeenQueries::default());
        let windex = WordIndex::new(overlay.clone(), metrics.clone());
        let asker = Arc::new(Asker::new(
            &config,
            overlay.clone(),
            scopes.clone(),
            metrics.clone(),
            seen.clone(),
            windex.clone(),
            tasks.clone(),
        ));
        let server = Server::new(
            catalog.clone(),
            asker.clone(),
            rate.clone(),
            seen,
            scopes.clone(),
            metrics.clone(),
        );
        server.start(&overlay, &tasks)?;
        let key = config.keypair.clone().map(|k| (k, config.index_republish));
        windex.start(overlay.clone(), rate, metrics, catalog.clone(), key, &tasks)?;
        let broker = broker::client::Asker::new(
            overlay.clone(),
            directory.clone(),
            config.broker.as_ref(),
            tasks.clone(),
        );
        broker::start(
            &overlay,
            &catalog,
            &tasks,
            directory.clone(),
            config.broker.clone(),
        )?;
        let inner = Arc::new(Self {
            overlay,
            names,
            scopes,
            catalog,
            windex,
            asker,
            broker,
            has_broker: config.broker.is_some() || directory.is_some(),
            directory,
            tasks,
        });
        inner.tasks.spawn(inner.catalog.clone().follow());
        Ok(inner)
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.catalog.events()
    }

    pub fn has_broker(&self) -> bool {
        self.has_broker
    }

    pub fn directory(&self) -> Option<Arc<Directory>> {
        self.directory.clone()
    }

    pub async fn word_index(&self) -> WordIndexStatus {
        self.windex.status().await
    }

    pub async fn stopped(&self) {
        self.tasks.stopped().await;
    }

    /// Searches the public catalogues `via` the broker and/or the network.
    pub fn search(
        self: &Arc<Self>,
        q: Query,
        via: Via,
        timeout: Duration,
        limit: usize,
    ) -> Result<mpsc::Receiver<SearchResult>, Error> {
        if matches!(via, Via::Broker) && !self.has_broker {
            return Err(Error::NoBroker);
        }
        let limit = limit.clamp(1, MAX_RESULTS);
        let (hits_tx, hits_rx) = mpsc::channel::<WireHit>(CHANNEL);
        let deadline = tokio::time::Instant::now() + timeout;
        // Sources: this node, then the broker and/or the network.
        for h in self.catalog.hits(&q, limit, None) {
            let _ = hits_tx.try_send(h);
        }
        if matches!(via, Via::Broker | Via::Both) {
            let (broker, q, htx) = (self.broker.clone(), q.clone(), hits_tx.clone());
            self.tasks.spawn(async move {
                let ask = broker.search(&q, limit, &htx);
                let _ = tokio::time::timeout_at(deadline, ask).await;
            });
        }
        if !matches!(via, Via::Broker) {
            let (asker, htx) = (self.asker.clone(), hits_tx.clone());
            self.tasks.spawn(async move {
                let ask = asker.search(&q, via, limit, &htx);
                let _ = tokio::time::timeout_at(deadline, ask).await;
            });
        }
        drop(hits_tx);
        Ok(self.merge(hits_rx, deadline, limit))
    }

    /// Searches what is shared with `group`, asking its members.
    pub fn search_group(
        self: &Arc<Self>,
        q: Query,
        group: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<mpsc::Receiver<SearchResult>, Error> {
        if !self.scopes.belongs(group) {
            return Err(Error::NotMember(group.chars().take(64).collect()));
        }
        let limit = limit.clamp(1, MAX_RESULTS);
        let (hits_tx, hits_rx) = mpsc::channel::<WireHit>(CHANNEL);
        let deadline = tokio::time::Instant::now() + timeout;
        for h in self.catalog.hits(&q, limit, Some(group)) {
            let _ = hits_tx.try_send(h);
        }
        let (asker, g) = (self.asker.clone(), group.to_owned());
        self.tasks.spawn(async move {
            let ask = asker.search_group(&q, &g, limit, &hits_tx);
            let _ = tokio::time::timeout_at(deadline, ask).await;
        });
        Ok(self.merge(hits_rx, deadline, limit))
    }

    /// Merges hits into results until `deadline`.
    fn merge(
        &self,
        hits: mpsc::Receiver<WireHit>,
        deadline: tokio::time::Instant,
        limit: usize,
    ) -> mpsc::Receiver<SearchResult> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let (overlay, names) = (self.overlay.clone(), self.names.clone());
        self.tasks.spawn(async move {
            aggregate::run(&overlay, &names, hits, tx, deadline, limit).await;
        });
        rx
    }
}
