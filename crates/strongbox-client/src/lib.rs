//! Typed HTTPS client for Strongbox: the Azure Key Vault secrets data plane ([`secrets`]) and
//! the ARM-shaped management API ([`arm`]). Requests are built as plain [`Call`] values (method,
//! URL, JSON body, which token) by pure functions, so their shape is unit-tested without a
//! server; [`Client`] sends them with a bearer token from the client-credentials flow.
//!
//! Names under `.localhost` resolve to the loopback address (RFC 6761), so
//! `https://{vault}.vault.localhost:8443` works without `/etc/hosts` entries.

pub mod arm;
mod credentials;
pub mod secrets;

pub use credentials::*;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused: its status, its error code and message.
    #[error("{code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// The token service refused the credentials.
    #[error("{code}: {message}")]
    Auth { code: String, message: String },
    /// The server could not be reached or the connection failed.
    #[error("Transport: {0}")]
    Transport(String),
    /// A response that is not what the API promises.
    #[error("BadResponse: {0}")]
    Decode(String),
    /// Local setup: credentials, files, arguments.
    #[error("Config: {0}")]
    Config(String),
}

impl Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(*status),
            Error::Auth { .. } => Some(401),
            _ => None,
        }
    }
    /// The server's error code (or the kind of local failure).
    pub fn code(&self) -> &str {
        match self {
            Error::Http { code, .. } | Error::Auth { code, .. } => code,
            Error::Transport(_) => "Transport",
            Error::Decode(_) => "BadResponse",
            Error::Config(_) => "Config",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which token a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plane {
    /// The secrets data plane (audience: the vaults' resource).
    Vault,
    /// The management API (audience: the authority).
    Management,
}

/// One request, fully described: built by the functions in [`secrets`] and [`arm`].
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Method,
    pub url: String,
    pub body: Option<Value>,
    pub plane: Plane,
    /// How long the whole request may take, when not the client's default (long polls).
    pub timeout: Option<Duration>,
}

impl Call {
    pub fn new(method: Method, url: String, plane: Plane) -> Call {
        Call {
            method,
            url,
            body: None,
            plane,
            timeout: None,
        }
    }
    pub fn body(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }
}

/// Percent-encodes one path segment (names are validated by the server; this keeps any input
/// from changing the path's shape).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves `*.localhost` to loopback, anything else through the system resolver (public for
/// the edge agent, which builds its own client).
pub struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let addrs: reqwest::dns::Addrs =
                    Box::new(vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)].into_iter());
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);

pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    tokens: tokio::sync::Mutex<HashMap<Plane, (Arc<String>, Instant)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

fn transport(e: reqwest::Error) -> Error {
    // reqwest's text names the URL, never a body or header.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Transport(text)
}

