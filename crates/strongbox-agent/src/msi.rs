//! The agent's local managed-identity endpoint, in the Azure Arc form (issue 5 point 6): a
//! workload on the device sets only `IDENTITY_ENDPOINT` and `IMDS_ENDPOINT` (see [`env_vars`])
//! and an unmodified azure-identity `ManagedIdentityCredential` gets tokens of the device's
//! identity, as on an Arc-enabled server (research edge-device §3.2):
//!
//! 1. `GET /metadata/identity/oauth2/token?api-version=2020-06-01&resource=R` with
//!    `Metadata: true` (without it: 400) → 401 `WWW-Authenticate: Basic realm=<file>`, a fresh
//!    single-use `.key` file (mode 0600, expires after 60 s) in the challenge directory. Only a
//!    process allowed to read that directory can answer.
//! 2. The same request with `Authorization: Basic <file content>` → 200, IMDS-shaped JSON whose
//!    values are all strings, `expires_on` being the token's `exp`. A reused or wrong content → 401.
//!
//! azure-identity (through MSAL) reads challenge files only from `/var/opt/azcmagent/tokens` on
//! Linux, so that is the default directory. The challenge files and query rules are the
//! server's own (`strongbox_identity::arc`, `strongbox_identity::managed::parse_arc_query`).
//!
//! Tokens for resource R are the device identity's tokens for scope `R/.default`, cached per
//! resource until 5 minutes before expiry; while the token service cannot be reached a cached
//! token is still served until it expires, so workloads ride out a short outage.

use crate::Result;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strongbox_domain::clock::Clock;
use strongbox_identity::arc::{self, ArcChallenges, ArcError};
use strongbox_identity::managed::{ManagedFailure, parse_arc_query};

/// The only directory azure-identity reads Arc challenge files from on Linux.
pub const DEFAULT_CHALLENGE_DIR: &str = "/var/opt/azcmagent/tokens";
/// The token path, as on an Arc-enabled server (`http://localhost:40342/metadata/...`).
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// A cached token is renewed this long before it expires (azure-core asks for a new one then).
pub const REFRESH_BEFORE_SECS: i64 = 300;
/// The agent serves one identity, the device's: every challenge belongs to it.
const ENDPOINT_ID: &str = "device";

/// The environment a workload needs: `IDENTITY_ENDPOINT` and `IMDS_ENDPOINT` (and no
/// `IDENTITY_HEADER`, which would select the App Service form).
pub fn env_vars(port: u16) -> [(&'static str, String); 2] {
    [
        (
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:{port}{TOKEN_PATH}"),
        ),
        ("IMDS_ENDPOINT", format!("http://127.0.0.1:{port}")),
    ]
}

/// Where the endpoint's tokens come from: the activated agent.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A token for `scope` and its expiry (Unix seconds).
    async fn token_for(&self, scope: &str) -> Result<(String, i64)>;
}

#[async_trait::async_trait]
impl TokenSource for crate::Agent {
    async fn token_for(&self, scope: &str) -> Result<(String, i64)> {
        crate::Agent::token_for(self, scope).await
    }
}

#[derive(Clone)]
struct Cached {
    token: String,
    exp: i64,
    not_before: i64,
}

/// The endpoint's state; [`MsiEndpoint::router`] serves it.
pub struct MsiEndpoint {
    source: Arc<dyn TokenSource>,
    /// The challenge directory, or why it cannot be used (then every request gets a 500 that
    /// says so; the rest of the agent runs on).
    challenges: std::result::Result<ArcChallenges, String>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, Cached>>,
}

fn failure(status: u16, error: &'static str, message: impl Into<String>) -> ManagedFailure {
    ManagedFailure {
        status,
        error,
        message: message.into(),
    }
}

fn reply(f: ManagedFailure) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"error": f.error, "error_description": f.message})),
    )
        .into_response()
}

