//! Managed-identity token endpoints in the shapes azure-identity's `ManagedIdentityCredential`
//! reads from the environment (see `strongbox_identity::managed`):
//!
//! - `GET /msi/token` — App Service form (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`). Success:
//!   `{"access_token","expires_on":"<epoch>","resource","token_type","client_id"}`; failures:
//!   `{"statusCode","message"}`, as App Service answers.
//! - `GET /msi/arc/{endpoint}/token` — Azure Arc form (`IDENTITY_ENDPOINT` + `IMDS_ENDPOINT`).
//!   401 + `WWW-Authenticate: Basic realm=<challenge file>`, then the token for `Authorization:
//!   Basic <file content>`, in IMDS's shape (numbers as strings) echoing the identity's ids.

use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use strongbox_identity::arc;
use strongbox_identity::managed::{ArcOutcome, ManagedFailure};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/msi/token", get(app_service))
        .route("/msi/arc/{endpoint}/token", get(arc))
}

fn query(uri: &Uri) -> Result<Vec<(String, String)>, ManagedFailure> {
    match uri.query() {
        None => Ok(vec![]),
        Some(q) => serde_urlencoded::from_str(q).map_err(|_| ManagedFailure {
            status: 400,
            error: "invalid_request",
            message: "The query string is malformed.".into(),
        }),
    }
}

fn status(s: u16) -> StatusCode {
    StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn app_service(State(app): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    let secret = headers
        .get("x-identity-header")
        .and_then(|h| h.to_str().ok());
    let result = match query(&uri) {
        Ok(pairs) => app.tokens.app_service_token(secret, &pairs).await,
        Err(f) => Err(f),
    };
    match result {
        Ok(t) => Json(json!({
            "access_token": t.token.access_token,
            "expires_on": t.expires_on.to_string(),
            "resource": t.resource,
            "token_type": t.token.token_type,
            "client_id": t.principal.client_id,
        }))
        .into_response(),
        Err(f) => (
            status(f.status),
            Json(json!({"statusCode": f.status, "message": f.message})),
        )
            .into_response(),
    }
}

async fn arc(
    State(app): State<Arc<AppState>>,
    Path(endpoint): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let metadata = arc::metadata_header_ok(headers.get("metadata").and_then(|h| h.to_str().ok()));
    let basic = arc::basic_credential(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    );
    let result = match query(&uri) {
        Ok(pairs) => {
            app.tokens
                .arc_token(&endpoint, metadata, basic, &pairs)
                .await
        }
        Err(f) => Err(f),
    };
    match result {
        Ok(ArcOutcome::Challenge(path)) => {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized_client", "error_description": "Read the challenge file named in WWW-Authenticate and retry with Authorization: Basic <its content>."})),
            )
                .into_response();
            match HeaderValue::from_str(&arc::www_authenticate(&path)) {
                Ok(v) => {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    r
                }
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        Ok(ArcOutcome::Token(t)) => {
            let lifetime = t.token.expires_in.to_string();
            Json(json!({
                "access_token": t.token.access_token,
                "client_id": t.principal.client_id,
                "object_id": t.principal.object_id,
                "msi_res_id": t.resource_id(),
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "expires_on": t.expires_on.to_string(),
                "not_before": t.not_before.to_string(),
                "resource": t.resource,
                "token_type": t.token.token_type,
            }))
            .into_response()
        }
        Err(f) => (
            status(f.status),
            Json(json!({"error": f.error, "error_description": f.message})),
        )
            .into_response(),
    }
}
