//! `strongbox admin …`: offline administration on the store (no server needed), for
//! bootstrap: create a vault, a service principal, set an access policy. `sp create` is how
//! principals come to exist at all.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_domain::{Permission, SystemClock};
use strongbox_server::Config;

#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Where keys, certificates and the SQLite database live.
    #[arg(long, env = "STRONGBOX_DATA_DIR", default_value = ".strongbox")]
    pub data_dir: PathBuf,
    /// Store URL: sqlite:PATH (default: in the data dir) or postgres://…
    #[arg(long = "store", env = "STRONGBOX_STORE_URL")]
    pub store_url: Option<String>,
    /// File holding a passphrase to derive the root key from (instead of the key file).
    #[arg(long, env = "STRONGBOX_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Root key file (default: root.key in the data dir, created on first start).
    #[arg(long, env = "STRONGBOX_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// DNS suffix of vault hosts ({vault}.{suffix}).
    #[arg(long, env = "STRONGBOX_DNS_SUFFIX", default_value = strongbox_server::DEFAULT_DNS_SUFFIX)]
    pub dns_suffix: String,
}

impl StoreArgs {
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::new(self.data_dir.clone());
        c.store_url = self.store_url.clone();
        c.key_file = self.key_file.clone();
        c.dns_suffix = self.dns_suffix.to_ascii_lowercase();
        if let Some(p) = &self.passphrase_file {
            c.passphrase = Some(read_passphrase_file(p)?);
        }
        Ok(c)
    }
}

/// A passphrase from a file (one trailing newline dropped), at least 12 characters.
pub fn read_passphrase_file(p: &std::path::Path) -> anyhow::Result<SecretString> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
    );
    let pass = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        pass.chars().count() >= 12,
        "the passphrase in {} must have at least 12 characters",
        p.display()
    );
    Ok(SecretString::from(pass.to_string()))
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Vaults.
    Vault {
        #[command(subcommand)]
        command: AdminVaultCommand,
    },
    /// Service principals.
    Sp {
        #[command(subcommand)]
        command: SpCommand,
    },
    /// Access policies.
    Policy {
        #[command(subcommand)]
        command: AdminPolicyCommand,
    },
    /// A sealed snapshot of the whole store while the server serves (`backup verify FILE` checks one).
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(flatten)]
        args: crate::backup_cmd::BackupArgs,
        #[command(subcommand)]
        command: Option<crate::backup_cmd::BackupCommand>,
    },
    /// Restore a backup into a new, empty store.
    Restore(crate::backup_cmd::RestoreArgs),
    /// Add a data key for new writes, re-encrypt older values under it, retire the old keys.
    #[command(name = "rotate-data-key")]
    RotateDataKey(crate::keys_cmd::RotateArgs),
    /// Re-seal the keyring under a new root key file or passphrase (the old root stops working).
    Rekey(crate::keys_cmd::RekeyArgs),
}

#[derive(Subcommand)]
pub enum AdminVaultCommand {
    Create(OfflineVault),
}

#[derive(Args, Debug)]
pub struct OfflineVault {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub name: String,
    /// Tenant id (default: the dev tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long, default_value_t = 90)]
    pub retention_days: i64,
    #[arg(long)]
    pub purge_protection: bool,
    /// Authorize the data plane by role assignments instead of access policies.
    #[arg(long)]
    pub enable_rbac: bool,
    /// Resource group (default: the dev one).
    #[arg(long, default_value = "strongbox-dev")]
    pub resource_group: String,
}

#[derive(Subcommand)]
pub enum SpCommand {
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
pub enum AdminPolicyCommand {
    Set(OfflinePolicy),
}

#[derive(Args, Debug)]
pub struct OfflinePolicy {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub vault: String,
    #[arg(long)]
    pub object_id: String,
    /// Comma-separated: get,list,set,delete,recover,backup,restore,purge (or "all", or "" for none).
    #[arg(long)]
    pub secret_permissions: String,
}

pub async fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::Vault {
            command: AdminVaultCommand::Create(v),
        } => create_vault(v).await,
        AdminCommand::Sp { command } => run_sp(command).await,
        AdminCommand::Policy {
            command: AdminPolicyCommand::Set(p),
        } => set_policy(p).await,
        AdminCommand::Backup { args, command } => crate::backup_cmd::run(args, command).await,
        AdminCommand::Restore(args) => crate::backup_cmd::restore(args).await,
        AdminCommand::RotateDataKey(args) => crate::keys_cmd::rotate(args).await,
        AdminCommand::Rekey(args) => crate::keys_cmd::rekey(args).await,
    }
}

pub(crate) async fn default_tenant(
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

pub async fn create_vault(v: OfflineVault) -> anyhow::Result<ExitCode> {
    let (s, _) = strongbox_server::open_context(&v.store.config()?).await?;
    let tenant_id = default_tenant(&*s, v.tenant).await?;
    let subscription_id = s
        .get_meta("dev_subscription")
        .await?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .context("no dev subscription exists")?;
    let vault = strongbox_domain::vaults::create_vault(
        &*s,
        &SystemClock,
        strongbox_domain::vaults::NewVault {
            name: &v.name,
            tenant_id: &tenant_id,
            subscription_id: &subscription_id,
            resource_group: &v.resource_group,
            location: "local",
            retention_days: v.retention_days,
            purge_protection: v.purge_protection,
            enable_rbac: v.enable_rbac,
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

pub async fn run_sp(command: SpCommand) -> anyhow::Result<ExitCode> {
    let SpCommand::Create {
        store,
        name,
        tenant,
        secret_days,
    } = command;
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

pub async fn set_policy(p: OfflinePolicy) -> anyhow::Result<ExitCode> {
    let (s, _) = strongbox_server::open_context(&p.store.config()?).await?;
    let v = s
        .get_vault_by_name(&p.vault.to_ascii_lowercase())
        .await?
        .with_context(|| format!("no vault named {}", p.vault))?;
    let perms: Vec<Permission> = if p.secret_permissions.trim().eq_ignore_ascii_case("all") {
        Permission::ALL.to_vec()
    } else {
        p.secret_permissions
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| Permission::parse(x).with_context(|| format!("unknown permission {x:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    strongbox_domain::vaults::set_policy(&*s, &v, &p.object_id, &perms).await?;
    Ok(ExitCode::SUCCESS)
}