impl Client {
    pub fn new(creds: Credentials) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .dns_resolver(Arc::new(LocalhostResolver))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("strongbox-client/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &creds.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| Error::Config(format!("reading the CA certificate {ca}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::Config(format!("the CA certificate {ca}: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(transport)?;
        Ok(Client {
            http,
            creds,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The management API's base URL (the authority).
    pub fn management_base(&self) -> &str {
        self.creds.authority.trim_end_matches('/')
    }

    async fn token(&self, plane: Plane) -> Result<Arc<String>> {
        let mut cache = self.tokens.lock().await;
        if let Some((t, until)) = cache.get(&plane)
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let resource = match plane {
            Plane::Vault => self.creds.vault_audience()?,
            Plane::Management => self.management_base().to_string(),
        };
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.management_base(),
            seg(&self.creds.tenant_id)
        );
        let scope = format!("{resource}/.default");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.creds.client_id.as_str()),
            ("client_secret", self.creds.client_secret.expose_secret()),
            ("scope", scope.as_str()),
        ];
        let resp = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.map_err(|_| {
            Error::Decode(format!("the token endpoint answered {status} without JSON"))
        })?;
        let Some(token) = body["access_token"].as_str() else {
            return Err(Error::Auth {
                code: body["error"]
                    .as_str()
                    .unwrap_or("TokenRequestFailed")
                    .to_string(),
                message: body["error_description"]
                    .as_str()
                    .unwrap_or("the token endpoint refused the credentials")
                    .to_string(),
            });
        };
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(300));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        let token = Arc::new(token.to_string());
        cache.insert(plane, (token.clone(), until));
        Ok(token)
    }

    /// Checks the credentials by getting a management token.
    pub async fn login(&self) -> Result<()> {
        self.token(Plane::Management).await.map(|_| ())
    }

    /// Sends a call; returns the status and the JSON body (None when empty).
    pub async fn send(&self, call: &Call) -> Result<(u16, Option<Value>)> {
        let token = self.token(call.plane).await?;
        let mut req = self
            .http
            .request(call.method.clone(), &call.url)
            .bearer_auth(token.as_str());
        if let Some(t) = call.timeout {
            req = req.timeout(t);
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        } else if call.method == Method::POST || call.method == Method::PUT {
            req = req.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).map_err(|_| {
                Error::Decode(format!(
                    "{} {} answered {status} with a body that is not JSON",
                    call.method, call.url
                ))
            })?)
        };
        if status >= 400 {
            return Err(http_error(status, body.as_ref()));
        }
        Ok((status, body))
    }

    /// Sends a call that must answer with a JSON body.
    pub async fn json(&self, call: &Call) -> Result<Value> {
        match self.send(call).await? {
            (_, Some(v)) => Ok(v),
            (status, None) => Err(Error::Decode(format!(
                "{} {} answered {status} without a body",
                call.method, call.url
            ))),
        }
    }

    /// Follows `nextLink` from a list call; returns every item of `value`. `limit` stops early.
    pub async fn list_all(&self, first: &Call, limit: Option<usize>) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut call = first.clone();
        for _ in 0..100_000 {
            let page = self.json(&call).await?;
            if let Some(items) = page["value"].as_array() {
                out.extend(items.iter().cloned());
            }
            if limit.is_some_and(|l| out.len() >= l) {
                out.truncate(limit.unwrap_or(0));
                break;
            }
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => {
                    call = Call::new(Method::GET, next.to_string(), call.plane)
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

/// The error of a refused request, from any of the shapes the APIs use.
pub fn http_error(status: u16, body: Option<&Value>) -> Error {
    let (code, message) = match body {
        Some(b) if b["error"].is_object() => {
            (b["error"]["code"].as_str(), b["error"]["message"].as_str())
        }
        Some(b) if b["code"].is_string() => (b["code"].as_str(), b["message"].as_str()),
        Some(b) => (b["error"].as_str(), b["error_description"].as_str()),
        None => (None, None),
    };
    Error::Http {
        status,
        code: code.map_or_else(|| format!("HTTP{status}"), String::from),
        message: message.map_or_else(
            || format!("the server answered {status} without an error message"),
            String::from,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_come_from_every_shape() {
        let e = http_error(
            404,
            Some(&json!({"error": {"code": "SecretNotFound", "message": "gone"}})),
        );
        assert_eq!(
            (e.status(), e.code(), e.to_string().as_str()),
            (Some(404), "SecretNotFound", "SecretNotFound: gone")
        );
        let e = http_error(400, Some(&json!({"code": "BadRequest", "message": "flat"})));
        assert_eq!(e.code(), "BadRequest");
        let e = http_error(
            400,
            Some(&json!({"error": "invalid_client", "error_description": "no"})),
        );
        assert_eq!(e.code(), "invalid_client");
        let e = http_error(502, None);
        assert_eq!(e.code(), "HTTP502");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("a-b_c.d"), "a-b_c.d");
        assert_eq!(seg("a/b c?"), "a%2Fb%20c%3F");
    }
}
