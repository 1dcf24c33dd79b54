//! What the role-assignment and managed-identity handlers share: the request context (caller
//! IP, correlation id, query), api-version checks, strict JSON bodies in ARM's error shape, tags,
//! and the audit record every operation leaves, allowed or refused.

use super::{ArmError, MgmtCaller};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use strongbox_domain::Caller;
use strongbox_domain::audit::management_entry;

/// Largest management request body accepted by these handlers.
pub(super) const MAX_BODY: usize = 64 * 1024;

pub(super) struct Ctx {
    pub caller: Result<Caller, ArmError>,
    pub ip: String,
    pub correlation: String,
    pub query: Vec<(String, String)>,
}

impl Ctx {
    pub fn new(
        caller: Result<MgmtCaller, ArmError>,
        peer: SocketAddr,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Ctx {
        let correlation = headers
            .get("x-ms-client-request-id")
            .and_then(|h| h.to_str().ok())
            .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .map(String::from)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ctx {
            caller: caller.map(|c| c.0),
            ip: peer.ip().to_string(),
            correlation,
            query: uri
                .query()
                .and_then(|q| serde_urlencoded::from_str(q).ok())
                .unwrap_or_default(),
        }
    }

    /// A query parameter, by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The verified caller, or the 401 to answer.
    pub fn caller(&self) -> Result<&Caller, ArmError> {
        self.caller
            .as_ref()
            .map_err(|e| ArmError::new(StatusCode::UNAUTHORIZED, e.code, e.message.clone()))
    }

    pub fn api_version(&self, supported: &[&str]) -> Result<(), ArmError> {
        match self.param("api-version") {
            None => Err(ArmError::new(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )),
            Some(v) if supported.contains(&v) => Ok(()),
            Some(v) => Err(ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{}' is invalid. The supported versions are '{}'.",
                    v.chars().take(32).collect::<String>(),
                    supported.join(",")
                ),
            )),
        }
    }
}

/// Parses a JSON body strictly (unknown fields refused by the target type); messages say where
/// and what kind of problem, never quote the input.
pub(super) fn json_body<T: DeserializeOwned>(
    body: &Result<Bytes, BytesRejection>,
) -> Result<T, ArmError> {
    let bytes = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(too_large());
        }
        Err(_) => return Err(ArmError::bad_request("The request body could not be read.")),
    };
    if bytes.len() > MAX_BODY {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content is empty.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Io | Category::Eof => "the body ended early",
            Category::Syntax => "the body is not valid JSON",
            Category::Data => "a field is unknown, missing or has the wrong type",
        };
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!(
                "The request content was invalid: {what} (line {}, column {}).",
                e.line(),
                e.column()
            ),
        )
    })
}

fn too_large() -> ArmError {
    ArmError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("The request body exceeds {MAX_BODY} bytes."),
    )
}

/// ARM tags: at most 50, names up to 512 characters, values up to 256. Stored as JSON.
pub(super) fn tags_json(
    tags: Option<std::collections::BTreeMap<String, String>>,
) -> Result<Option<String>, ArmError> {
    let Some(tags) = tags else { return Ok(None) };
    if tags.len() > 50
        || tags
            .iter()
            .any(|(k, v)| k.is_empty() || k.chars().count() > 512 || v.chars().count() > 256)
    {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidTag",
            "Tags: at most 50, names of 1 to 512 characters, values up to 256.",
        ));
    }
    Ok(Some(serde_json::to_string(&tags).expect("tags serialize")))
}

pub(super) fn tags_value(tags_json: &Option<String>) -> serde_json::Value {
    tags_json
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

pub(super) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Audits the outcome on `chain` (a vault's id, or `subscription:{id}`), then answers. The
/// response waits for the record; if it cannot be written the client gets a 500.
pub(super) async fn finish(
    app: &AppState,
    chain: &str,
    resource_id: &str,
    operation: &str,
    ctx: &Ctx,
    outcome: Result<Response, ArmError>,
) -> Response {
    let response = outcome.unwrap_or_else(IntoResponse::into_response);
    let entry = management_entry(
        chain,
        resource_id,
        operation,
        ctx.caller.as_ref().ok(),
        response.status().as_u16(),
        &ctx.correlation,
        &ctx.ip,
        app.clock.now_ms(),
    );
    if let Err(e) = app.audit.append(entry).await {
        tracing::error!(error = %e, "could not audit a management operation");
        return ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The service encountered an internal error.",
        )
        .into_response();
    }
    response
}

/// The audit chain of a subscription's management operations.
pub(super) fn subscription_chain(subscription_id: &str) -> String {
    format!("subscription:{}", subscription_id.to_ascii_lowercase())
}
