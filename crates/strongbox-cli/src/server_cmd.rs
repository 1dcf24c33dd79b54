//! `strongbox server`: run the vault over HTTPS.

use crate::admin_cmd::StoreArgs;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServerArgs {
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
    /// Testing only: pause this long after each page a data key rotation re-encrypts.
    #[arg(long, hide = true, default_value_t = 0)]
    reencrypt_pause_ms: u64,
}

pub async fn run(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let mut config = a.store.config()?;
    config.dev = a.dev;
    config.dev_clock = a.dev_clock;
    config.purge_interval = std::time::Duration::from_secs(a.purge_interval_secs.max(1));
    config.storage_root = a.storage_root;
    config.arc_token_dir = a.arc_token_dir;
    config.reencrypt_pause = std::time::Duration::from_millis(a.reencrypt_pause_ms);
    let listener =
        std::net::TcpListener::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    let server = strongbox_server::start(config, listener).await?;
    if let Some(c) = &server.credentials {
        eprintln!(
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
