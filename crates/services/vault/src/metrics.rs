//! The vault's metrics, registered as `kith_vault_…`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The vault's metrics. Counters and a gauge: each field is its own atomic.
#[derive(Default)]
pub(crate) struct Metrics {
    pub held: Gauge,
    pub served: Counter,
    pub refused: Counter,
    pub audits: Counter,
    pub audit_failures: Counter,
    pub repairs: Counter,
    pub uploaded: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("kith_vault");
        r.register("held_bytes", "Bytes held for others", self.held.clone());
        r.register(
            "shares_served",
            "Shares sent back to owners",
            self.served.clone(),
        );
        r.register(
            "refused_shares",
            "Shares this holder refused (no room, disk full, not matching their name)",
            self.refused.clone(),
        );
        r.register(
            "audits",
            "Audits of this node's shares",
            self.audits.clone(),
        );
        r.register(
            "audit_failures",
            "Audits a holder failed (lost or wrong data)",
            self.audit_failures.clone(),
        );
        r.register(
            "repairs",
            "Shares rebuilt and placed anew",
            self.repairs.clone(),
        );
        r.register(
            "uploaded_bytes",
            "Share bytes sent to holders",
            self.uploaded.clone(),
        );
    }
}
