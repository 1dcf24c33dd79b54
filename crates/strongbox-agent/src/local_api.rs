//! The agent's local management API on its loopback port (`/api/...`, bearer token from the
//! 0600 file `api.token` in the data dir, so only the device's administrators can use it) and
//! `/metrics`. The CLI's `strongbox synced-secret` and `strongbox endpoint` commands call it.
//!
//! Edge operations are appended to `edge-audit.jsonl`, each record hash-chained to the one
//! before (a forced delete of a synced secret that endpoints still use is recorded there).

use crate::edge::{EdgeConfig, EdgeError, Endpoint, SyncedSecret};
use crate::sync::Shared;
use crate::targets::TargetError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const TOKEN_FILE: &str = "api.token";
pub const AGENT_FILE: &str = "agent.json";
pub const AUDIT_FILE: &str = "edge-audit.jsonl";
const MAX_BODY: usize = 64 * 1024;

pub struct Api {
    pub shared: Arc<Shared>,
    token: String,
    audit: std::sync::Mutex<()>,
}

fn error(e: EdgeError) -> Response {
    let mut r = (
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!({"error": {"code": e.code, "message": e.message}})),
    )
        .into_response();
    if e.status == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"strongbox-agent\""),
        );
    }
    r
}

/// Creates (once) the API token file and returns the token.
pub fn api_token(dir: &std::path::Path) -> Result<String, strongbox_client::Error> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => Ok(t.trim().to_string()),
        _ => {
            let t = hex::encode(strongbox_crypto::random_bytes::<32>());
            crate::state::write_atomically(&path, t.as_bytes())?;
            Ok(t)
        }
    }
}

impl Api {
    pub fn new(shared: Arc<Shared>, token: String) -> Arc<Api> {
        Arc::new(Api {
            shared,
            token,
            audit: std::sync::Mutex::new(()),
        })
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), EdgeError> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if strongbox_crypto::constant_time_eq(given.as_bytes(), self.token.as_bytes()) {
            Ok(())
        } else {
            Err(EdgeError {
                status: 401,
                code: "Unauthorized",
                message: format!(
                    "the agent API needs the bearer token in {TOKEN_FILE} of the agent's data dir"
                ),
            })
        }
    }

    /// Appends an edge operation to the hash-chained local audit log, durably, before the
    /// operation takes effect: an operation that cannot be recorded does not happen.
    fn record(&self, operation: &str, target: &str, properties: Value) -> Result<(), EdgeError> {
        let _guard = self.audit.lock().expect("audit lock");
        let path = self.shared.data_dir.join(AUDIT_FILE);
        let prev = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.lines().last().map(String::from))
            .and_then(|l| serde_json::from_str::<Value>(&l).ok())
            .and_then(|v| v["hash"].as_str().map(String::from))
            .unwrap_or_else(|| "0".repeat(64));
        let mut rec = json!({"time": crate::now(), "operationName": operation, "target": target,
            "properties": properties, "prevHash": prev});
        let hash = hex::encode(Sha256::digest(rec.to_string().as_bytes()));
        rec["hash"] = json!(hash);
        use std::io::Write;
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                writeln!(f, "{rec}")?;
                f.sync_all()
            });
        r.map_err(|e| EdgeError {
            status: 500,
            code: "AuditWriteFailed",
            message: format!(
                "the edge audit log {} could not be written ({e}); nothing was changed",
                path.display()
            ),
        })
    }

    fn synced_view(&self, s: &SyncedSecret) -> Value {
        let config = self.shared.config();
        let status = self.shared.status_of(&s.name);
        let mut v = serde_json::to_value(s).expect("synced secret serializes");
        v["status"] = status
            .map(|st| serde_json::to_value(st).expect("status serializes"))
            .unwrap_or(json!({"state": "Pending", "items": []}));
        v["endpoints"] = json!(config.users_of(&s.name));
        v
    }

    fn endpoint_view(&self, e: &Endpoint) -> Value {
        let config = self.shared.config();
        let mut v = serde_json::to_value(e).expect("endpoint serializes");
        v["status"] = match config.endpoint_ready(e) {
            Ok(()) => json!({"state": "Ready"}),
            Err(reason) => json!({"state": "Error", "reason": reason}),
        };
        v
    }
}

