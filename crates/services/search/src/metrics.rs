//! The search service's metrics, registered under `kith_search_…`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters shared by the parts that serve and send queries (cheap to clone: each
/// counter is shared).
#[derive(Debug, Default, Clone)]
pub(crate) struct Metrics {
    queries_served: Counter,
    queries_refused: Counter,
    messages_sent: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("kith_search");
        r.register(
            "queries_served",
            "Queries answered for peers",
            self.queries_served.clone(),
        );
        r.register(
            "queries_refused",
            "Queries refused (rate limit, malformed, duplicate)",
            self.queries_refused.clone(),
        );
        r.register(
            "messages_sent",
            "Query messages sent to peers",
            self.messages_sent.clone(),
        );
    }

    /// A peer's query was answered.
    pub fn served(&self) {
        self.queries_served.inc();
    }

    /// A peer's query was refused.
    pub fn refused(&self) {
        self.queries_refused.inc();
    }

    /// A query message went out to a peer.
    pub fn sent(&self) {
        self.messages_sent.inc();
    }
}
