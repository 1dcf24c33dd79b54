//! `strongbox agent run`: the resync loop and the local page. The page is plain HTML on
//! 127.0.0.1 only; the activation form carries a one-time token issued with the page, and the
//! POST is refused without it, or when Host/Origin name another site (DNS rebinding, CSRF).

use crate::{Agent, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Largest form body.
const MAX_FORM: usize = 16 * 1024;
/// Page tokens kept (oldest dropped first).
const MAX_TOKENS: usize = 64;

struct Shared {
    data_dir: PathBuf,
    server_ca: Option<Vec<u8>>,
    port: u16,
    agent: Mutex<Option<Agent>>,
    tokens: std::sync::Mutex<VecDeque<String>>,
    last: std::sync::Mutex<String>,
    /// The sync engine's API once running, and how to start it.
    cell: Arc<crate::local_api::ApiCell>,
    sync: SyncOptions,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The whole page around `body`: its language declared and one `main` landmark (axe-core's
/// `html-has-lang` and `region`).
fn document(body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Strongbox edge agent</title></head><body><main><h1>Strongbox edge agent</h1>{body}</main></body></html>"
    )
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = document(body);
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(html),
    )
        .into_response()
}

/// Every route answers only requests addressed to this loopback port by IP or `localhost`:
/// a web page that rebinds its own name to 127.0.0.1 (DNS rebinding) gets nothing.
async fn loopback_only(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = [
        format!("127.0.0.1:{}", s.port),
        format!("localhost:{}", s.port),
        format!("[::1]:{}", s.port),
    ]
    .iter()
    .any(|h| h == host);
    if !ok {
        return (StatusCode::MISDIRECTED_REQUEST, "wrong host\n").into_response();
    }
    next.run(req).await
}

/// Only this page's own origin may talk to it.
fn same_site(s: &Shared, headers: &HeaderMap) -> bool {
    let ok_host =
        |h: &str| h == format!("127.0.0.1:{}", s.port) || h == format!("localhost:{}", s.port);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(o) => o.strip_prefix("http://").is_some_and(ok_host),
    };
    ok_host(host) && origin_ok
}

async fn show(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !same_site(&s, &headers) {
        return page(StatusCode::BAD_REQUEST, "<p>Wrong host.</p>");
    }
    let agent = s.agent.lock().await;
    let last = s.last.lock().map(|l| l.clone()).unwrap_or_default();
    if let Some(a) = agent.as_ref() {
        let st = a.state();
        return page(
            StatusCode::OK,
            &format!(
                "<p>Activated: device <b>{}</b>, vault <b>{}</b>.</p><p>{}</p>",
                escape(&st.device_name),
                escape(&st.vault_name),
                escape(&last)
            ),
        );
    }
    let token = strongbox_crypto::random_hex_id();
    if let Ok(mut t) = s.tokens.lock() {
        if t.len() >= MAX_TOKENS {
            t.pop_front();
        }
        t.push_back(token.clone());
    }
    page(StatusCode::OK, &activation_form(&token))
}

