//! What the handlers of this family share: the request context, the audit record every request
//! leaves, api-version checks, strict JSON bodies, and finding the vault a path names.

use crate::AppState;
use crate::management::{ArmError, MgmtCaller};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use strongbox_domain::Caller;
use strongbox_domain::audit::management_entry;
use strongbox_store::{AuditEntry, VaultRow};

/// Who asks (if the token was good), from where, with which correlation id, and the query.
pub struct Ctx {
    pub caller: Result<Caller, ArmError>,
    pub correlation_id: String,
    pub caller_ip: String,
    /// `https://{host}` as the client addressed us (for nextLink).
    pub base_url: String,
    pub query: HashMap<String, String>,
}

impl FromRequestParts<Arc<AppState>> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let caller = MgmtCaller::from_request_parts(parts, app)
            .await
            .map(|c| c.0);
        let caller_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost")
            .to_string();
        let mut query = HashMap::new();
        if let Some(q) = parts.uri.query() {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
            for (k, v) in pairs {
                query.insert(k.to_ascii_lowercase(), v);
            }
        }
        Ok(Ctx {
            caller,
            correlation_id: correlation_id(&parts.headers),
            caller_ip,
            base_url: format!("https://{host}"),
            query,
        })
    }
}

fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get("x-ms-client-request-id")
        .and_then(|h| h.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The audit record of one request: which chain, which resource, which operation.
pub struct Audited<'a> {
    pub app: &'a AppState,
    pub ctx: &'a Ctx,
    pub chain: String,
    pub resource_id: String,
    pub operation: &'static str,
}

impl Audited<'_> {
    pub fn entry(&self, status: u16) -> AuditEntry {
        management_entry(
            &self.chain,
            &self.resource_id,
            self.operation,
            self.ctx.caller.as_ref().ok(),
            status,
            &self.ctx.correlation_id,
            &self.ctx.caller_ip,
            self.app.clock.now_ms(),
        )
    }

    /// Records the outcome, then answers; no durable record, no answer (500).
    pub async fn respond(&self, outcome: Result<(StatusCode, Response), ArmError>) -> Response {
        let status = match &outcome {
            Ok((s, _)) => s.as_u16(),
            Err(e) => e.status.as_u16(),
        };
        if let Err(e) = self.app.audit.append(self.entry(status)).await {
            tracing::error!(error = %e, "could not audit a management request");
            return ArmError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "The service encountered an internal error.",
            )
            .into_response();
        }
        match outcome {
            Ok((_, r)) => r,
            Err(e) => e.into_response(),
        }
    }

    /// Answers a change whose success record the store already wrote in its transaction; a
    /// refusal is recorded here.
    pub async fn respond_committed(&self, outcome: Result<Response, ArmError>) -> Response {
        match outcome {
            Ok(r) => r,
            Err(e) => self.respond(Err(e)).await,
        }
    }
}

/// The caller, or the 401 to answer with.
pub fn caller(ctx: &Ctx) -> Result<&Caller, ArmError> {
    ctx.caller
        .as_ref()
        .map_err(|e| ArmError::new(e.status, e.code, e.message.clone()))
}

/// Requires `api-version`; `accepts` decides which values are known.
pub fn api_version(ctx: &Ctx, accepts: impl Fn(&str) -> bool) -> Result<(), ArmError> {
    match ctx.query.get("api-version") {
        None => Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        Some(v) if accepts(v) => Ok(()),
        Some(v) => Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{}' is invalid or not supported here.",
                v.chars().take(32).collect::<String>()
            ),
        )),
    }
}

