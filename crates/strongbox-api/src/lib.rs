//! HTTP: the Azure Key Vault secrets data plane (vault chosen by Host) and the token service.
//! Handlers are thin: they translate HTTP to domain calls and domain errors to the AKV error
//! shape, and make sure every data-plane request leaves exactly one audit record.

mod data_plane;
mod errors;
pub mod management;
pub mod metrics;
mod msi;
mod signin_pages;
mod throttle;
mod token_routes;

pub use throttle::{Throttle, ThrottleLimits};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use std::sync::Arc;
use strongbox_domain::audit::AuditWriter;
use strongbox_domain::secrets::SecretService;
use strongbox_identity::TokenService;
use strongbox_store::Store;

/// Whether a JSON text is an object. Every request body of both APIs is one; serde would take an
/// array as a struct's fields in order (`[]` becoming an empty update), so callers refuse the rest
/// before parsing.
pub(crate) fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Largest request body accepted (a restore blob of a secret with many versions).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// api-version values the Azure SDKs send. Date-style versions from 2025 on (and their
/// `-preview` forms) are accepted too: the secrets shapes are stable across them, and a newer SDK
/// (the Rust crate's beta sends `2026-03-01-preview`) should not break on a version string.
pub const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "2026-04-01",
];

pub fn api_version_supported(v: &str) -> bool {
    if API_VERSIONS.contains(&v) {
        return true;
    }
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let parts: Vec<&str> = date.split('-').collect();
    let number = |p: &str, len: usize, range: std::ops::RangeInclusive<u32>| {
        p.len() == len
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| range.contains(&n))
    };
    matches!(parts.as_slice(), [y, m, d] if number(y, 4, 2025..=9999) && number(m, 2, 1..=12) && number(d, 2, 1..=31))
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<SecretService>,
    pub tokens: Arc<TokenService>,
    pub audit: AuditWriter,
    /// Vault hosts are `{vault}.{dns_suffix}`.
    pub dns_suffix: String,
    pub clock: Arc<dyn strongbox_domain::Clock>,
    /// Present when the server runs with `--dev-clock`: tests may move time forward.
    pub dev_clock: Option<Arc<strongbox_domain::OffsetClock>>,
    /// Storage accounts (audit file destinations) are directories inside this one.
    pub storage_root: std::path::PathBuf,
    /// The CA certificate (PEM) clients trust for this server, handed to activated devices.
    pub ca_pem: String,
    /// Optional request limits (off unless configured).
    pub throttle: Throttle,
    /// What `/metrics` shows; the request counters are fed by [`metrics::track`].
    pub metrics: Arc<metrics::Metrics>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(token_routes::routes())
        .merge(signin_pages::routes())
        .merge(management::routes())
        .merge(msi::routes())
        .fallback(data_plane::handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(add_service_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Azure's response headers: a request id, the service version, no caching, and the client's
/// `x-ms-client-request-id` echoed back when it is a plain token (never anything longer or odd).
async fn add_service_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let client_request_id = request
        .headers()
        .get("x-ms-client-request-id")
        .filter(|v| {
            v.len() <= 64
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
        .cloned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(id) = client_request_id {
        headers.insert(HeaderName::from_static("x-ms-client-request-id"), id);
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert(HeaderName::from_static("x-ms-request-id"), v);
    }
    headers.insert(
        HeaderName::from_static("x-ms-keyvault-service-version"),
        HeaderValue::from_static(concat!("strongbox/", env!("CARGO_PKG_VERSION"))),
    );
    if !headers.contains_key(axum::http::header::CACHE_CONTROL) {
        headers.insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_versions_known_and_date_style_are_accepted() {
        use super::api_version_supported as ok;
        assert!(ok("7.6") && ok("2026-04-01") && ok("2026-03-01-preview") && ok("2027-01-15"));
        assert!(
            !ok("1.0")
                && !ok("2019-01-01")
                && !ok("2026-13-01")
                && !ok("latest")
                && !ok("2026-03-01-beta")
        );
    }
}
