//! `strongbox`: the one binary. `server` runs the vault; the other commands work on the store
//! directly (offline administration until the management API exists) or check the audit chain.
//!
//! Exit codes: 0 success, 1 a check failed (e.g. a broken audit chain), 2 usage error, 3 error.

mod identity_cmd;
mod role_cmd;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_domain::{Permission, SystemClock};
use strongbox_server::Config;
use strongbox_store::chain::Verifier;

#[derive(Parser)]
#[command(
    name = "strongbox",
    version,
    about = "A self-hosted secrets vault speaking the Azure Key Vault API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// Where keys, certificates and the SQLite database live.
    #[arg(long, env = "STRONGBOX_DATA_DIR", default_value = ".strongbox")]
    data_dir: PathBuf,
    /// Store URL: sqlite:PATH (default: in the data dir) or postgres://…
    #[arg(long = "store", env = "STRONGBOX_STORE_URL")]
    store_url: Option<String>,
    /// File holding a passphrase to derive the root key from (instead of the key file).
    #[arg(long, env = "STRONGBOX_PASSPHRASE_FILE")]
    passphrase_file: Option<PathBuf>,
    /// Root key file (default: root.key in the data dir, created on first start).
    #[arg(long, env = "STRONGBOX_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// DNS suffix of vault hosts ({vault}.{suffix}).
    #[arg(long, env = "STRONGBOX_DNS_SUFFIX", default_value = strongbox_server::DEFAULT_DNS_SUFFIX)]
    dns_suffix: String,
}

impl StoreArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::new(self.data_dir.clone());
        c.store_url = self.store_url.clone();
        c.key_file = self.key_file.clone();
        c.dns_suffix = self.dns_suffix.to_ascii_lowercase();
        if let Some(p) = &self.passphrase_file {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let pass = text.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(
                pass.chars().count() >= 12,
                "the passphrase in {} must have at least 12 characters",
                p.display()
            );
            c.passphrase = Some(SecretString::from(pass.to_string()));
        }
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the vault server over HTTPS.
    Server {
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
        /// Serve the Azure Arc managed-identity form with challenge files in this directory
        /// (azure-identity on Linux requires /var/opt/azcmagent/tokens).
        #[arg(long, env = "STRONGBOX_ARC_TOKEN_DIR")]
        arc_token_dir: Option<PathBuf>,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Vaults (offline administration on the store).
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Service principals (offline administration on the store).
    Sp {
        #[command(subcommand)]
        command: SpCommand,
    },
    /// Access policies (offline administration on the store).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Managed identities, key credentials and managed-identity environments (offline, on the store).
    Identity {
        #[command(subcommand)]
        command: identity_cmd::IdentityCommand,
    },
    /// Role assignments, through the server's management API over HTTPS.
    Role {
        #[command(subcommand)]
        command: role_cmd::RoleCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every vault's audit hash chain (or one vault's); report the first break.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        vault: Option<String>,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        name: String,
        /// Tenant id (default: the dev tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 90)]
        retention_days: i64,
        #[arg(long)]
        purge_protection: bool,
        /// Authorize the data plane by role assignments instead of access policies.
        #[arg(long)]
        enable_rbac: bool,
        /// Resource group (default: the dev one).
        #[arg(long, default_value = "strongbox-dev")]
        resource_group: String,
    },
}

