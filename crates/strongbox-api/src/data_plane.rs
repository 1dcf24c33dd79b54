//! The AKV secrets data plane. One entry point parses (method, path) into an operation, because
//! secret names like `restore` or `versions` must not be captured by static routes. Order of
//! checks: vault (Host) → bearer token (401 + challenge) → api-version → operation → access
//! policy (403) → body → domain. Every step after the vault is known is audited.

use crate::errors::{ApiError, json_error};
use crate::{API_VERSIONS, AppState, api_version_supported};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use strongbox_domain::DomainError;
use strongbox_domain::audit::{self, Operation, RequestInfo};
use strongbox_domain::changes::ChangesRequest;
use strongbox_domain::secrets::PageRequest;
use strongbox_domain::{Caller, Grant, SecretAction, VaultAccess, authorize, authorize_feed};
use strongbox_store::VaultRow;
use strongbox_types::ErrorCode;

/// What the path names, besides the operation.
#[derive(Debug, Default)]
struct Target {
    name: Option<String>,
    version: Option<String>,
}

/// Maps method and path to an operation. `None` with a status: 404 unknown path, 405 wrong method.
fn parse(method: &Method, path: &str) -> Result<(Operation, Target), ErrorCode> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let named = |n: &str| Target {
        name: Some(n.to_string()),
        version: None,
    };
    let versioned = |n: &str, v: &str| Target {
        name: Some(n.to_string()),
        version: (!v.is_empty()).then(|| v.to_string()),
    };
    let m = method.clone();
    let op = match (segments.as_slice(), m) {
        (["secrets"] | ["secrets", ""], Method::GET) => (Operation::SecretList, Target::default()),
        (["secrets", "restore"], Method::POST) => (Operation::SecretRestore, Target::default()),
        (["secrets", n], Method::GET) => (Operation::SecretGet, named(n)),
        (["secrets", n], Method::PUT) => (Operation::SecretSet, named(n)),
        (["secrets", n], Method::DELETE) => (Operation::SecretDelete, named(n)),
        (["secrets", n], Method::PATCH) => (Operation::SecretUpdate, named(n)),
        (["secrets", n, "versions"], Method::GET) => (Operation::SecretListVersions, named(n)),
        (["secrets", n, "backup"], Method::POST) => (Operation::SecretBackup, named(n)),
        (["secrets", n, v], Method::GET) => (Operation::SecretGet, versioned(n, v)),
        (["secrets", n, v], Method::PATCH) => (Operation::SecretUpdate, versioned(n, v)),
        (["deletedsecrets"] | ["deletedsecrets", ""], Method::GET) => {
            (Operation::SecretListDeleted, Target::default())
        }
        (["deletedsecrets", n], Method::GET) => (Operation::SecretGetDeleted, named(n)),
        (["deletedsecrets", n], Method::DELETE) => (Operation::SecretPurge, named(n)),
        (["deletedsecrets", n, "recover"], Method::POST) => (Operation::SecretRecover, named(n)),
        // Not a secret path: secrets live under /secrets/{name}, so no name can collide.
        (["changes"] | ["changes", ""], Method::GET) => {
            (Operation::SecretChangesGet, Target::default())
        }
        (["changes"] | ["changes", ""], _) => return Err(ErrorCode::MethodNotAllowed),
        (["secrets", ..] | ["deletedsecrets", ..], _) if segments.len() <= 3 => {
            return Err(ErrorCode::MethodNotAllowed);
        }
        _ => return Err(ErrorCode::NotFound),
    };
    Ok(op)
}

fn action(op: Operation) -> Option<SecretAction> {
    Some(match op {
        Operation::SecretGet => SecretAction::Get,
        Operation::SecretGetDeleted => SecretAction::GetDeleted,
        Operation::SecretList | Operation::SecretListVersions => SecretAction::List,
        Operation::SecretListDeleted => SecretAction::ListDeleted,
        Operation::SecretSet => SecretAction::Set,
        Operation::SecretUpdate => SecretAction::Update,
        Operation::SecretDelete => SecretAction::Delete,
        Operation::SecretRecover => SecretAction::Recover,
        Operation::SecretPurge => SecretAction::Purge,
        Operation::SecretBackup => SecretAction::Backup,
        Operation::SecretRestore => SecretAction::Restore,
        Operation::SecretChangesGet => SecretAction::Get,
        Operation::Unknown => return None,
    })
}

/// The request host without port, lowercased, and the vault name if it is a vault host.
fn vault_name<'a>(host: &'a str, suffix: &str) -> Option<&'a str> {
    let name = host.strip_suffix(suffix)?.strip_suffix('.')?;
    (!name.is_empty() && !name.contains('.')).then_some(name)
}

fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let raw = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(String::from)
        })?;
    Some(raw.to_ascii_lowercase())
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

struct Query {
    api_version: Option<String>,
    max_results: Option<String>,
    skip_token: Option<String>,
    cursor: Option<String>,
    timeout: Option<String>,
    names: Option<String>,
    out_content_type: Option<String>,
}

fn query(uri: &Uri) -> Query {
    let pairs: Vec<(String, String)> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Query {
        api_version: get("api-version"),
        max_results: get("maxresults"),
        skip_token: get("$skiptoken"),
        cursor: get("cursor"),
        timeout: get("timeout"),
        names: get("names"),
        out_content_type: get("outContentType"),
    }
}

/// Answers a request to a vault host, naming its operation for the request metrics.
pub async fn handle(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let parsed = parse(&method, uri.path());
    let operation = parsed.as_ref().map_or(Operation::Unknown, |(op, _)| *op);
    let request = Incoming {
        peer,
        uri,
        headers,
        started,
    };
    let mut response = answer(app, request, parsed, body).await;
    response
        .extensions_mut()
        .insert(crate::metrics::OperationName(operation.name()));
    response
}

/// What [`answer`] needs of the request besides its body.
struct Incoming {
    peer: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
    started: Instant,
}

async fn answer(
    app: Arc<AppState>,
    request: Incoming,
    parsed: Result<(Operation, Target), ErrorCode>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Incoming {
        peer,
        uri,
        headers,
        started,
    } = request;
    let Some(host) = request_host(&uri, &headers) else {
        return ApiError::new(ErrorCode::BadParameter, "The request has no host.").into_response();
    };
    let host_only = host.rsplit_once(':').map_or(host.as_str(), |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host.as_str()
        }
    });
    let Some(name) = vault_name(host_only, &app.dns_suffix) else {
        return ApiError::new(ErrorCode::NotFound, "No such endpoint.").into_response();
    };
    let vault = match app.store.get_vault_by_name(name).await {
        Ok(Some(v)) if v.deleted.is_none() => Arc::new(v),
        // A soft-deleted vault and all its secrets stop answering.
        Ok(_) => {
            return ApiError::new(
                ErrorCode::VaultNotFound,
                format!("The vault '{name}' does not exist."),
            )
            .into_response();
        }
        Err(e) => return ApiError::from(strongbox_domain::DomainError::from(e)).into_response(),
    };
    let q = query(&uri);
    let mut info = RequestInfo {
        operation: parsed
            .as_ref()
            .map(|(op, _)| *op)
            .unwrap_or(Operation::Unknown),
        base_url: format!("https://{host}"),
        api_version: q.api_version.clone().unwrap_or_default(),
        correlation_id: correlation_id(&headers),
        caller_ip: peer.ip().to_string(),
        client_info: headers
            .get(header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .map(|s| s.chars().take(256).collect())
            .unwrap_or_default(),
        request_uri: uri
            .path_and_query()
            .map(|p| p.as_str().chars().take(2048).collect())
            .unwrap_or_default(),
        started,
    };
    if info.request_uri.is_empty() {
        info.request_uri = uri.path().to_string();
    }

    if let Err(secs) = app.throttle.vault(&vault.id) {
        app.metrics
            .throttled
            .get_or_create(&crate::metrics::LimitLabels { limit: "vault" })
            .inc();
        let throttled = ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                ErrorCode::Throttled,
                "Request was not allowed because of too many requests to this vault; retry after the Retry-After interval.",
            )
        };
        return finish(&app, &vault, &info, None, Err(throttled)).await;
    }
    let caller = match authenticate(&app, &vault, &headers).await {
        Ok(c) => c,
        Err(e) => return finish(&app, &vault, &info, None, Err(e)).await,
    };
    let outcome = run(&app, &vault, &info, &caller, parsed, q, body).await;
    finish(&app, &vault, &info, Some(&caller), outcome).await
}

fn challenge(app: &AppState, vault: &VaultRow) -> String {
    format!(
        "Bearer authorization=\"{}/{}\", resource=\"{}\"",
        app.tokens.authority(),
        vault.tenant_id,
        app.tokens.audience()
    )
}

async fn authenticate(
    app: &AppState,
    vault: &VaultRow,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let unauthorized = |message: String| ApiError {
        code: ErrorCode::Unauthorized,
        message,
        inner: None,
        challenge: Some(challenge(app, vault)),
        retry_after: None,
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(unauthorized(
            strongbox_identity::AuthError::Missing.to_string(),
        ));
    };
    let caller = app
        .tokens
        .verify(token, strongbox_identity::Plane::Vault)
        .await
        .map_err(|e| unauthorized(e.to_string()))?;
    if caller.tenant_id != vault.tenant_id {
        // A token for another tenant: challenge again, naming the vault's tenant.
        return Err(unauthorized(
            "AKV10032: Invalid issuer: the token is for another tenant.".into(),
        ));
    }
    Ok(caller)
}

