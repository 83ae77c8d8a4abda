//! kith search service: find content across peers, with a broker (a directory, as in
//! Napster) and without one (keyword routing through the DHT, with Gnutella-style flooding
//! as the fallback); results that are revisions of a name are marked when outdated.
//!
//! - [`Search`]: the service handle (search, refresh, the local catalogue).
//! - [`Config`], [`Error`], [`Event`], [`Via`], [`SearchResult`].
//! - [`protocol`]: the `/kith/search/1.0.0` and `/kith/broker/1.0.0` wire formats.
//! - `server`: answers peers' queries; `client`: asks peers (routing, flooding, groups).
//! - [`broker`]: the directory a broker keeps (`directory`), its server, and the client
//!   that registers with one and asks it.
//! - [`windex`]: the distributed word index (its records, store, client, server, publisher).
//! - [`index::CatalogIndex`]: the full-text catalogue index (tantivy), local and broker.
//! - [`query`]: the query language and its limits.
//! - `catalog`: this node's catalogue, from share's public API and the names known; it
//!   owns the local index and the keywords announced, and sends [`Event`]s.
//! - `rate`: per-peer query rates and the query IDs seen; `metrics`: `kith_search_…`.
//! - `aggregate`: merges hits into results.
//! - `state`: the parts composed: each owns its state and gets only the parts it needs.

mod aggregate;
pub mod broker;
mod catalog;
mod client;
pub mod index;
mod metrics;
pub mod protocol;
pub mod query;
mod rate;
mod server;
mod state;
pub mod windex;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_core::tasks::{TaskError, Tasks};
use kith_names::Names;
use kith_overlay::{Multiaddr, Overlay};
use kith_share::Share;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use query::Query;
use state::Inner;

/// Most keywords a node announces in the DHT.
pub const MAX_KEYWORDS: usize = 4096;
/// Most results a search returns.
pub const MAX_RESULTS: usize = 500;
/// Prefix of DHT keys under which nodes announce the words of their file names.
pub const KEYWORD_PREFIX: &str = "/kith/kw/";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("protocol: {0}")]
    Protocol(#[from] protocol::WireError),
    #[error("cannot encode an answer: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the peer sent no request in time")]
    Silent,
    #[error("{entries} entries; at most {max} per peer")]
    TooManyEntries { entries: usize, max: usize },
    #[error("the broker is full")]
    BrokerFull,
    #[error("the broker refused: {0}")]
    BrokerRefused(String),
    #[error("the broker did not answer in time")]
    BrokerTimeout,
    #[error("the broker closed the stream")]
    BrokerClosed,
    #[error("this device is not in group {0}")]
    NotMember(String),
    #[error("no broker configured (start the node with --broker MULTIADDR)")]
    NoBroker,
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("share: {0}")]
    Share(#[from] kith_share::Error),
    #[error("names: {0}")]
    Names(#[from] kith_names::Error),
    #[error("network: {0}")]
    Overlay(#[from] kith_overlay::OverlayError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Poisoned(#[from] kith_core::sync::Poisoned),
}

impl Error {
    pub(crate) fn stopped() -> Self {
        Error::Task(TaskError::Stopped("search"))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the local index lives.
    pub dir: PathBuf,
    /// A broker to register this node's catalogue with.
    pub broker: Option<Multiaddr>,
    /// Serve as a broker (directory) for other peers.
    pub serve_broker: bool,
    /// How long a broker keeps a peer's entries without a heartbeat.
    pub broker_ttl: Duration,
    /// Hops a flooded query travels.
    pub flood_ttl: u8,
    /// Queries per second a peer may send us (sustained), and the burst.
    pub query_rate: f64,
    pub query_burst: f64,
    /// Neighbours a flooded query is forwarded to at each hop.
    pub flood_fanout: usize,
    /// The node's key, to sign its word index records (none: it publishes no words).
    pub keypair: Option<kith_overlay::Keypair>,
    /// How often every word is published to the word index again (records live 2 h).
    pub index_republish: Duration,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            broker: None,
            serve_broker: false,
            broker_ttl: Duration::from_secs(60),
            flood_ttl: 4,
            query_rate: 5.0,
            query_burst: 20.0,
            flood_fanout: 8,
            keypair: None,
            index_republish: Duration::from_secs(30 * 60),
        }
    }
}

/// This node's part in the word index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordIndexStatus {
    /// Words of this node's names it published.
    pub published: usize,
    /// Of those, words no node took (no peers known yet, or all full).
    pub unplaced: usize,
    /// Records this node keeps for others, and their bytes.
    pub records: usize,
    pub bytes: usize,
}

