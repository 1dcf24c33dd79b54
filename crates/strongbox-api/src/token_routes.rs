//! The token service endpoints MSAL and azure-identity use: OpenID discovery, JWKS, and the
//! OAuth2 v2.0 token endpoint, all under `/{tenant}`.

use crate::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use strongbox_types::token::OAuthError;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/_dev/clock", post(advance_clock))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode))
}

fn parse_form(body: &Bytes) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_bytes::<HashMap<String, String>>(body).ok()
}

fn not_a_form() -> Response {
    oauth_error(
        400,
        "invalid_request",
        "AADSTS900144: The request body must be form-encoded.".into(),
    )
}

/// `POST /{tenant}/oauth2/v2.0/devicecode` (RFC 8628 §3.1).
async fn devicecode(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = known_tenant(&app, &tenant).await {
        return r;
    }
    let Some(form) = parse_form(&body) else {
        return not_a_form();
    };
    match app.tokens.device_authorization(&tenant, &form).await {
        Ok(d) => Json(d).into_response(),
        Err(f) => oauth_error(f.status, &f.body.error, f.body.error_description),
    }
}

/// How long readiness waits for the store.
const READY_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Liveness: the process answers.
async fn health(State(app): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({"status": "ok", "store": app.store.backend()})).into_response()
}

/// Readiness: the store answers, the audit writer takes records (requests fail closed without
/// it) and the keyring is loaded. 503 with the failing checks otherwise.
pub async fn ready(State(app): State<Arc<AppState>>) -> Response {
    // Bounded: a store that does not answer (a pool waiting for a connection) is not ready.
    let store = tokio::time::timeout(READY_STORE_TIMEOUT, app.store.get_meta("readyz"))
        .await
        .is_ok_and(|r| r.is_ok());
    let audit = app.audit.is_running();
    let keyring = app.secrets.keyring_works();
    let ok = store && audit && keyring;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "unready" },
        "checks": {"store": store, "auditWriter": audit, "rootKey": keyring},
    });
    (status, Json(body)).into_response()
}

fn oauth_error(status: u16, error: &str, description: String) -> Response {
    let body = OAuthError {
        error: error.into(),
        error_description: description,
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

async fn known_tenant(app: &AppState, tenant: &str) -> Result<(), Response> {
    match app.tokens.tenant_exists(tenant).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(oauth_error(
            400,
            "invalid_tenant",
            format!("AADSTS90002: Tenant '{tenant}' not found."),
        )),
        Err(e) => {
            tracing::error!(error = %e, "tenant lookup failed");
            Err(oauth_error(
                500,
                "server_error",
                "The token service encountered an internal error.".into(),
            ))
        }
    }
}

#[derive(serde::Deserialize)]
struct Advance {
    advance_secs: i64,
}

/// `POST /_dev/clock?advance_secs=N`: only on `--dev-clock` servers (404 otherwise).
async fn advance_clock(
    State(app): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<Advance>,
) -> Response {
    match &app.dev_clock {
        Some(clock) => {
            Json(serde_json::json!({"now_ms": clock.advance_secs(q.advance_secs)})).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn openid_configuration(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> Response {
    if let Err(r) = known_tenant(&app, &tenant).await {
        return r;
    }
    Json(app.tokens.openid_configuration(&tenant)).into_response()
}

async fn jwks(State(app): State<Arc<AppState>>, Path(tenant): Path<String>) -> Response {
    if let Err(r) = known_tenant(&app, &tenant).await {
        return r;
    }
    Json(app.tokens.jwks()).into_response()
}

async fn token(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    visitor: crate::signin_pages::Visitor,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let client_id = form.as_ref().and_then(|f| f.get("client_id"));
    if let Err(secs) = app.throttle.token(client_id.map(String::as_str), peer.ip()) {
        app.metrics
            .throttled
            .get_or_create(&crate::metrics::LimitLabels { limit: "token" })
            .inc();
        let mut r = oauth_error(
            429,
            "temporarily_unavailable",
            "AADSTS50196: Too many token requests; retry after the Retry-After interval.".into(),
        );
        r.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
        return r;
    }
    let Some(form) = form else {
        return not_a_form();
    };
    let grant = form
        .get("grant_type")
        .map(String::as_str)
        .filter(|g| crate::metrics::GRANTS.contains(g))
        .unwrap_or("other")
        .to_string();
    match app
        .tokens
        .token_grant(&tenant, &form, &visitor.context(""))
        .await
    {
        Ok(t) => {
            app.metrics
                .tokens_issued
                .get_or_create(&crate::metrics::GrantLabels { grant })
                .inc();
            Json(t).into_response()
        }
        Err(f) => {
            app.metrics
                .tokens_refused
                .get_or_create(&crate::metrics::ErrorLabels {
                    error: f.body.error.clone(),
                })
                .inc();
            oauth_error(f.status, &f.body.error, f.body.error_description)
        }
    }
}
