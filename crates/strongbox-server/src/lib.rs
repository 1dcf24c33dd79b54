//! The vault server: configuration, TLS (a small CA and a server certificate made on first run),
//! store choice by URL, keys, dev bootstrap, wiring, background jobs and graceful shutdown.
//! `start` takes an already bound listener so tests run the real server on `127.0.0.1:0`.

pub mod audit_files;
mod audit_sink;
mod bootstrap;
mod hardening;
pub mod keys;
mod tls;

pub use bootstrap::DevCredentials;
pub use hardening::ConnectionLimits;
pub use strongbox_api::ThrottleLimits;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strongbox_crypto::{Keyring, RootKey};
use strongbox_domain::audit::AuditWriter;
use strongbox_domain::secrets::SecretService;
use strongbox_domain::{Clock, SystemClock};
use strongbox_identity::TokenService;
use strongbox_store::Store;

/// Default DNS suffix of vault hosts: `{vault}.vault.localhost`.
pub const DEFAULT_DNS_SUFFIX: &str = "vault.localhost";

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub dns_suffix: String,
    /// `sqlite:…` or `postgres://…`; default `sqlite:{data_dir}/strongbox.db`.
    pub store_url: Option<String>,
    /// Create the dev tenant, vault `dev` and an admin principal, and write dev-credentials.json.
    pub dev: bool,
    /// Derive the root key from this passphrase (Argon2id) instead of the key file.
    pub passphrase: Option<SecretString>,
    /// Root key file; default `{data_dir}/root.key`, created on first start.
    pub key_file: Option<PathBuf>,
    /// How often soft-deleted secrets past their purge date are purged.
    pub purge_interval: Duration,
    /// Let tests move the clock forward through `POST /_dev/clock` (never in production).
    pub dev_clock: bool,
    /// Serve the Azure Arc managed-identity form, writing challenge files here (azure-identity
    /// on Linux reads them from `/var/opt/azcmagent/tokens`). None: that form is off.
    pub arc_token_dir: Option<PathBuf>,
    /// Where storage accounts (audit file destinations) may live; default `{data_dir}/storage`.
    pub storage_root: Option<PathBuf>,
    /// How often the file sink looks for new audit records to deliver.
    pub audit_sink_interval: Duration,
    /// Timeouts and limits of the HTTPS listener.
    pub limits: ConnectionLimits,
    /// Optional per-vault and token-endpoint request limits (none by default).
    pub throttle: strongbox_api::ThrottleLimits,
    /// Plain-HTTP listener for `/metrics`, `/healthz` and `/readyz` (loopback by default, so
    /// metrics are never on the public port unless asked). None: no such listener.
    pub metrics_listen: Option<SocketAddr>,
    /// The operator's certificate chain and key (PEM); reloaded when the files change or on
    /// SIGHUP. None: a CA and certificate generated in the data dir on first start.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The CA clients and devices should trust (default: the chain file).
    pub tls_ca: Option<PathBuf>,
    /// Testing: a pause after each page a data key rotation re-encrypts (to crash it midway).
    pub reencrypt_pause: Duration,
}

/// The metrics listener's default: loopback, the port Prometheus exporters commonly use.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

impl Config {
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            data_dir,
            dns_suffix: DEFAULT_DNS_SUFFIX.into(),
            store_url: None,
            dev: false,
            passphrase: None,
            key_file: None,
            purge_interval: Duration::from_secs(60),
            dev_clock: false,
            arc_token_dir: None,
            storage_root: None,
            audit_sink_interval: Duration::from_millis(250),
            limits: ConnectionLimits::default(),
            throttle: strongbox_api::ThrottleLimits::default(),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            reencrypt_pause: Duration::ZERO,
        }
    }

    pub fn storage_root(&self) -> PathBuf {
        self.storage_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("storage"))
    }

    pub fn store_url(&self) -> String {
        self.store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("strongbox.db").display()))
    }
}