/// Something the search service did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The local catalogue (and the index, and what is announced) changed.
    CatalogueChanged { entries: usize },
}

/// Which way a search travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Ask the broker this node registered with.
    Broker,
    /// No broker: keyword routing through the DHT, flooding when no word can be routed.
    Network,
    /// Both of the above.
    Both,
    /// Only flooding (the Gnutella baseline).
    Flood,
    /// Only the distributed word index (no keyword routing, no flooding).
    Index,
}

impl std::str::FromStr for Via {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "broker" => Ok(Via::Broker),
            "network" => Ok(Via::Network),
            "both" => Ok(Via::Both),
            "flood" => Ok(Via::Flood),
            "index" => Ok(Via::Index),
            _ => Err(Error::BadQuery(format!(
                "--via must be broker, network, both, flood or index, not {:?}",
                s.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// One search result: a content ID and the peers that have it. A result is sent again
/// when more peers answer for it or it turns out to be an outdated revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResult {
    pub id: String,
    pub name: String,
    pub path: String,
    pub size: u64,
    /// `file` or `dir`.
    pub kind: String,
    /// Peers that have it (that answered, or that the broker lists as online).
    pub providers: Vec<String>,
    /// Relevance (the best score any answer gave).
    pub score: f32,
    /// For a revision of a named document: the name (`PEER_ID/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// For a revision of a name: whether a newer revision is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdated: Option<bool>,
}

impl SearchResult {
    /// Ranking: relevance, then how many peers have it.
    pub fn rank(&self) -> f32 {
        self.score * (1.0 + (self.providers.len() as f32).ln())
    }
}

/// Orders results best first (outdated revisions last).
pub fn sort_results(v: &mut [SearchResult]) {
    v.sort_by(|a, b| {
        let oa = a.outdated.unwrap_or(false);
        let ob = b.outdated.unwrap_or(false);
        oa.cmp(&ob)
            .then(b.rank().total_cmp(&a.rank()))
            .then(a.id.cmp(&b.id))
    });
}

/// The search service handle. Cheap to clone.
#[derive(Clone)]
pub struct Search {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search").finish_non_exhaustive()
    }
}

pub(crate) fn keyword_key(word: &str) -> Vec<u8> {
    format!("{KEYWORD_PREFIX}{word}").into_bytes()
}

impl Search {
    /// Opens the local index, starts answering queries (and serving as a broker when asked
    /// to), registers with the configured broker and keeps the index in step with what
    /// `share` shares and the names `names` knows.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        share: Share,
        names: Names,
        scopes: Arc<dyn kith_core::scope::Scopes>,
        registry: &mut Registry,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let inner = Inner::start(config, overlay, share, names, scopes, registry, tasks).await?;
        Ok(Self { inner })
    }

    /// Brings the local index, the keyword announcements and the broker registration in
    /// step with what this node shares.
    pub async fn refresh(&self) -> Result<(), Error> {
        self.inner.catalog().refresh().await
    }

    /// This node's part in the word index.
    pub async fn word_index(&self) -> WordIndexStatus {
        self.inner.word_index().await
    }

    /// Entries in the local catalogue.
    pub fn catalogue(&self) -> Result<Vec<protocol::Entry>, Error> {
        self.inner.catalog().public()
    }

    /// Events from now on.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events()
    }

    /// Whether this node has a broker to ask (its own directory, or one it registers with).
    pub fn has_broker(&self) -> bool {
        self.inner.has_broker()
    }

    /// Searches: the public catalogues, or with `group` only what is shared with that
    /// group (asking its members; `via` does not apply). Results stream in as peers
    /// answer; the channel closes when every source answered or `timeout` passed.
    pub fn search(
        &self,
        text: &str,
        via: Via,
        group: Option<&str>,
        timeout: Duration,
        limit: usize,
    ) -> Result<mpsc::Receiver<SearchResult>, Error> {
        let q = Query::parse(text)?;
        match group {
            Some(g) => self.inner.search_group(q, g, timeout, limit),
            None => self.inner.search(q, via, timeout, limit),
        }
    }

    /// The broker directory, when this node serves as a broker.
    pub fn directory(&self) -> Option<Arc<broker::Directory>> {
        self.inner.directory()
    }

    /// Waits for the service's tasks after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.stopped().await;
    }
}