/// `YYYY-MM-DD` with an optional `-preview`: for the APIs whose shapes do not change by version.
pub fn date_version(v: &str) -> bool {
    let d = v.strip_suffix("-preview").unwrap_or(v);
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parses a JSON body strictly (unknown fields are refused by the target types) without ever
/// quoting the input back.
pub fn body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ArmError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ArmError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "The request body is too large.",
            )
        } else {
            ArmError::bad_request("The request body could not be read.")
        }
    })?;
    if bytes.is_empty() {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content is empty.",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Io | Category::Eof => "the body ended early".to_string(),
            Category::Syntax => "the body is not valid JSON".to_string(),
            // serde names unknown fields and expected types, never the values given.
            Category::Data => {
                let text = e.to_string();
                let known = text.starts_with("unknown field") || text.starts_with("missing field");
                if known {
                    text.split(" at line")
                        .next()
                        .unwrap_or_default()
                        .to_string()
                } else {
                    "a field has the wrong type or value".to_string()
                }
            }
        };
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!(
                "The request content is invalid: {what} (line {}, column {}).",
                e.line(),
                e.column()
            ),
        )
    })
}

/// The live vault a path names, if it is where the path says (subscription, resource group).
pub async fn find_vault(
    app: &AppState,
    subscription: &str,
    resource_group: &str,
    name: &str,
) -> Result<Option<VaultRow>, ArmError> {
    let Ok(name) = strongbox_domain::names::vault_name(name) else {
        return Ok(None);
    };
    Ok(app.store.get_vault_by_name(&name).await?.filter(|v| {
        v.deleted.is_none()
            && v.subscription_id.eq_ignore_ascii_case(subscription)
            && v.resource_group.eq_ignore_ascii_case(resource_group)
    }))
}

pub fn vault_not_found(resource_group: &str, name: &str) -> ArmError {
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.KeyVault/vaults/{}' under resource group '{}' was not found.",
            clip(name),
            clip(resource_group)
        ),
    )
}

/// Names from the path are echoed in messages, bounded.
pub fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

/// The resource id a vault path names (as the client spelled it, for refusals).
pub fn vault_path_id(subscription: &str, resource_group: &str, name: &str) -> String {
    strongbox_domain::vaults::vault_resource_id(
        &clip(subscription),
        &clip(resource_group),
        &clip(name),
    )
}

/// Resource group names as ARM allows them: 1-90 of letters, digits, `-_.()`, not ending in `.`.
pub fn valid_resource_group(rg: &str) -> bool {
    (1..=90).contains(&rg.len())
        && !rg.ends_with('.')
        && rg
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn parse_rfc3339(name: &str, s: &str) -> Result<i64, ArmError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ArmError::bad_request(format!(
                "The '{name}' parameter must be an RFC 3339 time such as 2026-01-31T12:00:00Z."
            ))
        })
}

/// An ISO 8601 duration of days, hours, minutes and seconds (`P1D`, `PT1H`, `PT5M`, `PT30S`)
/// in milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P').or_else(|| s.strip_prefix('p'))?;
    let (days, time_part) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut take = |text: &str, units: &[(char, i64)]| -> Option<()> {
        let mut num = String::new();
        let mut last = 0usize;
        for c in text.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                let pos = units.iter().position(|(u, _)| u.eq_ignore_ascii_case(&c))?;
                if num.is_empty() || pos < last {
                    return None;
                }
                let n: i64 = num.parse().ok()?;
                total = total.checked_add(n.checked_mul(units[pos].1)?)?;
                num.clear();
                last = pos + 1;
            }
        }
        num.is_empty().then_some(())
    };
    if !days.is_empty() {
        take(days, &[('D', 86_400_000)])?;
    }
    match time_part {
        Some("") => return None,
        Some(t) => take(t, &[('H', 3_600_000), ('M', 60_000), ('S', 1000)])?,
        None if days.is_empty() => return None,
        None => {}
    }
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_iso_8601() {
        assert_eq!(parse_duration("PT1H"), Some(3_600_000));
        assert_eq!(parse_duration("PT5M"), Some(300_000));
        assert_eq!(
            parse_duration("P1DT2H30S"),
            Some(86_400_000 + 7_200_000 + 30_000)
        );
        assert_eq!(parse_duration("P2D"), Some(172_800_000));
        for bad in [
            "", "P", "PT", "1H", "PT1", "PTH", "PT1M1H", "PT0S", "P1Y", "PT-1H",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn date_versions() {
        assert!(date_version("2021-05-01-preview") && date_version("2024-01-01"));
        assert!(!date_version("7.4") && !date_version("2024-1-01") && !date_version("latest"));
    }
}