/// The activation form; every field has a label (axe-core's `label`, a critical rule).
fn activation_form(token: &str) -> String {
    format!(
        "<p>Not activated. Paste the activation key from <code>strongbox device activation-key</code>.</p>\
<form method=\"post\" action=\"/activate\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
<label for=\"activationKey\">Activation key</label><br>\
<textarea id=\"activationKey\" name=\"activationKey\" rows=\"6\" cols=\"80\" required autocomplete=\"off\" spellcheck=\"false\"></textarea><br>\
<button type=\"submit\">Activate</button></form>"
    )
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Form {
    csrf: String,
    activation_key: String,
}

async fn activate(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_site(&s, &headers) {
        return page(StatusCode::FORBIDDEN, "<p>Cross-site request refused.</p>");
    }
    if body.len() > MAX_FORM {
        return page(StatusCode::PAYLOAD_TOO_LARGE, "<p>Too large.</p>");
    }
    let Ok(form) = serde_urlencoded::from_bytes::<Form>(&body) else {
        return page(StatusCode::BAD_REQUEST, "<p>Malformed form.</p>");
    };
    // The token is spent whether or not the activation succeeds.
    let known = s.tokens.lock().is_ok_and(|mut t| {
        let found = t
            .iter()
            .position(|x| strongbox_crypto::constant_time_eq(x.as_bytes(), form.csrf.as_bytes()));
        found.map(|i| t.remove(i)).is_some()
    });
    if !known {
        return page(
            StatusCode::FORBIDDEN,
            "<p>The form expired or did not come from this page; <a href=\"/\">reload it</a>.</p>",
        );
    }
    let mut agent = s.agent.lock().await;
    if agent.is_some() {
        return page(StatusCode::CONFLICT, "<p>Already activated.</p>");
    }
    match crate::activate(&s.data_dir, &form.activation_key, s.server_ca.as_deref()).await {
        Ok(mut a) => {
            let name = a.state().device_name.clone();
            let synced = match a.sync().await {
                Ok(r) => r.to_string(),
                Err(e) => format!("device secrets not synced yet: {e}"),
            };
            println!("activated device {name}; {synced}");
            if let Err(e) = start_sync(&s.data_dir, &s.sync, &s.cell) {
                eprintln!("warning: the sync engine did not start: {e}");
                if let Ok(mut why) = s.cell.1.lock() {
                    *why = Some(e.to_string());
                }
            }
            if let Ok(mut l) = s.last.lock() {
                *l = synced.clone();
            }
            *agent = Some(a);
            page(
                StatusCode::OK,
                &format!(
                    "<p>Activated device <b>{}</b>.</p><p>{}</p>",
                    escape(&name),
                    escape(&synced)
                ),
            )
        }
        Err(e) => {
            let status = e
                .status()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .filter(|c| c.is_client_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            page(
                status,
                &format!(
                    "<p>Activation failed: {}</p><p><a href=\"/\">Try again</a></p>",
                    escape(&e.to_string())
                ),
            )
        }
    }
}

/// How the agent syncs synced secrets to the edge.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Where files targets go unless a synced secret names its own dir.
    pub secrets_dir: PathBuf,
    /// Full re-read of every referenced secret (and the poll interval without a change feed).
    pub rotation: Duration,
    /// Poll only, never the change feed (for uplinks whose proxies cut long requests).
    pub no_change_feed: bool,
    /// Modes and group of files targets.
    pub files: crate::targets::files::FileOptions,
}

/// Starts the sync engine of an activated device and publishes its local API.
fn start_sync(
    data_dir: &std::path::Path,
    sync: &SyncOptions,
    cell: &crate::local_api::ApiCell,
) -> Result<()> {
    if cell.0.get().is_some() {
        return Ok(());
    }
    let agent = crate::Agent::open(data_dir)?;
    let st = agent.state();
    let shared = Arc::new(crate::sync::Shared::new(
        data_dir.to_path_buf(),
        sync.secrets_dir.clone(),
        st.vault_uri.clone(),
        st.vault_name.clone(),
        sync.files,
    )?);
    let engine =
        crate::sync::Engine::new(agent, shared.clone(), sync.rotation, !sync.no_change_feed)?;
    let token = crate::local_api::api_token(data_dir)?;
    let _ = cell.0.set(crate::local_api::Api::new(shared, token));
    tokio::spawn(engine.run());
    Ok(())
}

/// The device identity's tokens for the managed-identity endpoint, once the agent is activated.
/// Its own copy of the activated device (opened on first use), so token requests never wait
/// behind a device-secrets sync that holds the page's agent.
struct DeviceTokens {
    data_dir: PathBuf,
    agent: std::sync::OnceLock<crate::Agent>,
}

#[async_trait::async_trait]
impl crate::msi::TokenSource for DeviceTokens {
    async fn token_for(&self, scope: &str) -> Result<(String, i64)> {
        if self.agent.get().is_none()
            && let Ok(a) = crate::Agent::open(&self.data_dir)
        {
            let _ = self.agent.set(a);
        }
        match self.agent.get() {
            Some(agent) => match agent.token_for(scope).await {
                Ok((token, exp)) => {
                    // Kept sealed, so workloads still get a token after an agent restart
                    // while the uplink is down.
                    let kept = crate::cache::TokenCache::keep(
                        &agent.dir,
                        scope,
                        &token,
                        exp,
                        crate::now(),
                    );
                    if let Err(e) = kept {
                        eprintln!("warning: keeping the identity token: {e}");
                    }
                    Ok((token, exp))
                }
                Err(
                    e @ (strongbox_client::Error::Transport(_)
                    | strongbox_client::Error::Http { status: 500.., .. }),
                ) => match crate::cache::TokenCache::load(&agent.dir).get(scope, crate::now()) {
                    Some(kept) => Ok(kept),
                    None => Err(e),
                },
                Err(e) => Err(e),
            },
            None => Err(strongbox_client::Error::Http {
                status: 400,
                code: "identity_not_found".into(),
                message: "Identity not found: the agent is not activated yet.".into(),
            }),
        }
    }
}

/// Serves the page and the managed-identity endpoint ([`crate::msi`], challenge files in
/// `challenge_dir`) on 127.0.0.1:`port` (0 picks one; the addresses are printed) and re-syncs
/// the device secrets every `poll`, reporting each sync that changed something. Once the device
/// is activated, also runs the sync engine and serves the local API (`agent.json` in the data
/// dir says where, `api.token` holds its bearer token).
pub async fn run(
    data_dir: PathBuf,
    server_ca: Option<Vec<u8>>,
    port: u16,
    poll: Duration,
    challenge_dir: PathBuf,
    sync: SyncOptions,
) -> Result<()> {
    // One agent per data dir: it is the only writer of the files only it writes (see state).
    let _running = crate::state::run_lock(&data_dir)?;
    let agent = match crate::Agent::open(&data_dir) {
        Ok(a) => Some(a),
        Err(strongbox_client::Error::Config(m)) if m.contains("no activated device") => None,
        Err(e) => return Err(e),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| strongbox_client::Error::Config(format!("binding 127.0.0.1:{port}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| strongbox_client::Error::Config(e.to_string()))?
        .port();
    let shared = Arc::new(Shared {
        data_dir,
        server_ca,
        port,
        agent: Mutex::new(agent),
        tokens: std::sync::Mutex::new(VecDeque::new()),
        last: std::sync::Mutex::new(String::new()),
        cell: Arc::new(crate::local_api::ApiCell::default()),
        sync,
    });
    let cell = shared.cell.clone();
    let msi = Arc::new(crate::msi::MsiEndpoint::new(
        Arc::new(DeviceTokens {
            data_dir: shared.data_dir.clone(),
            agent: std::sync::OnceLock::new(),
        }),
        &challenge_dir,
        Arc::new(strongbox_domain::clock::SystemClock),
    ));
    match msi.challenge_dir() {
        Ok(dir) => println!(
            "managed identity endpoint (Azure Arc form, challenge files in {}):",
            dir.display()
        ),
        Err(e) => eprintln!(
            "warning: the managed identity endpoint cannot write challenge files ({e}); it answers 500 until the agent is restarted with a usable directory"
        ),
    }
    for (k, v) in crate::msi::env_vars(port) {
        println!("{k}={v}");
    }
    let app = Router::new()
        .route("/", get(show))
        .route("/activate", axum::routing::post(activate))
        .with_state(shared.clone())
        .merge(crate::local_api::routes(cell.clone()))
        .merge(msi.router())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            loopback_only,
        ));
    crate::state::write_atomically(
        &shared.data_dir.join(crate::local_api::AGENT_FILE),
        serde_json::json!({"url": format!("http://127.0.0.1:{port}"), "pid": std::process::id()})
            .to_string()
            .as_bytes(),
    )?;
    println!("agent page on http://127.0.0.1:{port}/");
    // An activated device's engine (or why it cannot start) is there before the first request.
    if shared.agent.lock().await.is_some()
        && let Err(e) = start_sync(&shared.data_dir, &shared.sync, &cell)
    {
        eprintln!("warning: the sync engine did not start: {e}");
        *cell.1.lock().expect("start error lock") = Some(e.to_string());
    }
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut tick = tokio::time::interval(poll);
    loop {
        tick.tick().await;
        if server.is_finished() {
            return Err(strongbox_client::Error::Config(
                "the local page stopped".into(),
            ));
        }
        let mut guard = shared.agent.lock().await;
        let Some(agent) = guard.as_mut() else {
            continue;
        };
        if let Err(e) = start_sync(&shared.data_dir, &shared.sync, &cell) {
            let e = e.to_string();
            let mut why = cell.1.lock().expect("start error lock");
            if why.as_deref() != Some(e.as_str()) {
                eprintln!("warning: the sync engine did not start: {e}");
                *why = Some(e);
            }
        }
        match agent.sync().await {
            Ok(r) => {
                if r.changed() || r.answered {
                    println!("{r}");
                }
                if let Ok(mut l) = shared.last.lock() {
                    *l = r.to_string();
                }
            }
            Err(e) => {
                eprintln!("warning: device secrets sync failed: {e}");
                if let Ok(mut l) = shared.last.lock() {
                    *l = format!("last sync failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `attr="…"` value inside one tag.
    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        tag[at..].split('"').next()
    }

    /// What axe-core's serious and critical rules ask of this markup (`html-has-lang`,
    /// `label`, `document-title`): checked here until a browser run exists.
    #[test]
    fn the_page_declares_its_language_and_labels_every_field() {
        let html = document(&activation_form("t0ken"));
        assert!(
            html.starts_with("<!doctype html><html lang=\"en\">"),
            "{html}"
        );
        assert!(html.contains("<title>Strongbox edge agent</title>"));
        let mut fields = 0;
        for kind in ["<input", "<textarea", "<select"] {
            for (at, _) in html.match_indices(kind) {
                let tag = &html[at..at + html[at..].find('>').unwrap()];
                if attr(tag, "type") == Some("hidden") {
                    continue;
                }
                fields += 1;
                let id = attr(tag, "id").unwrap_or_else(|| panic!("no id: {tag}"));
                assert!(
                    html.contains(&format!("<label for=\"{id}\">")),
                    "no label for {id}"
                );
            }
        }
        assert_eq!(fields, 1, "the activation key field is checked");
        assert!(html.contains("<button type=\"submit\">Activate</button>"));
        // Every other page is the same document.
        assert!(document("<p>x</p>").starts_with("<!doctype html><html lang=\"en\">"));
    }
}