/// Success bodies are JSON (200) or empty (204).
enum Success {
    Json(serde_json::Value),
    NoContent,
}

fn body_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::RequestTooLarge,
                format!("The request body exceeds {} bytes.", crate::MAX_BODY_BYTES),
            )
        } else {
            ApiError::new(
                ErrorCode::BadParameter,
                "The request body could not be read.",
            )
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadParameter,
            "The request body is empty.",
        ));
    }
    if !crate::is_json_object(&bytes) {
        return Err(ApiError::new(
            ErrorCode::BadParameter,
            "The request body must be a JSON object.",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| json_error(&e))
}

/// The formats `outContentType` may name (secrets spec 2025-07-01: "If an unsupported format is
/// specified, the request is rejected"). Only certificate-backed secrets are converted, and
/// Strongbox holds none, so a supported format returns the value as stored.
const OUT_CONTENT_TYPES: &[&str] = &["application/x-pkcs12", "application/x-pem-file"];

fn check_out_content_type(value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) if !OUT_CONTENT_TYPES.iter().any(|t| t.eq_ignore_ascii_case(v)) => {
            Err(ApiError::new(
                ErrorCode::BadParameter,
                format!(
                    "outContentType must be one of: {}.",
                    OUT_CONTENT_TYPES.join(", ")
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn to_json<T: serde::Serialize>(t: &T) -> Success {
    Success::Json(serde_json::to_value(t).expect("response types serialize"))
}

async fn run(
    app: &AppState,
    vault: &Arc<VaultRow>,
    info: &RequestInfo,
    caller: &Caller,
    parsed: Result<(Operation, Target), ErrorCode>,
    q: Query,
    body: Result<Bytes, BytesRejection>,
) -> Result<Success, ApiError> {
    match q.api_version.as_deref() {
        None => {
            return Err(ApiError::new(
                ErrorCode::BadParameter,
                "The 'api-version' query parameter is missing.",
            ));
        }
        Some(v) if !api_version_supported(v) => {
            return Err(ApiError::new(
                ErrorCode::BadParameter,
                format!(
                    "The api-version '{}' is not supported. Supported: {}.",
                    v.chars().take(32).collect::<String>(),
                    API_VERSIONS.join(", ")
                ),
            ));
        }
        Some(_) => {}
    }
    let (op, target) = parsed.map_err(|code| match code {
        ErrorCode::MethodNotAllowed => {
            ApiError::new(code, "The method is not allowed on this resource.")
        }
        _ => ApiError::new(ErrorCode::NotFound, "No such endpoint."),
    })?;
    let action = action(op).expect("parsed operations have an action");
    let access = if vault.enable_rbac {
        VaultAccess::Roles(
            app.store
                .list_role_assignments_for_principal(&caller.object_id)
                .await
                .map_err(DomainError::from)?,
        )
    } else {
        VaultAccess::Policies(
            app.store
                .list_access_policies(&vault.id)
                .await
                .map_err(DomainError::from)?,
        )
    };
    if op == Operation::SecretChangesGet {
        let names = match q.names.as_deref() {
            None => None,
            Some(list) => {
                let parsed = list
                    .split(',')
                    .map(strongbox_domain::names::secret_name)
                    .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
                if parsed.len() > strongbox_domain::authz::MAX_FEED_NAMES {
                    return Err(strongbox_domain::DomainError::BadParameter(format!(
                        "names lists at most {} secrets.",
                        strongbox_domain::authz::MAX_FEED_NAMES
                    ))
                    .into());
                }
                Some(parsed)
            }
        };
        let feed = authorize_feed(vault.clone(), &access, caller)?.with_names(names)?;
        let req = ChangesRequest::parse(
            q.cursor.as_deref(),
            q.timeout.as_deref(),
            q.max_results.as_deref(),
        )?;
        return Ok(to_json(&app.secrets.changes(&feed, info, req).await?));
    }
    let grant: Grant = authorize(
        vault.clone(),
        &access,
        caller,
        action,
        target.name.as_deref(),
    )?;
    let page = || -> Result<PageRequest, ApiError> {
        let max_results = match &q.max_results {
            None => None,
            Some(m) => Some(m.parse::<u32>().map_err(|_| {
                ApiError::new(ErrorCode::BadParameter, "maxresults must be an integer.")
            })?),
        };
        Ok(PageRequest {
            max_results,
            skip_token: q.skip_token.clone(),
        })
    };
    let name = target.name.as_deref().unwrap_or_default();
    let version = target.version.as_deref();
    let s = &app.secrets;
    Ok(match op {
        Operation::SecretSet => to_json(&s.set(&grant, info, name, body_json(body)?).await?),
        Operation::SecretGet => {
            check_out_content_type(q.out_content_type.as_deref())?;
            to_json(&s.get(&grant, info, name, version).await?)
        }
        Operation::SecretUpdate => to_json(
            &s.update(&grant, info, name, version, body_json(body)?)
                .await?,
        ),
        Operation::SecretList => to_json(&s.list(&grant, info, &page()?).await?),
        Operation::SecretListVersions => {
            to_json(&s.list_versions(&grant, info, name, &page()?).await?)
        }
        Operation::SecretDelete => to_json(&s.delete(&grant, info, name).await?),
        Operation::SecretGetDeleted => to_json(&s.get_deleted(&grant, info, name).await?),
        Operation::SecretListDeleted => to_json(&s.list_deleted(&grant, info, &page()?).await?),
        Operation::SecretRecover => to_json(&s.recover(&grant, info, name).await?),
        Operation::SecretPurge => {
            s.purge(&grant, info, name).await?;
            Success::NoContent
        }
        Operation::SecretBackup => to_json(&s.backup(&grant, info, name).await?),
        Operation::SecretRestore => to_json(&s.restore(&grant, info, body_json(body)?).await?),
        Operation::SecretChangesGet => unreachable!("answered before the secret operations"),
        Operation::Unknown => unreachable!("parse never yields Unknown"),
    })
}

/// Turns the outcome into a response. Successes were audited by the domain; a failure is audited
/// here, and the response waits for that record (if it cannot be written, the client gets 500).
async fn finish(
    app: &AppState,
    vault: &VaultRow,
    info: &RequestInfo,
    caller: Option<&Caller>,
    outcome: Result<Success, ApiError>,
) -> Response {
    match outcome {
        Ok(Success::Json(v)) => Json(v).into_response(),
        Ok(Success::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let entry = audit::entry(
                vault,
                info,
                caller,
                e.status(),
                None,
                app.secrets.clock().now_ms(),
            );
            if let Err(audit_err) = app.audit.append(entry).await {
                return ApiError::from(DomainError::from(audit_err)).into_response();
            }
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_operations_without_swallowing_names() {
        let p = |m: Method, path: &str| parse(&m, path).map(|(op, t)| (op, t.name, t.version));
        assert_eq!(
            p(Method::PUT, "/secrets/restore").unwrap().0,
            Operation::SecretSet
        );
        assert_eq!(
            p(Method::POST, "/secrets/restore").unwrap().0,
            Operation::SecretRestore
        );
        assert_eq!(
            p(Method::GET, "/secrets/versions").unwrap().0,
            Operation::SecretGet
        );
        assert_eq!(
            p(Method::GET, "/secrets/a/versions").unwrap().0,
            Operation::SecretListVersions
        );
        assert_eq!(
            p(Method::GET, "/secrets/a/").unwrap(),
            (Operation::SecretGet, Some("a".into()), None)
        );
        assert_eq!(
            p(Method::PATCH, "/secrets/a/v1").unwrap(),
            (Operation::SecretUpdate, Some("a".into()), Some("v1".into()))
        );
        assert_eq!(
            p(Method::POST, "/deletedsecrets/a/recover").unwrap().0,
            Operation::SecretRecover
        );
        assert_eq!(
            p(Method::POST, "/secrets/a"),
            Err(ErrorCode::MethodNotAllowed)
        );
        assert_eq!(p(Method::GET, "/keys/a"), Err(ErrorCode::NotFound));
        assert_eq!(
            p(Method::GET, "/changes").unwrap(),
            (Operation::SecretChangesGet, None, None)
        );
        assert_eq!(
            p(Method::GET, "/secrets/changes").unwrap(),
            (Operation::SecretGet, Some("changes".into()), None)
        );
        assert_eq!(
            p(Method::POST, "/changes"),
            Err(ErrorCode::MethodNotAllowed)
        );
        assert_eq!(p(Method::GET, "/changes/x"), Err(ErrorCode::NotFound));
        assert_eq!(p(Method::GET, "/secrets/a/b/c/d"), Err(ErrorCode::NotFound));
    }

    #[test]
    fn only_direct_subdomains_of_the_suffix_are_vaults() {
        assert_eq!(
            vault_name("dev.vault.localhost", "vault.localhost"),
            Some("dev")
        );
        assert_eq!(vault_name("a.dev.vault.localhost", "vault.localhost"), None);
        assert_eq!(vault_name("vault.localhost", "vault.localhost"), None);
        assert_eq!(vault_name("devvault.localhost", "vault.localhost"), None);
    }
}