/// Applies `change` to the edge config: saved to `edge.json` first, then live, so a failed
/// save changes nothing.
fn save_changed(
    config: &mut EdgeConfig,
    dir: &std::path::Path,
    change: impl FnOnce(&mut EdgeConfig),
) -> Result<(), EdgeError> {
    let mut next = config.clone();
    change(&mut next);
    next.save(dir).map_err(|e| EdgeError {
        status: 500,
        code: "InternalError",
        message: e.to_string(),
    })?;
    *config = next;
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, EdgeError> {
    if body.len() > MAX_BODY {
        return Err(EdgeError {
            status: 413,
            code: "RequestTooLarge",
            message: format!("the body is larger than {MAX_BODY} bytes"),
        });
    }
    serde_json::from_slice(body)
        .map_err(|e| EdgeError::bad("BadRequest", format!("the body is not valid: {e}")))
}

/// The API once the device is activated (an agent started before activation serves only the
/// activation page until then).
#[derive(Default)]
pub struct ApiCell(
    pub std::sync::OnceLock<Arc<Api>>,
    /// Why the sync engine of an activated device did not start (e.g. a damaged edge.json).
    pub std::sync::Mutex<Option<String>>,
);

type S = State<Arc<ApiCell>>;

fn ready(cell: &ApiCell, headers: &HeaderMap) -> Result<Arc<Api>, EdgeError> {
    let api = cell
        .0
        .get()
        .ok_or_else(|| match cell.1.lock().ok().and_then(|e| e.clone()) {
            Some(why) => EdgeError {
                status: 503,
                code: "SyncEngineNotStarted",
                message: format!("the sync engine did not start: {why}"),
            },
            None => EdgeError {
                status: 503,
                code: "NotActivated",
                message: "this agent is not activated yet: activate it first".into(),
            },
        })?;
    api.authorized(headers)?;
    Ok(api.clone())
}

async fn info(State(cell): S, headers: HeaderMap) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    axum::Json(json!({"vaultName": api.shared.vault_name(), "vaultUri": api.shared.vault_uri(),
        "secretsDir": api.shared.secrets_dir, "uplinkDownSince": *api.shared.uplink_down_since.lock().expect("uplink lock"),
        "changeFeed": api.shared.feed_active.load(std::sync::atomic::Ordering::Relaxed),
        "accessError": *api.shared.access_error.lock().expect("access lock")}))
    .into_response()
}

async fn list_synced(State(cell): S, headers: HeaderMap) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let config = api.shared.config();
    let value: Vec<Value> = config
        .synced_secrets
        .values()
        .map(|s| api.synced_view(s))
        .collect();
    axum::Json(json!({ "value": value })).into_response()
}

