//! The agent's Prometheus metrics (`GET /metrics` on its loopback port): how fast vault changes
//! reach the edge, what fails, and how old the edge's view may be.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    pub state: String,
}

pub struct Metrics {
    registry: Registry,
    /// Vault commit (the change feed's time) to target written.
    pub sync_latency: Histogram,
    pub sync_failures: Family<Reason, Counter>,
    pub vault_requests: Family<Status, Counter>,
    pub target_writes: Counter,
    /// Seconds since the oldest cached value was last confirmed by the vault.
    pub cache_age: Gauge<f64, AtomicU64>,
    /// Seconds the uplink has been failing (0 when it works).
    pub stale_seconds: Gauge<f64, AtomicU64>,
    pub synced_secrets: Family<State, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("strongbox_agent");
        // 1 ms .. ~33 s: feed propagation sits at the low end, poll fallback at the high end.
        let sync_latency = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16),
        );
        let m = Metrics {
            sync_latency,
            sync_failures: Family::default(),
            vault_requests: Family::default(),
            target_writes: Counter::default(),
            cache_age: Gauge::default(),
            stale_seconds: Gauge::default(),
            synced_secrets: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sync_latency_seconds",
            "Time from a vault change being committed to the edge target being written",
            m.sync_latency.clone(),
        );
        registry.register(
            "sync_failures",
            "Failed syncs by reason",
            m.sync_failures.clone(),
        );
        registry.register(
            "vault_requests",
            "Requests to the vault by HTTP status (0: unreachable)",
            m.vault_requests.clone(),
        );
        registry.register(
            "target_writes",
            "Targets written because their content changed",
            m.target_writes.clone(),
        );
        registry.register(
            "cache_age_seconds",
            "Seconds since the oldest cached secret was last confirmed by the vault",
            m.cache_age.clone(),
        );
        registry.register(
            "stale_seconds",
            "Seconds the vault has been unreachable (0 when reachable)",
            m.stale_seconds.clone(),
        );
        registry.register(
            "synced_secrets",
            "Synced secrets by status",
            m.synced_secrets.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}
