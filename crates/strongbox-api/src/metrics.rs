//! The server's Prometheus metrics (prometheus-client, as the edge agent uses): requests by
//! plane, operation and status with latency histograms, the audit writer's queue and commit
//! latency, store pool use, tokens issued and refused, waiting change-feed polls, throttled
//! requests, live vaults and secrets, and build info. Served by the server on its own listener
//! (loopback by default), never on the public port unless asked.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub plane: &'static str,
    pub operation: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub plane: &'static str,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The data-plane operation of a response (the vault host has no route templates), set by the
/// handler for the request metrics.
#[derive(Clone, Copy, Debug)]
pub struct OperationName(pub &'static str);

/// Grants named as themselves in the token metrics (anything else is `other`, so a client
/// cannot grow the label set).
pub const GRANTS: &[&str] = &[
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
];

/// Live vault and secret counts are read from the store at most this often.
const COUNTS_MAX_AGE: Duration = Duration::from_secs(15);

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OperationLabels, Histogram>,
    audit_queue_depth: Gauge,
    audit_commit_duration: Histogram,
    audit_records: Counter,
    store_connections: Family<StateLabels, Gauge>,
    pub tokens_issued: Family<GrantLabels, Counter>,
    pub tokens_refused: Family<ErrorLabels, Counter>,
    change_feed_waiting: Gauge,
    pub throttled: Family<LimitLabels, Counter>,
    vaults: Gauge,
    secrets: Gauge,
    counts_read: Mutex<Option<Instant>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        // 0.5 ms .. ~16 s.
        let latency = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let m = Metrics {
            registry: Registry::with_prefix("strongbox"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency),
            audit_queue_depth: Gauge::default(),
            audit_commit_duration: latency(),
            audit_records: Counter::default(),
            store_connections: Family::default(),
            tokens_issued: Family::default(),
            tokens_refused: Family::default(),
            change_feed_waiting: Gauge::default(),
            throttled: Family::default(),
            vaults: Gauge::default(),
            secrets: Gauge::default(),
            counts_read: Mutex::new(None),
        };
        m.register()
    }
}

impl Metrics {
    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "requests",
            "Requests answered, by plane (vault, management, graph, token, msi), operation and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer (audit record durable included)",
            self.request_duration.clone(),
        );
        r.register(
            "audit_queue_depth",
            "Audit records waiting for their group commit",
            self.audit_queue_depth.clone(),
        );
        r.register(
            "audit_commit_duration_seconds",
            "Duration of one group commit of audit records (fsync included)",
            self.audit_commit_duration.clone(),
        );
        r.register(
            "audit_records",
            "Audit records committed by the audit writer (reads and refusals; a write's record commits in the write's own transaction)",
            self.audit_records.clone(),
        );
        r.register(
            "store_connections",
            "Connections of the store's pools, by state (open, idle)",
            self.store_connections.clone(),
        );
        r.register(
            "tokens_issued",
            "Access tokens issued, by grant",
            self.tokens_issued.clone(),
        );
        r.register(
            "tokens_refused",
            "Token requests refused, by OAuth error",
            self.tokens_refused.clone(),
        );
        r.register(
            "change_feed_waiting_polls",
            "Change-feed long polls waiting on this server",
            self.change_feed_waiting.clone(),
        );
        r.register(
            "throttled_requests",
            "Requests refused by a configured limit (vault, token)",
            self.throttled.clone(),
        );
        r.register("vaults", "Live vaults", self.vaults.clone());
        r.register(
            "secrets",
            "Live secrets (not soft-deleted)",
            self.secrets.clone(),
        );
        // Known label values start at zero, so a rate is defined before the first event.
        for limit in ["vault", "token"] {
            let _ = self.throttled.get_or_create(&LimitLabels { limit });
        }
        for grant in GRANTS {
            let _ = self.tokens_issued.get_or_create(&GrantLabels {
                grant: grant.to_string(),
            });
        }
        for error in [
            "invalid_request",
            "invalid_client",
            "invalid_scope",
            "invalid_grant",
        ] {
            let _ = self.tokens_refused.get_or_create(&ErrorLabels {
                error: error.to_string(),
            });
        }
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The running build (always 1)", build);
        self
    }

    /// A group commit of the audit writer (its observer).
    pub fn audit_committed(&self, records: usize, took: Duration) {
        self.audit_commit_duration.observe(took.as_secs_f64());
        self.audit_records.inc_by(records as u64);
    }

    /// Reads what is sampled rather than counted, then renders the text exposition.
    pub async fn render(&self, app: &AppState) -> String {
        self.audit_queue_depth.set(app.audit.queue_depth() as i64);
        self.change_feed_waiting
            .set(app.secrets.change_notifier().waiting() as i64);
        let pools = app.store.pool_usage();
        self.store_connections
            .get_or_create(&StateLabels { state: "open" })
            .set(i64::from(pools.open));
        self.store_connections
            .get_or_create(&StateLabels { state: "idle" })
            .set(i64::from(pools.idle));
        let due = self
            .counts_read
            .lock()
            .expect("counts lock")
            .is_none_or(|t| t.elapsed() >= COUNTS_MAX_AGE);
        if due {
            match app.store.count_live().await {
                Ok(c) => {
                    self.vaults.set(c.vaults as i64);
                    self.secrets.set(c.secrets as i64);
                    *self.counts_read.lock().expect("counts lock") = Some(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "metrics: counting vaults and secrets failed"),
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// The plane a routed request belongs to, by its route template.
fn plane(template: &str) -> &'static str {
    if template.contains("/oauth2/")
        || template.contains("/discovery/")
        || template.contains("openid")
    {
        "token"
    } else if template.starts_with("/graph/") {
        "graph"
    } else if template.starts_with("/metadata/identity") || template.starts_with("/msi") {
        "msi"
    } else if template == "/healthz" || template == "/readyz" {
        "health"
    } else {
        "management"
    }
}

/// Counts and times every request: routed ones by their route template (bounded), the vault
/// host's by the operation its handler names.
pub async fn track(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    let (plane, operation) = match template {
        Some(t) => (plane(&t), t),
        None => (
            "vault",
            response
                .extensions()
                .get::<OperationName>()
                .map_or("Unknown", |o| o.0)
                .to_string(),
        ),
    };
    let m = &app.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            plane,
            operation: operation.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    m.request_duration
        .get_or_create(&OperationLabels { plane, operation })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The metrics listener's routes: `/metrics` (Prometheus text) and the health probes.
pub fn router(state: Arc<AppState>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/metrics", get(exposition))
        .route("/readyz", get(crate::token_routes::ready))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn exposition(State(app): State<Arc<AppState>>) -> Response {
    use axum::response::IntoResponse;
    let body = app.metrics.render(&app).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
