//! The distributed word index (`/kith/windex/1.0.0`, see `docs/protocols/search.md`).
//!
//! Every word of a public file name has a place in the DHT: the K (20) nodes closest to
//! the word's key. A node that shares files whose names hold the word stores one signed
//! record there — its names that contain the word, with their content IDs — at the
//! [`REPLICAS`] nodes of those K that rank highest for it (rendezvous hashing), so a
//! word's holders are spread over all K nodes and a popular word is split twenty ways
//! instead of filling one node. A query goes, for each of its words, to the K nodes of
//! the word; each answers with the records of holders that have a name matching the whole
//! query. The querier checks every record's signature and the names itself, so a storage
//! node can leave things out but cannot make anything up.
//!
//! Bounds: a record holds at most [`record::MAX_ENTRIES`] names; a node keeps at most
//! [`store::MAX_HOLDERS_PER_WORD`] holders per word, [`store::MAX_WORDS_PER_HOLDER`]
//! words per holder and [`store::MAX_BYTES`] in all; a holder whose record is refused as
//! "full" places it at its next-ranked node. Records expire ([`record::TTL_SECS`]) and are
//! published again well before ([`republish`]).

//!
//! - `protocol`: requests, answers and limits; `record`: the signed record.
//! - `store`: what this node keeps for others ([`store::Held`]).
//! - `client`: asking a word's nodes; `server`: answering; `publish`: placing this node's
//!   words and where they went.

pub(crate) mod client;
pub mod protocol;
pub(crate) mod publish;
pub mod record;
pub(crate) mod server;
pub(crate) mod store;

use std::sync::Arc;
use std::time::Duration;

use kith_core::tasks::Tasks;
use kith_overlay::{Keypair, Overlay};
use tokio::sync::mpsc;

pub use protocol::{INDEX_PROTOCOL, word_key};
pub use publish::{REPLICAS, rank, republish};

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::protocol::WireHit;
use crate::query::Query;
use crate::rate::QueryRate;
use crate::{Error, WordIndexStatus};

/// This node's part of the word index: what it keeps for others, where its own words
/// went, and the client that asks other nodes. Cheap to clone.
#[derive(Clone)]
pub(crate) struct WordIndex {
    client: client::Client,
    held: Arc<store::Held>,
    placements: Arc<publish::Placements>,
}

impl WordIndex {
    pub fn new(overlay: Overlay, metrics: Metrics) -> Self {
        let held = Arc::new(store::Held::default());
        Self {
            client: client::Client::new(overlay, held.clone(), metrics),
            held,
            placements: Arc::default(),
        }
    }

    /// Serves the protocol, and publishes this node's words (signed with `key`; with no
    /// key it publishes none) on catalogue changes and every `interval`.
    pub fn start(
        &self,
        overlay: Overlay,
        rate: Arc<QueryRate>,
        metrics: Metrics,
        catalog: Arc<Catalog>,
        key: Option<(Keypair, Duration)>,
        tasks: &Tasks,
    ) -> Result<(), Error> {
        server::Server::new(self.held.clone(), overlay, rate, metrics).start(tasks)?;
        if let Some((key, interval)) = key {
            let publisher = publish::Publisher::new(
                catalog,
                self.client.clone(),
                self.held.clone(),
                self.placements.clone(),
                key,
                interval,
                tasks.clone(),
            );
            tasks.spawn(publisher.run());
        }
        Ok(())
    }

    /// Searches the index for `q` (its `words`); matching names go to `tx` as hits of
    /// their holders. Returns how many hits were sent.
    pub async fn search(&self, q: &Query, words: &[String], tx: &mpsc::Sender<WireHit>) -> usize {
        self.client.search(q, words, tx).await
    }

    /// This node's part in the index.
    pub async fn status(&self) -> WordIndexStatus {
        let (published, unplaced) = self.placements.published().await;
        let (records, bytes) = self.held.size().unwrap_or_default();
        WordIndexStatus {
            published,
            unplaced,
            records,
            bytes,
        }
    }
}
