//! What every vault and lock handler needs around its domain call: the caller (401 kept for
//! the audit record, not returned early), the api-version check, the request's correlation id
//! and peer, JSON bodies refused in ARM's error shape, and the audit record of the outcome
//! (fail closed: no durable record, no response).

use super::{ArmError, MgmtCaller};
use crate::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use strongbox_domain::Caller;
use strongbox_domain::vault_lifecycle::{AuditCtx, MgmtError, MgmtErrorKind, VaultHost};

/// Largest management request body: a vault with 1024 access policies fits.
pub const MAX_MGMT_BODY_BYTES: usize = 1024 * 1024;
/// Page size of vault lists when `$top` is not given, and the most it may ask for.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

impl From<MgmtError> for ArmError {
    fn from(e: MgmtError) -> Self {
        let status = match e.kind {
            MgmtErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            MgmtErrorKind::NotFound => StatusCode::NOT_FOUND,
            MgmtErrorKind::Conflict => StatusCode::CONFLICT,
            MgmtErrorKind::Internal => {
                tracing::error!(error = %e.message, "internal error");
                return ArmError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    "The service encountered an internal error.",
                );
            }
        };
        ArmError::new(status, e.code, e.message)
    }
}

/// A successful outcome: status, JSON body (or none), and whether its audit record was
/// already committed with the change it describes.
pub struct Done {
    pub status: StatusCode,
    pub body: Option<serde_json::Value>,
    pub audited: bool,
}

impl Done {
    pub fn json<T: serde::Serialize>(status: StatusCode, body: &T, audited: bool) -> Done {
        Done {
            status,
            body: Some(serde_json::to_value(body).expect("response types serialize")),
            audited,
        }
    }
    pub fn empty(status: StatusCode, audited: bool) -> Done {
        Done {
            status,
            body: None,
            audited,
        }
    }
}

pub type Outcome = Result<Done, ArmError>;

/// The request context of a management call.
pub struct ArmCtx {
    caller: Result<Caller, (StatusCode, &'static str, String)>,
    api_version: Option<String>,
    query: Vec<(String, String)>,
    pub correlation_id: String,
    pub caller_ip: String,
    /// `https://{host}` as the client addressed us, for nextLink.
    pub base_url: String,
    pub path: String,
}

/// Echo the client's request id only if it is a plain token (no log or header injection).
fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get("x-ms-client-request-id")
        .and_then(|h| h.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

impl FromRequestParts<Arc<AppState>> for ArmCtx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let caller = MgmtCaller::from_request_parts(parts, app)
            .await
            .map(|c| c.0)
            .map_err(|e| (e.status, e.code, e.message));
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let api_version = query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
            .map(|(_, v)| v.clone());
        // HTTP/2 carries the host in the URI's authority, HTTP/1.1 in the Host header.
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("localhost")
            .to_ascii_lowercase();
        Ok(ArmCtx {
            caller,
            api_version,
            query,
            correlation_id: correlation_id(&parts.headers),
            caller_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
            base_url: format!("https://{host}"),
            path: parts.uri.path().to_string(),
        })
    }
}

/// ARM api-versions are dates, optionally `-preview`: any such version is served, since the
/// shapes Strongbox speaks are stable across the SDKs' versions.
fn api_version_ok(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let p: Vec<&str> = date.split('-').collect();
    let num = |s: &str, len: usize, range: std::ops::RangeInclusive<u32>| {
        s.len() == len
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| range.contains(&n))
    };
    matches!(p.as_slice(), [y, m, d] if num(y, 4, 2014..=9999) && num(m, 2, 1..=12) && num(d, 2, 1..=31))
}

impl ArmCtx {
    /// The authenticated caller of a request with a valid api-version.
    pub fn check(&self) -> Result<Caller, ArmError> {
        let caller = self
            .caller
            .clone()
            .map_err(|(status, code, message)| ArmError::new(status, code, message))?;
        match self.api_version.as_deref() {
            None => Err(bad(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )),
            Some(v) if !api_version_ok(v) => Err(bad(
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{}' is invalid: use a date such as 2026-05-15.",
                    v.chars().take(40).collect::<String>()
                ),
            )),
            Some(_) => Ok(caller),
        }
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn audit_ctx(&self) -> AuditCtx {
        AuditCtx {
            caller: self.caller.as_ref().ok().cloned(),
            correlation_id: self.correlation_id.clone(),
            caller_ip: self.caller_ip.clone(),
        }
    }