async fn get_synced(State(cell): S, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    match api.shared.config().synced_secrets.get(&name) {
        Some(s) => axum::Json(api.synced_view(s)).into_response(),
        None => error(EdgeError::not_found("synced secret", &name)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PutQuery {
    /// Check only; save nothing (the CLI asks before it writes new values to the vault).
    #[serde(default)]
    validate_only: bool,
}

async fn put_synced(
    State(cell): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<PutQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let mut s: SyncedSecret = match parse(&body) {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    if s.name != name {
        return error(EdgeError::bad(
            "InvalidName",
            format!("the body names {:?}, the path {name:?}", s.name),
        ));
    }
    let Ok(Query(q)) = q else {
        return error(EdgeError::bad(
            "BadParameter",
            "the only query parameter is validateOnly=true|false",
        ));
    };
    if let Err(e) = s.validate(&api.shared.vault_uri()) {
        return error(e);
    }
    let created = {
        let mut config = api.shared.config.write().expect("config lock");
        // Keys that endpoints use must stay.
        for ep in config.users_of(&name) {
            let e = &config.endpoints[&ep];
            for (synced, key) in e.secret_uses() {
                if synced == name && !s.references.iter().any(|r| r.key == key) {
                    return error(EdgeError::conflict(
                        "SyncedSecretInUse",
                        format!(
                            "the endpoint {ep} uses the key {key} of {name}; change the endpoint first"
                        ),
                    ));
                }
            }
        }
        let created = !config.synced_secrets.contains_key(&name);
        if q.validate_only {
            return (
                StatusCode::OK,
                axum::Json(serde_json::to_value(&s).expect("serializes")),
            )
                .into_response();
        }
        if let Err(e) = api.record(
            if created {
                "SyncedSecretCreate"
            } else {
                "SyncedSecretUpdate"
            },
            &name,
            json!({"references": s.references, "target": s.target}),
        ) {
            return error(e);
        }
        if let Err(e) = save_changed(&mut config, &api.shared.data_dir, |c| {
            c.synced_secrets.insert(name.clone(), s.clone());
        }) {
            return error(e);
        }
        created
    };
    api.shared.wake.notify_one();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(api.synced_view(&s))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete_synced(
    State(cell): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let Ok(Query(q)) = q else {
        return error(EdgeError::bad(
            "BadParameter",
            "the only query parameter is force=true|false",
        ));
    };
    let (removed, _users) = {
        let mut config = api.shared.config.write().expect("config lock");
        let Some(s) = config.synced_secrets.get(&name).cloned() else {
            return error(EdgeError::not_found("synced secret", &name));
        };
        let users = config.users_of(&name);
        if !users.is_empty() && !q.force {
            return error(EdgeError::conflict(
                "SyncedSecretInUse",
                format!(
                    "the synced secret {name} is used by the endpoint(s) {}; remove those references first, or force the delete (it is audited and leaves them in an error state)",
                    users.join(", ")
                ),
            ));
        }
        if let Err(e) = api.record(
            if users.is_empty() {
                "SyncedSecretDelete"
            } else {
                "SyncedSecretForcedDelete"
            },
            &name,
            json!({"endpointsLeftInError": users, "references": s.references}),
        ) {
            return error(e);
        }
        if let Err(e) = save_changed(&mut config, &api.shared.data_dir, |c| {
            c.synced_secrets.remove(&name);
        }) {
            return error(e);
        }
        (s, users)
    };
    // The edge copy goes now; the vault's secrets are never touched.
    let target_result = match api.shared.target(&removed.target).await {
        Ok(t) => t.remove(&name).await,
        Err(e) => Err(TargetError::Api(e)),
    };
    api.shared.wake.notify_one();
    match target_result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        // Nothing of ours is there (someone else's object holds the name): the delete is
        // complete; the caller is told the foreign object was left alone.
        Err(TargetError::NotOurs(m)) => (
            StatusCode::OK,
            axum::Json(json!({"warning": format!(
                "the synced secret is deleted; its target was left alone: {m}"
            )})),
        )
            .into_response(),
        Err(e) => error(EdgeError {
            status: 500,
            code: "TargetError",
            message: format!(
                "the synced secret is deleted, but its target could not be removed: {e}; the agent keeps trying"
            ),
        }),
    }
}

async fn sync_now(State(cell): S, headers: HeaderMap) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    api.shared.wake.notify_one();
    StatusCode::ACCEPTED.into_response()
}

async fn list_endpoints(State(cell): S, headers: HeaderMap) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let config = api.shared.config();
    let value: Vec<Value> = config
        .endpoints
        .values()
        .map(|e| api.endpoint_view(e))
        .collect();
    axum::Json(json!({ "value": value })).into_response()
}

async fn get_endpoint(State(cell): S, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    match api.shared.config().endpoints.get(&name) {
        Some(e) => axum::Json(api.endpoint_view(e)).into_response(),
        None => error(EdgeError::not_found("endpoint", &name)),
    }
}

async fn put_endpoint(
    State(cell): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let e: Endpoint = match parse(&body) {
        Ok(e) => e,
        Err(err) => return error(err),
    };
    if e.name != name {
        return error(EdgeError::bad(
            "InvalidName",
            format!("the body names {:?}, the path {name:?}", e.name),
        ));
    }
    let created = {
        let mut config = api.shared.config.write().expect("config lock");
        if let Err(err) = e.validate(&config) {
            return error(err);
        }
        let created = !config.endpoints.contains_key(&name);
        if let Err(err) = api.record(
            if created {
                "EndpointCreate"
            } else {
                "EndpointUpdate"
            },
            &name,
            json!({"authentication": e.authentication}),
        ) {
            return error(err);
        }
        if let Err(e) = save_changed(&mut config, &api.shared.data_dir, |c| {
            c.endpoints.insert(name.clone(), e.clone());
        }) {
            return error(e);
        }
        created
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(api.endpoint_view(&e))).into_response()
}

async fn delete_endpoint(State(cell): S, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let api = match ready(&cell, &headers) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    {
        let mut config = api.shared.config.write().expect("config lock");
        if !config.endpoints.contains_key(&name) {
            return error(EdgeError::not_found("endpoint", &name));
        }
        if let Err(e) = api.record("EndpointDelete", &name, json!({})) {
            return error(e);
        }
        if let Err(e) = save_changed(&mut config, &api.shared.data_dir, |c| {
            c.endpoints.remove(&name);
        }) {
            return error(e);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn metrics(State(cell): S) -> Response {
    let body = cell
        .0
        .get()
        .map(|a| a.shared.metrics.encode())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub fn routes(cell: Arc<ApiCell>) -> Router {
    Router::new()
        .route("/api/info", get(info))
        .route("/api/synced-secrets", get(list_synced))
        .route(
            "/api/synced-secrets/{name}",
            get(get_synced).put(put_synced).delete(delete_synced),
        )
        .route("/api/sync", axum::routing::post(sync_now))
        .route("/api/endpoints", get(list_endpoints))
        .route(
            "/api/endpoints/{name}",
            get(get_endpoint).put(put_endpoint).delete(delete_endpoint),
        )
        .route("/metrics", get(metrics))
        .with_state(cell)
}
