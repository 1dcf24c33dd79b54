//! `strongbox server`: run the vault over HTTPS.

use crate::admin_cmd::StoreArgs;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// A TOML file of settings named as these flags (`listen = "0.0.0.0:8443"`,
    /// `max-connections = 8192`); environment variables override it, flags override both, and
    /// `STRONGBOX_X_FILE` reads `STRONGBOX_X` from a file.
    #[arg(long, env = "STRONGBOX_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "STRONGBOX_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Create a dev tenant, vault `dev` and admin principal; write dev-credentials.json.
    #[arg(long)]
    dev: bool,
    /// Testing only: let `POST /_dev/clock?advance_secs=N` move the server's clock forward.
    #[arg(long, hide = true)]
    dev_clock: bool,
    /// Seconds between sweeps that purge soft-deleted items past their retention.
    #[arg(long, default_value_t = 60)]
    purge_interval_secs: u64,
    /// Directory inside which storage accounts (audit file destinations) live
    /// (default: `storage` in the data dir).
    #[arg(long, env = "STRONGBOX_STORAGE_ROOT")]
    storage_root: Option<PathBuf>,
    /// Serve the Azure Arc managed-identity form with challenge files in this directory
    /// (azure-identity on Linux requires /var/opt/azcmagent/tokens).
    #[arg(long, env = "STRONGBOX_ARC_TOKEN_DIR")]
    arc_token_dir: Option<PathBuf>,
    /// Certificate chain (PEM, leaf first) to serve instead of the generated one; reloaded when
    /// the file changes or on SIGHUP, without dropping connections.
    #[arg(long, env = "STRONGBOX_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "STRONGBOX_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that clients and activated devices should trust (default: the
    /// chain file).
    #[arg(long, env = "STRONGBOX_TLS_CA", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Plain-HTTP address for `/metrics` (Prometheus), `/healthz` and `/readyz`; `off` for none.
    /// Loopback by default: expose it wider only behind your own network rules.
    #[arg(long, env = "STRONGBOX_METRICS_LISTEN", default_value = strongbox_server::DEFAULT_METRICS_LISTEN)]
    metrics_listen: String,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    throttle: ThrottleArgs,
    /// Testing only: pause this long after each page a data key rotation re-encrypts.
    #[arg(long, hide = true, default_value_t = 0)]
    reencrypt_pause_ms: u64,
}

/// Optional throttling, off unless set (Azure's shape: 429 with Retry-After).
#[derive(clap::Args)]
#[command(next_help_heading = "Throttling (off by default)")]
pub struct ThrottleArgs {
    /// Data-plane requests a vault answers per 10 seconds (Key Vault's unit); beyond it,
    /// 429 `Throttled` with Retry-After.
    #[arg(long, env = "STRONGBOX_VAULT_REQUESTS_PER_10S")]
    vault_requests_per_10s: Option<NonZeroU32>,
    /// Token requests per client id per minute; beyond it, 429 `temporarily_unavailable`.
    #[arg(long, env = "STRONGBOX_TOKEN_REQUESTS_PER_CLIENT_PER_MIN")]
    token_requests_per_client_per_min: Option<NonZeroU32>,
    /// Token requests per source address per minute.
    #[arg(long, env = "STRONGBOX_TOKEN_REQUESTS_PER_ADDRESS_PER_MIN")]
    token_requests_per_address_per_min: Option<NonZeroU32>,
}

/// The HTTPS listener's timeouts and limits (defaults in the README).
#[derive(clap::Args)]
#[command(next_help_heading = "Connection limits")]
pub struct LimitArgs {
    /// Seconds a client has to send a request's headers (also how long an HTTP/1.1 connection
    /// may wait for its next request).
    #[arg(long, env = "STRONGBOX_HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULTS.header_read_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight and no bytes moving.
    #[arg(long, env = "STRONGBOX_IDLE_TIMEOUT_SECS", default_value_t = DEFAULTS.idle_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Connections held at once; further connections are closed as soon as they are accepted.
    #[arg(long, env = "STRONGBOX_MAX_CONNECTIONS", default_value_t = DEFAULTS.max_connections as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a client has to complete its TLS handshake.
    #[arg(long, env = "STRONGBOX_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = DEFAULTS.tls_handshake_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    tls_handshake_timeout_secs: u64,
    /// Seconds a client has to send a whole request body, from when the server starts reading it.
    #[arg(long, env = "STRONGBOX_BODY_READ_TIMEOUT_SECS", default_value_t = DEFAULTS.body_read_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_secs: u64,
    /// Requests an HTTP/2 connection may have open at once.
    #[arg(long, env = "STRONGBOX_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULTS.http2_max_concurrent_streams, value_parser = clap::value_parser!(u32).range(1..))]
    http2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (bytes, decoded) a request may carry.
    #[arg(long, env = "STRONGBOX_HTTP2_MAX_HEADER_LIST_SIZE", default_value_t = DEFAULTS.http2_max_header_list_size, value_parser = clap::value_parser!(u32).range(1024..))]
    http2_max_header_list_size: u32,
}

const DEFAULTS: strongbox_server::ConnectionLimits = strongbox_server::ConnectionLimits::DEFAULT;

impl LimitArgs {
    fn limits(&self) -> strongbox_server::ConnectionLimits {
        let secs = std::time::Duration::from_secs;
        strongbox_server::ConnectionLimits {
            header_read_timeout: secs(self.header_read_timeout_secs),
            idle_timeout: secs(self.idle_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            tls_handshake_timeout: secs(self.tls_handshake_timeout_secs),
            body_read_timeout: secs(self.body_read_timeout_secs),
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
            http2_max_header_list_size: self.http2_max_header_list_size,
        }
    }
}

pub async fn run(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let mut config = a.store.config()?;
    config.dev = a.dev;
    config.dev_clock = a.dev_clock;
    config.purge_interval = std::time::Duration::from_secs(a.purge_interval_secs.max(1));
    config.storage_root = a.storage_root;
    config.arc_token_dir = a.arc_token_dir;
    config.limits = a.limits.limits();
    config.tls_cert = a.tls_cert;
    config.tls_key = a.tls_key;
    config.tls_ca = a.tls_ca;
    config.metrics_listen =
        match a.metrics_listen.as_str() {
            "off" => None,
            at => Some(at.parse().with_context(|| {
                format!("--metrics-listen: '{at}' is not an address:port or off")
            })?),
        };
    config.throttle = strongbox_server::ThrottleLimits {
        vault_per_10s: a.throttle.vault_requests_per_10s,
        token_per_client_per_min: a.throttle.token_requests_per_client_per_min,
        token_per_address_per_min: a.throttle.token_requests_per_address_per_min,
    };
    config.reencrypt_pause = std::time::Duration::from_millis(a.reencrypt_pause_ms);
    let listener =
        std::net::TcpListener::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    let server = strongbox_server::start(config, listener).await?;
    if let Some(c) = &server.credentials {
        // Not eprintln!: it panics when stderr cannot be written (a log on a full disk).
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "dev vault: {}  (credentials: {})",
            c.vault_url,
            a.store.data_dir.join("dev-credentials.json").display()
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