    /// Page size from `$top` (and the continuation from `$skiptoken`).
    pub fn page(&self) -> Result<(u32, Option<String>), ArmError> {
        let top = match self.query("$top") {
            None => DEFAULT_PAGE,
            Some(t) => t
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ArmError::bad_request(format!("$top must be an integer from 1 to {MAX_PAGE}."))
                })?,
        };
        Ok((top, self.query("$skiptoken").map(String::from)))
    }

    /// The link to the next page: this path, same api-version and page size, after `last`.
    pub fn next_link(&self, top: u32, last: Option<String>) -> Option<String> {
        let last = last?;
        let query = serde_urlencoded::to_string([
            ("api-version", self.api_version.clone().unwrap_or_default()),
            ("$top", top.to_string()),
            ("$skiptoken", last),
        ])
        .ok()?;
        Some(format!("{}{}?{query}", self.base_url, self.path))
    }

    /// Audits the outcome (unless its record was committed with the change) and answers.
    pub async fn finish(
        &self,
        app: &AppState,
        chain: &str,
        resource_id: &str,
        operation: &str,
        outcome: Outcome,
    ) -> Response {
        let (status, audited) = match &outcome {
            Ok(d) => (d.status, d.audited),
            Err(e) => (e.status, false),
        };
        if !audited {
            let entry = self.audit_ctx().entry(
                chain,
                resource_id,
                operation,
                status.as_u16(),
                app.clock.now_ms(),
            );
            if let Err(e) = app.audit.append(entry).await {
                tracing::error!(error = %e, "management audit append failed; refusing the response");
                return ArmError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The audit log is unavailable; the request was not completed.",
                )
                .into_response();
            }
        }
        match outcome {
            Ok(Done {
                status,
                body: Some(b),
                ..
            }) => (status, Json(b)).into_response(),
            Ok(Done { status, .. }) => status.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// Parses a JSON body, or says what is wrong with it in ARM's shape without quoting values.
pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ArmError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ArmError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("The request body exceeds {MAX_MGMT_BODY_BYTES} bytes."),
            )
        } else {
            bad(
                "InvalidRequestContent",
                "The request body could not be read.",
            )
        }
    })?;
    if bytes.is_empty() {
        return Err(bad("InvalidRequestContent", "The request body is missing."));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let text = e.to_string();
        // serde names unknown and missing fields by their key, never by a value.
        let what = if text.starts_with("unknown field") || text.starts_with("missing field") {
            text.split(" at line").next().unwrap_or("").to_string()
        } else {
            match e.classify() {
                Category::Io | Category::Eof => "the body ended early".into(),
                Category::Syntax => "the body is not valid JSON".into(),
                Category::Data => "a field has the wrong type or value".into(),
            }
        };
        bad(
            "InvalidRequestContent",
            format!(
                "The request content is invalid: {what} (line {}, column {}).",
                e.line(),
                e.column()
            ),
        )
    })
}

fn bad(code: &'static str, message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, code, message)
}

/// Path segments that could not be decoded.
pub fn bad_path(_: PathRejection) -> Response {
    ArmError::bad_request("The request path is malformed.").into_response()
}

/// A known path with a method it does not serve.
pub async fn method_not_allowed() -> Response {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "The HTTP method is not supported on this resource.",
    )
    .into_response()
}

/// `vaultUri`'s host and port: the data plane's DNS suffix and the port in the vault audience.
pub fn vault_host(app: &AppState) -> VaultHost {
    let aud = app.tokens.audience();
    let host_port = aud.strip_prefix("https://").unwrap_or(aud);
    let port_suffix = match host_port.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!(":{port}")
        }
        _ => String::new(),
    };
    VaultHost {
        dns_suffix: app.dns_suffix.clone(),
        port_suffix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_dates() {
        for ok in [
            "2026-05-15",
            "2020-05-01",
            "2016-09-01",
            "2024-12-01-preview",
        ] {
            assert!(api_version_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "7.6",
            "2026-13-01",
            "latest",
            "2026-05-15-beta",
            "1999-01-01",
        ] {
            assert!(!api_version_ok(bad), "{bad}");
        }
    }
}