impl MsiEndpoint {
    /// Challenge files go to `challenge_dir` (created 0700 if missing; old leftovers of ours
    /// removed).
    pub fn new(
        source: Arc<dyn TokenSource>,
        challenge_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> MsiEndpoint {
        let challenges = ArcChallenges::open(challenge_dir, clock.now_ms())
            .map_err(|e| format!("{}: {e}", challenge_dir.display()));
        MsiEndpoint {
            source,
            challenges,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The challenge directory in use, or why there is none.
    pub fn challenge_dir(&self) -> std::result::Result<PathBuf, String> {
        match &self.challenges {
            Ok(c) => Ok(c.dir().to_path_buf()),
            Err(e) => Err(e.clone()),
        }
    }

    /// `GET /metadata/identity/oauth2/token`, to merge into the agent's loopback server.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route(TOKEN_PATH, get(token)).with_state(self)
    }

    /// A token for `resource`: from the cache while it has more than [`REFRESH_BEFORE_SECS`]
    /// left, else from the source; if the source fails, a cached token that has not expired.
    async fn token(&self, resource: &str) -> std::result::Result<Cached, ManagedFailure> {
        let key = resource.trim_end_matches('/').to_string();
        let now = self.clock.now();
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some(c) = &cached
            && now < c.exp - REFRESH_BEFORE_SECS
        {
            return Ok(c.clone());
        }
        match self.source.token_for(&format!("{key}/.default")).await {
            Ok((token, exp)) => {
                let fresh = Cached {
                    not_before: crate::unverified_claim(&token, "nbf").unwrap_or(now),
                    token,
                    exp,
                };
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(key, fresh.clone());
                }
                Ok(fresh)
            }
            Err(e) => {
                if let Some(c) = cached.filter(|c| now < c.exp) {
                    tracing::warn!(error = %e, "token service unavailable; serving a cached managed-identity token");
                    return Ok(c);
                }
                Err(match e {
                    strongbox_client::Error::Auth { code, message } if code == "invalid_scope" => {
                        failure(400, "invalid_resource", message)
                    }
                    strongbox_client::Error::Auth { message, .. } => failure(
                        400,
                        "invalid_request",
                        format!("The token service refused the device identity: {message}"),
                    ),
                    strongbox_client::Error::Http {
                        status: 400,
                        message,
                        ..
                    } => failure(400, "invalid_request", message),
                    other => failure(
                        503,
                        "temporarily_unavailable",
                        format!(
                            "The token service cannot be reached and no token is cached: {other}"
                        ),
                    ),
                })
            }
        }
    }
}

async fn token(State(m): State<Arc<MsiEndpoint>>, uri: Uri, headers: HeaderMap) -> Response {
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|h| h.to_str().ok());
    if !arc::metadata_header_ok(header_str(header::HeaderName::from_static("metadata"))) {
        return reply(failure(
            400,
            "invalid_request",
            "Required metadata header not specified",
        ));
    }
    let pairs: Vec<(String, String)> = match uri.query().map(serde_urlencoded::from_str) {
        None => vec![],
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return reply(failure(
                400,
                "invalid_request",
                "The query string is malformed.",
            ));
        }
    };
    let query = match parse_arc_query(&pairs) {
        Ok(q) => q,
        Err(f) => return reply(f),
    };
    if query.selector.is_some() {
        return reply(failure(
            400,
            "invalid_request",
            "This endpoint serves only the device's own (system-assigned) identity: give no client_id, object_id or msi_res_id.",
        ));
    }
    let challenges = match &m.challenges {
        Ok(c) => c,
        Err(e) => {
            return reply(failure(
                500,
                "server_error",
                format!("The challenge directory is not usable ({e}); see the agent's log."),
            ));
        }
    };
    let now_ms = m.clock.now_ms();
    match arc::basic_credential(header_str(header::AUTHORIZATION)) {
        None => match challenges.issue(ENDPOINT_ID, now_ms) {
            Ok(path) => {
                let mut r = reply(failure(
                    401,
                    "unauthorized_client",
                    "Read the challenge file named in WWW-Authenticate and retry with Authorization: Basic <its content>.",
                ));
                match HeaderValue::from_str(&arc::www_authenticate(&path)) {
                    Ok(v) => {
                        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                        r
                    }
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
            Err(ArcError::Busy) => reply(failure(
                429,
                "too_many_requests",
                "Too many outstanding challenges; retry shortly.",
            )),
            Err(e) => {
                tracing::error!(error = %e, "writing a challenge file failed");
                reply(failure(
                    500,
                    "server_error",
                    "Writing the challenge file failed; see the agent's log.",
                ))
            }
        },
        Some(content) => {
            if !challenges.redeem(ENDPOINT_ID, content, now_ms) {
                return reply(failure(
                    401,
                    "invalid_client",
                    "The challenge response is not valid (wrong, expired or already used).",
                ));
            }
            match m.token(&query.resource).await {
                Ok(t) => {
                    let now = m.clock.now();
                    let lifetime = (t.exp - now).max(0).to_string();
                    axum::Json(json!({
                        "access_token": t.token,
                        "refresh_token": "",
                        "expires_in": lifetime,
                        "ext_expires_in": lifetime,
                        "expires_on": t.exp.to_string(),
                        "not_before": t.not_before.to_string(),
                        "resource": query.resource,
                        "token_type": "Bearer",
                    }))
                    .into_response()
                }
                Err(f) => reply(f),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use strongbox_domain::clock::ManualClock;

    const T0_MS: i64 = 1_800_000_000_000;

    /// Stands in for the token service: a JWT-shaped token naming its scope and a serial number,
    /// valid for an hour from the injected clock. `down` simulates an outage.
    struct Issuer {
        clock: Arc<ManualClock>,
        calls: AtomicUsize,
        down: AtomicBool,
    }

    #[async_trait::async_trait]
    impl TokenSource for Issuer {
        async fn token_for(&self, scope: &str) -> Result<(String, i64)> {
            if self.down.load(Ordering::SeqCst) {
                return Err(strongbox_client::Error::Transport(
                    "connection refused".into(),
                ));
            }
            if !scope.starts_with("https://") {
                return Err(strongbox_client::Error::Auth {
                    code: "invalid_scope".into(),
                    message: "AADSTS70011: The provided scope is not valid.".into(),
                });
            }
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.clock.now();
            use base64::Engine;
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(json!({"nbf": now - 5, "exp": now + 3600}).to_string());
            Ok((format!("h.{claims}.{scope}#{n}"), now + 3600))
        }
    }

    struct Running {
        base: String,
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        issuer: Arc<Issuer>,
        http: reqwest::Client,
    }

    async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0_MS));
        let issuer = Arc::new(Issuer {
            clock: clock.clone(),
            calls: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let m = Arc::new(MsiEndpoint::new(
            issuer.clone(),
            &dir.path().join("tokens"),
            clock.clone(),
        ));
        assert_eq!(m.challenge_dir().unwrap(), dir.path().join("tokens"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, m.router()).await });
        Running {
            base: env_vars(port)[0].1.clone(),
            dir,
            clock,
            issuer,
            http: reqwest::Client::new(),
        }
    }

    impl Running {
        async fn get(
            &self,
            resource: &str,
            metadata: bool,
            basic: Option<&str>,
        ) -> (u16, HeaderMap, serde_json::Value) {
            let mut req = self.http.get(url(
                &self.base,
                &[("api-version", "2020-06-01"), ("resource", resource)],
            ));
            if metadata {
                req = req.header("Metadata", "true");
            }
            if let Some(b) = basic {
                req = req.header("Authorization", format!("Basic {b}"));
            }
            let r = req.send().await.unwrap();
            let (s, h) = (r.status().as_u16(), r.headers().clone());
            (s, h, r.json().await.unwrap_or_default())
        }

        /// The challenge round trip: (status, body) of the retry.
        async fn fetch(&self, resource: &str) -> (u16, serde_json::Value) {
            let (s, h, _) = self.get(resource, true, None).await;
            assert_eq!(s, 401);
            let path = realm(&h);
            let secret = std::fs::read_to_string(&path).unwrap();
            let (s, _, body) = self.get(resource, true, Some(&secret)).await;
            (s, body)
        }
    }

    fn url(base: &str, pairs: &[(&str, &str)]) -> String {
        format!("{base}?{}", serde_urlencoded::to_string(pairs).unwrap())
    }

    fn realm(h: &HeaderMap) -> PathBuf {
        let v = h[header::WWW_AUTHENTICATE].to_str().unwrap();
        let (scheme, path) = v.split_once('=').unwrap();
        assert_eq!(scheme, "Basic realm");
        PathBuf::from(path)
    }

    const VAULT: &str = "https://vault.localhost:8443";

    #[tokio::test]
    async fn the_arc_challenge_then_an_imds_shaped_token() {
        let r = start().await;
        // No Metadata header: 400, and no challenge file written.
        let (s, _, body) = r.get(VAULT, false, None).await;
        assert_eq!(s, 400);
        assert_eq!(
            body["error_description"],
            "Required metadata header not specified"
        );

        let (s, h, _) = r.get(VAULT, true, None).await;
        assert_eq!(s, 401);
        let path = realm(&h);
        assert_eq!(path.parent(), Some(r.dir.path().join("tokens").as_path()));
        assert!(path.extension().is_some_and(|e| e == "key"));
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(meta.len() <= 4096);
        let secret = std::fs::read_to_string(&path).unwrap();

        // A wrong secret is refused (and does not spend the real one).
        let (s, _, body) = r.get(VAULT, true, Some("not-the-secret")).await;
        assert_eq!(s, 401);
        assert!(body.get("access_token").is_none());

        let (s, _, body) = r.get(VAULT, true, Some(&secret)).await;
        assert_eq!(s, 200, "{body}");
        let now = T0_MS / 1000;
        for k in [
            "access_token",
            "expires_in",
            "expires_on",
            "not_before",
            "resource",
            "token_type",
        ] {
            assert!(body[k].is_string(), "{k} is a string: {body}");
        }
        assert!(
            body["access_token"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{VAULT}/.default#0"))
        );
        assert_eq!(body["expires_on"], (now + 3600).to_string());
        assert_eq!(body["expires_in"], "3600");
        assert_eq!(body["not_before"], (now - 5).to_string());
        assert_eq!(body["resource"], VAULT);
        assert_eq!(body["token_type"], "Bearer");
        assert!(!path.exists(), "a redeemed challenge file is removed");

        // Reused: refused.
        let (s, _, body) = r.get(VAULT, true, Some(&secret)).await;
        assert_eq!(s, 401);
        assert!(body.get("access_token").is_none());
    }

    #[tokio::test]
    async fn a_challenge_expires_after_a_minute() {
        let r = start().await;
        let (_, h, _) = r.get(VAULT, true, None).await;
        let secret = std::fs::read_to_string(realm(&h)).unwrap();
        r.clock.advance_secs(61);
        let (s, _, _) = r.get(VAULT, true, Some(&secret)).await;
        assert_eq!(s, 401);
    }

    #[tokio::test]
    async fn bad_queries_and_foreign_identities_are_refused() {
        let r = start().await;
        for q in [
            vec![("api-version", "2020-06-01")],
            vec![("resource", VAULT)],
            vec![("api-version", "1999-01-01"), ("resource", VAULT)],
            vec![
                ("api-version", "2020-06-01"),
                ("resource", VAULT),
                ("client_id", "x"),
            ],
            vec![
                ("api-version", "2020-06-01"),
                ("resource", VAULT),
                ("bogus", "1"),
            ],
        ] {
            let resp = r
                .http
                .get(url(&r.base, &q))
                .header("Metadata", "true")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 400, "{q:?}");
        }
        // 2019-11-01 is accepted too.
        let resp = r
            .http
            .get(url(
                &r.base,
                &[("api-version", "2019-11-01"), ("resource", VAULT)],
            ))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        // A resource the token service does not know.
        let (s, body) = r.fetch("urn:nothing").await;
        assert_eq!(s, 400);
        assert_eq!(body["error"], "invalid_resource");
    }

    #[tokio::test]
    async fn tokens_are_cached_per_resource_and_outlive_a_short_outage() {
        let r = start().await;
        let (_, a) = r.fetch(VAULT).await;
        let (_, b) = r.fetch(VAULT).await;
        assert_eq!(
            a["access_token"], b["access_token"],
            "served from the cache"
        );
        assert_eq!(r.issuer.calls.load(Ordering::SeqCst), 1);
        let (_, other) = r.fetch("https://management.localhost").await;
        assert_ne!(other["access_token"], a["access_token"]);
        assert_eq!(r.issuer.calls.load(Ordering::SeqCst), 2);
        // Trailing slash: the same resource.
        r.fetch(&format!("{VAULT}/")).await;
        assert_eq!(r.issuer.calls.load(Ordering::SeqCst), 2);

        // Ten minutes later the cached token still has 50 min: still served, 10 s fewer left.
        r.clock.advance_secs(600);
        let (_, c) = r.fetch(VAULT).await;
        assert_eq!(c["access_token"], a["access_token"]);
        assert_eq!(c["expires_in"], "3000");

        // The token service goes away; within 5 minutes of expiry the cached token is still
        // served while it is valid, then the outage shows.
        r.issuer.down.store(true, Ordering::SeqCst);
        r.clock.advance_secs(3600 - 600 - 200);
        let (s, d) = r.fetch(VAULT).await;
        assert_eq!(s, 200);
        assert_eq!(d["access_token"], a["access_token"]);
        assert_eq!(d["expires_in"], "200");
        r.clock.advance_secs(201);
        let (s, e) = r.fetch(VAULT).await;
        assert_eq!(s, 503, "{e}");
        assert_eq!(e["error"], "temporarily_unavailable");

        // Back: a fresh token, fetched once 5 minutes before the old one's end.
        r.issuer.down.store(false, Ordering::SeqCst);
        let (s, f) = r.fetch(VAULT).await;
        assert_eq!(s, 200);
        assert_ne!(f["access_token"], a["access_token"]);
        let calls = r.issuer.calls.load(Ordering::SeqCst);
        r.clock.advance_secs(3600 - REFRESH_BEFORE_SECS - 1);
        r.fetch(VAULT).await;
        assert_eq!(r.issuer.calls.load(Ordering::SeqCst), calls);
        r.clock.advance_secs(2);
        r.fetch(VAULT).await;
        assert_eq!(r.issuer.calls.load(Ordering::SeqCst), calls + 1);
    }

    #[tokio::test]
    async fn an_unusable_challenge_dir_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let clock = Arc::new(ManualClock::new(T0_MS));
        let issuer = Arc::new(Issuer {
            clock: clock.clone(),
            calls: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let m = Arc::new(MsiEndpoint::new(issuer, &file.join("tokens"), clock));
        assert!(m.challenge_dir().is_err());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, m.router()).await });
        let resp = reqwest::Client::new()
            .get(url(
                &env_vars(port)[0].1,
                &[("api-version", "2020-06-01"), ("resource", VAULT)],
            ))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 500);
        assert!(resp.text().await.unwrap().contains("challenge directory"));
    }
}
