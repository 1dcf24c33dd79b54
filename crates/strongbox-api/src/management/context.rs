//! What every management handler needs around its own logic, in one place: the request
//! context (caller, with a 401 kept for the audit record rather than returned early;
//! api-version; correlation id; caller IP; query), JSON bodies refused in ARM's shape without
//! quoting the input, the audit chain a request joins, and the audit record of the outcome,
//! allowed or refused (fail closed: no durable record, no response).

use super::{ArmError, verified_caller};
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
use strongbox_domain::audit::management_entry;
use strongbox_domain::vault_lifecycle::{AuditCtx, MgmtError, MgmtErrorKind, VaultHost};
use strongbox_identity::Plane;
use strongbox_store::AuditEntry;

/// Largest vault or lock request body: a vault with 1024 access policies fits.
pub const MAX_MGMT_BODY_BYTES: usize = 1024 * 1024;
/// Largest role-assignment or managed-identity request body.
pub const MAX_AUTHZ_BODY_BYTES: usize = 64 * 1024;
/// Page size of lists when `$top` is not given, and the most it may ask for.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

impl From<MgmtError> for ArmError {
    fn from(e: MgmtError) -> Self {
        let status = match e.kind {
            MgmtErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            MgmtErrorKind::NotFound => StatusCode::NOT_FOUND,
            MgmtErrorKind::Conflict => StatusCode::CONFLICT,
            MgmtErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            MgmtErrorKind::Internal => {
                tracing::error!(error = %e.message, "internal error");
                return internal();
            }
        };
        ArmError::new(status, e.code, e.message)
    }
}

fn internal() -> ArmError {
    ArmError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "The service encountered an internal error.",
    )
}

/// A successful outcome: the response, and whether its audit record was already committed
/// with the change it describes.
pub struct Done {
    response: Response,
    audited: bool,
}

impl Done {
    pub fn json<T: serde::Serialize>(status: StatusCode, body: &T, audited: bool) -> Done {
        let body = serde_json::to_value(body).expect("response types serialize");
        Done {
            response: (status, Json(body)).into_response(),
            audited,
        }
    }
    pub fn empty(status: StatusCode, audited: bool) -> Done {
        Done {
            response: status.into_response(),
            audited,
        }
    }
    /// A response whose record is still to be written.
    pub fn response(response: Response) -> Done {
        Done {
            response,
            audited: false,
        }
    }
    /// A response whose record the store committed with the change.
    pub fn committed(response: Response) -> Done {
        Done {
            response,
            audited: true,
        }
    }
}

pub type Outcome = Result<Done, ArmError>;

/// Which api-versions a resource type serves.
#[derive(Clone, Copy)]
pub enum ApiVersions {
    /// Any ARM date version (`YYYY-MM-DD`, optionally `-preview`): the shapes Strongbox speaks
    /// are stable across the SDKs' versions.
    Dates,
    /// Exactly these, as ARM lists them for a provider.
    Only(&'static [&'static str]),
}

/// The request context of a management call.
pub struct ArmCtx {
    caller: Result<Caller, ArmError>,
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
        Ok(ArmCtx::new(parts, app, Plane::Management).await)
    }
}

impl ArmCtx {
    /// The context of a request whose bearer token must be valid for `plane`.
    pub async fn new(parts: &Parts, app: &AppState, plane: Plane) -> ArmCtx {
        let caller = verified_caller(parts, app, plane).await;
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        // HTTP/2 carries the host in the URI's authority, HTTP/1.1 in the Host header. Only
        // host characters pass: the value is echoed in nextLink.
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
        ArmCtx {
            caller,
            query,
            correlation_id: correlation_id(&parts.headers),
            caller_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
            base_url: format!("https://{host}"),
            path: parts.uri.path().to_string(),
        }
    }
}

/// ARM api-versions are dates, optionally `-preview`.
fn date_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let p: Vec<&str> = date.split('-').collect();
    let num = |s: &str, len: usize, range: std::ops::RangeInclusive<u32>| {
        s.len() == len
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| range.contains(&n))
    };
    matches!(p.as_slice(), [y, m, d] if num(y, 4, 2014..=9999) && num(m, 2, 1..=12) && num(d, 2, 1..=31))
}

fn bad(code: &'static str, message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, code, message)
}

impl ArmCtx {
    /// The verified caller, or the 401 to answer.
    pub fn caller(&self) -> Result<&Caller, ArmError> {
        self.caller
            .as_ref()
            .map_err(|e| ArmError::new(e.status, e.code, e.message.clone()))
    }

    /// The authenticated caller of a request with an api-version `versions` serves.
    pub fn check(&self, versions: ApiVersions) -> Result<&Caller, ArmError> {
        let caller = self.caller()?;
        let Some(v) = self.query("api-version") else {
            return Err(bad(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        };
        let shown = v.chars().take(32).collect::<String>();
        match versions {
            ApiVersions::Dates if date_version(v) => Ok(caller),
            ApiVersions::Only(list) if list.contains(&v) => Ok(caller),
            ApiVersions::Dates => Err(bad(
                "InvalidApiVersionParameter",
                format!("The api-version '{shown}' is invalid: use a date such as 2026-05-15."),
            )),
            ApiVersions::Only(list) => Err(bad(
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{shown}' is invalid. The supported versions are '{}'.",
                    list.join(",")
                ),
            )),
        }
    }

    /// A query parameter, by case-insensitive name (the first, if repeated).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query parameters, as the client spelled them.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn audit_ctx(&self) -> AuditCtx {
        AuditCtx {
            caller: self.caller.as_ref().ok().cloned(),
            correlation_id: self.correlation_id.clone(),
            caller_ip: self.caller_ip.clone(),
        }
    }