#[derive(Subcommand)]
enum SpCommand {
    /// Create a service principal; prints its credentials as JSON (the secret is shown once).
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 365)]
        secret_days: i64,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Set (replace) an object's secret permissions on a vault.
    Set {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        vault: String,
        #[arg(long)]
        object_id: String,
        /// Comma-separated: get,list,set,delete,recover,backup,restore,purge (or "all", or "" for none).
        #[arg(long)]
        secret_permissions: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

async fn default_tenant(
    store: &dyn strongbox_store::Store,
    given: Option<String>,
) -> anyhow::Result<String> {
    match given {
        Some(t) => Ok(t),
        None => store
            .get_meta("dev_tenant")
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .context("no --tenant given and no dev tenant exists"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server {
            store,
            listen,
            dev,
            dev_clock,
            purge_interval_secs,
            arc_token_dir,
        } => {
            let mut config = store.config()?;
            config.dev = dev;
            config.dev_clock = dev_clock;
            config.arc_token_dir = arc_token_dir;
            config.purge_interval = std::time::Duration::from_secs(purge_interval_secs.max(1));
            let listener =
                std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
            let server = strongbox_server::start(config, listener).await?;
            if let Some(c) = &server.credentials {
                eprintln!(
                    "dev vault: {}  (credentials: {})",
                    c.vault_url,
                    store.data_dir.join("dev-credentials.json").display()
                );
            }
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.shutdown().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { store, vault },
        } => verify(store, vault).await,
        Command::Identity { command } => identity_cmd::run(command).await,
        Command::Role { command } => role_cmd::run(command).await,
        Command::Vault {
            command:
                VaultCommand::Create {
                    store,
                    name,
                    tenant,
                    retention_days,
                    purge_protection,
                    enable_rbac,
                    resource_group,
                },
        } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let tenant_id = default_tenant(&*s, tenant).await?;
            let subscription_id = s
                .get_meta("dev_subscription")
                .await?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .context("no dev subscription exists")?;
            let vault = strongbox_domain::vaults::create_vault(
                &*s,
                &SystemClock,
                strongbox_domain::vaults::NewVault {
                    name: &name,
                    tenant_id: &tenant_id,
                    subscription_id: &subscription_id,
                    resource_group: &resource_group,
                    location: "local",
                    retention_days,
                    purge_protection,
                    enable_rbac,
                },
            )
            .await?;
            println!(
                "{}",
                serde_json::json!({"id": vault.id, "name": vault.name, "tenant_id": vault.tenant_id,
                "purge_protection": vault.purge_protection, "retention_days": vault.retention_days})
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sp {
            command:
                SpCommand::Create {
                    store,
                    name,
                    tenant,
                    secret_days,
                },
        } => {
            let (s, keyring) = strongbox_server::open_context(&store.config()?).await?;
            let tenant_id = default_tenant(&*s, tenant).await?;
            let (p, secret) = strongbox_identity::create_service_principal(
                &*s,
                &keyring,
                &SystemClock,
                strongbox_identity::NewServicePrincipal {
                    tenant_id: &tenant_id,
                    display_name: &name,
                    secret_lifetime_days: secret_days,
                },
            )
            .await?;
            println!(
                "{}",
                serde_json::json!({"tenant_id": p.tenant_id, "object_id": p.object_id,
                "client_id": p.client_id, "client_secret": secret.expose_secret()})
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command:
                PolicyCommand::Set {
                    store,
                    vault,
                    object_id,
                    secret_permissions,
                },
        } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let v = s
                .get_vault_by_name(&vault.to_ascii_lowercase())
                .await?
                .with_context(|| format!("no vault named {vault}"))?;
            let perms: Vec<Permission> = if secret_permissions.trim().eq_ignore_ascii_case("all") {
                Permission::ALL.to_vec()
            } else {
                secret_permissions
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| {
                        Permission::parse(p).with_context(|| format!("unknown permission {p:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            strongbox_domain::vaults::set_policy(&*s, &v, &object_id, &perms).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Verifies the chain of each vault. The chain needs no keys: only the store.
async fn verify(store: StoreArgs, only: Option<String>) -> anyhow::Result<ExitCode> {
    let config = store.config()?;
    let s = strongbox_server::open_store(&config.store_url()).await?;
    let mut vaults = s.list_vaults().await?;
    if let Some(name) = &only {
        vaults.retain(|v| v.name.eq_ignore_ascii_case(name));
        anyhow::ensure!(!vaults.is_empty(), "no vault named {name}");
    }
    let mut broken = false;
    for vault in vaults {
        let mut verifier = Verifier::default();
        let mut after = 0;
        let result = 'chain: loop {
            let rows = s.read_audit(&vault.id, after, 1000).await?;
            if rows.is_empty() {
                break verifier.finish(s.audit_head(&vault.id).await?);
            }
            for row in &rows {
                if let Err(b) = verifier.push(row) {
                    break 'chain Err(b);
                }
                after = row.seq;
            }
        };
        match result {
            Ok(n) => println!("{}: {n} records, chain intact", vault.name),
            Err(b) => {
                broken = true;
                println!("{}: {b}", vault.name);
            }
        }
    }
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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