/// Opens the store the URL names, migrated and ready.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            strongbox_store_sqlite::SqliteStore::open(url)
                .await
                .context("opening the SQLite store")?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            strongbox_store_postgres::PostgresStore::open(url)
                .await
                .context("opening the PostgreSQL store")?,
        ))
    } else {
        anyhow::bail!("unsupported store URL (use sqlite:PATH or postgres://…)")
    }
}

/// The root key from the passphrase (salt kept in the store) or the key file.
pub async fn root_key(config: &Config, store: &dyn Store) -> anyhow::Result<RootKey> {
    match &config.passphrase {
        Some(p) => {
            let salt = store
                .put_meta_if_absent(keys::SALT_META, &strongbox_crypto::random_bytes::<16>())
                .await?;
            let p = SecretString::from(p.expose_secret().to_string());
            Ok(tokio::task::spawn_blocking(move || {
                RootKey::from_passphrase(p.expose_secret().as_bytes(), &salt)
            })
            .await??)
        }
        None => {
            let path = config
                .key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join("root.key"));
            Ok(RootKey::load_or_create_file(&path)?)
        }
    }
}

/// The store and unsealed keyring, for offline admin commands.
pub async fn open_context(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Arc<Keyring>)> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if !config.data_dir.exists() {
        std::fs::create_dir_all(&config.data_dir).context("creating the data dir")?;
        // Only the server's user may enter a data dir we create (keys, database, credentials).
        // An existing directory is the operator's to set up; we never change its mode.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let store = open_store(&config.store_url()).await?;
    let root = root_key(config, &*store).await?;
    let keyring = Arc::new(keys::open_keyring(&*store, &root).await?);
    Ok((store, keyring))
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if its listener is up.
    pub metrics_addr: Option<SocketAddr>,
    /// Present in dev mode.
    pub credentials: Option<DevCredentials>,
    handle: axum_server::Handle<SocketAddr>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    audit_task: tokio::task::JoinHandle<()>,
    changes: Arc<strongbox_domain::changes::ChangeNotifier>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish (up to 10 s; change-feed long polls
    /// answer at once), then drains the audit queue.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.changes.close();
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        let served = self.serve.await;
        for b in self.background {
            b.abort();
        }
        // The router held the last AuditWriter clones; once it is gone the writer drains and ends.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.audit_task).await;
        served??;
        Ok(())
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` over plain HTTP at `at`. A port already taken (a
/// second server on the same host with the default) is logged, and the server runs without it:
/// metrics never keep a vault from serving.
async fn spawn_metrics(
    at: SocketAddr,
    state: Arc<strongbox_api::AppState>,
) -> Option<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = match tokio::net::TcpListener::bind(at).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%at, error = %e, "metrics listener not started (set --metrics-listen)");
            return None;
        }
    };
    let bound = listener.local_addr().ok()?;
    let app = strongbox_api::metrics::router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    tracing::info!(%bound, "metrics listening (/metrics, /healthz, /readyz)");
    Some((bound, task))
}

/// Starts serving HTTPS on `listener` (already bound).
pub async fn start(
    config: Config,
    listener: std::net::TcpListener,
) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let dev_clock = config
        .dev_clock
        .then(|| Arc::new(strongbox_domain::OffsetClock::default()));
    let clock: Arc<dyn Clock> = match &dev_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let (store, keyring) = open_context(&config).await?;

    let port_suffix = if addr.port() == 443 {
        String::new()
    } else {
        format!(":{}", addr.port())
    };
    let authority = format!("https://localhost{port_suffix}");
    let audience = format!("https://{}{port_suffix}", config.dns_suffix);
    let mut token_service = TokenService::open(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        authority.clone(),
        audience,
    )
    .await?;
    if let Some(dir) = &config.arc_token_dir {
        let arc = strongbox_identity::arc::ArcChallenges::open(dir, clock.now_ms())
            .with_context(|| format!("preparing the Arc token directory {}", dir.display()))?;
        token_service = token_service.with_arc_challenges(arc);
    }
    let tokens = Arc::new(token_service);
    let tls = tls::resolve(
        &config.data_dir,
        &config.dns_suffix,
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        config.tls_ca.as_deref(),
    )?;
    let credentials = if config.dev {
        Some(
            bootstrap::dev(
                &*store,
                &keyring,
                &*clock,
                &config,
                &authority,
                &port_suffix,
                &tls.ca_cert,
            )
            .await?,
        )
    } else {
        None
    };

    let metrics = Arc::new(strongbox_api::metrics::Metrics::default());
    let (audit, audit_task) = AuditWriter::start_observed(store.clone(), {
        let metrics = metrics.clone();
        Arc::new(move |records, took| metrics.audit_committed(records, took))
    });
    let secrets = Arc::new(SecretService::new(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        audit.clone(),
    ));
    let storage_root = config.storage_root();
    if !storage_root.exists() {
        std::fs::create_dir_all(&storage_root).context("creating the storage root")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&storage_root, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let storage_root = storage_root
        .canonicalize()
        .context("resolving the storage root")?;
    let audit_sink = audit_sink::spawn(store.clone(), clock.clone(), config.audit_sink_interval);
    let key_upkeep = keys::spawn_upkeep(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        config.reencrypt_pause,
    );
    let state = Arc::new(strongbox_api::AppState {
        store: store.clone(),
        secrets: secrets.clone(),
        tokens,
        audit,
        dns_suffix: config.dns_suffix.to_ascii_lowercase(),
        clock: clock.clone(),
        dev_clock,
        storage_root,
        ca_pem: std::fs::read_to_string(&tls.ca_cert).context("reading the CA certificate")?,
        throttle: strongbox_api::Throttle::new(&config.throttle),
        metrics,
    });
    let metrics_listener = match config.metrics_listen {
        Some(at) => spawn_metrics(at, state.clone()).await,
        None => None,
    };
    let body_limit = config.limits.body_read_timeout;
    let app = strongbox_api::router(state).layer(axum::middleware::map_request(
        move |request| async move { hardening::body_deadline(request, body_limit) },
    ));

    let changes = secrets.change_notifier().clone();
    let sweeper = {
        let secrets = secrets.clone();
        let (store, clock) = (store.clone(), clock.clone());
        let every = config.purge_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match secrets.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "purged secrets past their retention"),
                    Err(e) => tracing::warn!(error = %e, "retention purge failed"),
                }
                if let Err(e) = secrets.prune_changes().await {
                    tracing::warn!(error = %e, "change feed pruning failed");
                }
                match strongbox_domain::vault_lifecycle::purge_expired(&*store, &*clock).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "purged vaults past their retention"),
                    Err(e) => tracing::warn!(error = %e, "vault retention purge failed"),
                }
            }
        })
    };
    drop(secrets);

    let rustls_config =
        axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.server_chain, &tls.server_key)
            .await
            .context("loading the TLS certificate")?;
    let reloader = tls::spawn_reloader(rustls_config.clone(), tls);
    listener.set_nonblocking(true)?;
    hardening::raise_open_file_limit(&config.limits);
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls_config)
        .handshake_timeout(config.limits.tls_handshake_timeout)
        .acceptor(hardening::Guard::new(&config.limits));
    let server = hardening::harden(
        axum_server::from_tcp(listener)?
            .acceptor(acceptor)
            .handle(handle.clone()),
        &config.limits,
    );
    let serve = tokio::spawn(async move {
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
    });
    tracing::info!(%addr, store = store.backend(), "strongbox listening");
    let mut background = vec![sweeper, audit_sink, key_upkeep, reloader];
    let metrics_addr = metrics_listener.map(|(at, task)| {
        background.push(task);
        at
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        credentials,
        handle,
        serve,
        background,
        audit_task,
        changes,
    })
}