    /// The audit record of this request, for a store to commit with the change it describes.
    pub fn entry(
        &self,
        app: &AppState,
        chain: &str,
        resource_id: &str,
        operation: &str,
        status: u16,
    ) -> AuditEntry {
        management_entry(
            chain,
            resource_id,
            operation,
            self.caller.as_ref().ok(),
            status,
            &self.correlation_id,
            &self.caller_ip,
            app.clock.now_ms(),
        )
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
            ("api-version", self.query("api-version").unwrap_or_default()),
            ("$top", &top.to_string()),
            ("$skiptoken", &last),
        ])
        .ok()?;
        Some(format!("{}{}?{query}", self.base_url, self.path))
    }

    /// Audits the outcome on `chain` (unless its record was committed with the change), then
    /// answers. The response waits for the record; if it cannot be written the client gets a
    /// 500, as on the data plane.
    pub async fn finish(
        &self,
        app: &AppState,
        chain: &str,
        resource_id: &str,
        operation: &str,
        outcome: Outcome,
    ) -> Response {
        let done = match outcome {
            Ok(done) => done,
            Err(e) => Done::response(e.into_response()),
        };
        if !done.audited {
            let status = done.response.status().as_u16();
            let entry = self.entry(app, chain, resource_id, operation, status);
            if let Err(e) = app.audit.append(entry).await {
                return ArmError::from(e).into_response();
            }
        }
        done.response
    }
}

/// The audit record a handler's request leaves: its chain, resource and operation, bound once.
pub struct Audited<'a> {
    pub app: &'a AppState,
    pub ctx: &'a ArmCtx,
    pub chain: String,
    pub resource_id: String,
    pub operation: &'static str,
}

impl Audited<'_> {
    /// The record, for a store to commit with the change it describes.
    pub fn entry(&self, status: u16) -> AuditEntry {
        self.ctx.entry(
            self.app,
            &self.chain,
            &self.resource_id,
            self.operation,
            status,
        )
    }

    pub async fn finish(&self, outcome: Outcome) -> Response {
        self.ctx
            .finish(
                self.app,
                &self.chain,
                &self.resource_id,
                self.operation,
                outcome,
            )
            .await
    }
}

/// Parses a JSON body of at most `max` bytes strictly (unknown fields are refused by the target
/// types), or says what is wrong with it in ARM's shape without quoting the input.
pub fn json_body<T: DeserializeOwned>(
    body: &Result<Bytes, BytesRejection>,
    max: usize,
) -> Result<T, ArmError> {
    let too_large = || {
        ArmError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("The request body exceeds {max} bytes."),
        )
    };
    let bytes = match body {
        Ok(b) if b.len() > max => return Err(too_large()),
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
        Err(_) => {
            return Err(bad(
                "InvalidRequestContent",
                "The request body could not be read.",
            ));
        }
    };
    if bytes.is_empty() {
        return Err(bad(
            "InvalidRequestContent",
            "The request content is empty.",
        ));
    }
    if !crate::is_json_object(bytes) {
        return Err(bad(
            "InvalidRequestContent",
            "The request content must be a JSON object.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Io | Category::Eof => "the body ended early".to_string(),
            Category::Syntax => "the body is not valid JSON".to_string(),
            // serde names unknown and missing fields by their key, never by a value.
            Category::Data => {
                let text = e.to_string();
                if text.starts_with("unknown field") || text.starts_with("missing field") {
                    text.split(" at line")
                        .next()
                        .unwrap_or_default()
                        .to_string()
                } else {
                    "a field has the wrong type or value".to_string()
                }
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

/// The audit chain of a request about a subscription (or a resource group in it):
/// `subscription:{id}` for a subscription we know, one shared `subscription:unknown` otherwise,
/// so that paths naming no real subscription cannot mint chains.
pub async fn subscription_chain(app: &AppState, subscription_id: &str) -> String {
    strongbox_domain::vault_lifecycle::subscription_audit_chain(&*app.store, subscription_id).await
}

/// The audit chain of a request about a vault by name: the vault's own if it is placed in this
/// subscription (live or deleted), the subscription's otherwise.
pub async fn vault_chain(app: &AppState, subscription_id: &str, name: &str) -> String {
    strongbox_domain::vault_lifecycle::audit_chain(&*app.store, subscription_id, name).await
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

/// Names from the path are echoed in messages, bounded.
pub fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

/// ARM tags: at most 50, names of 1 to 512 characters, values up to 256. Stored as JSON.
pub fn tags_json(
    tags: Option<std::collections::BTreeMap<String, String>>,
) -> Result<Option<String>, ArmError> {
    let Some(tags) = tags else { return Ok(None) };
    if tags.len() > 50
        || tags
            .iter()
            .any(|(k, v)| k.is_empty() || k.chars().count() > 512 || v.chars().count() > 256)
    {
        return Err(bad(
            "InvalidTag",
            "Tags: at most 50, names of 1 to 512 characters, values up to 256.",
        ));
    }
    Ok(Some(serde_json::to_string(&tags).expect("tags serialize")))
}

/// Stored tags as the response shows them (`{}` when there are none).
pub fn tags_value(tags_json: Option<&str>) -> serde_json::Value {
    tags_json
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

/// A time in milliseconds since the epoch, as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
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
            assert!(date_version(ok), "{ok}");
        }
        for bad in [
            "",
            "7.6",
            "2026-13-01",
            "latest",
            "2026-05-15-beta",
            "1999-01-01",
            "2024-1-01",
        ] {
            assert!(!date_version(bad), "{bad}");
        }
    }
}
