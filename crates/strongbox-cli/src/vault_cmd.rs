//! `strongbox vault …`: vaults through the management API (`Microsoft.KeyVault/vaults`, as
//! azure-mgmt-keyvault builds the requests). `vault create --data-dir …` still creates a vault
//! offline on the store (the same as `admin vault create`), for scripts written before the
//! management API existed.

use crate::admin_cmd::{self, OfflineVault, StoreArgs};
use crate::context::{self, Global};
use crate::exit::refused;
use crate::output::{self, Col, col, s};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_client::arm::{self, Group};

#[derive(Args, Debug)]
pub struct Placement {
    /// Resource group (default: the one the credentials name).
    #[arg(long, short = 'g')]
    pub resource_group: Option<String>,
}

#[derive(Subcommand)]
pub enum VaultCommand {
    /// Create a vault (refused with exit 6 if it exists: use `vault update` to change one).
    Create {
        /// The vault's name (3-24 letters, digits and hyphens).
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        p: Placement,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
        /// Days a deleted vault or secret stays recoverable (7-90).
        #[arg(long, default_value_t = 90)]
        retention_days: i64,
        /// Forbid purging before the retention ends (cannot be turned off later).
        #[arg(long, alias = "purge-protection")]
        enable_purge_protection: bool,
        /// Authorize the data plane by role assignments instead of access policies.
        #[arg(long, alias = "enable-rbac")]
        enable_rbac_authorization: bool,
        /// Tags, as key=value pairs.
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
        /// Offline: create the vault directly in this data dir's store (like `admin vault create`).
        #[arg(long, hide = true)]
        data_dir: Option<PathBuf>,
        #[arg(long = "store", hide = true)]
        store_url: Option<String>,
        #[arg(long, hide = true)]
        tenant: Option<String>,
    },
    /// Show a vault.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        p: Placement,
    },
    /// List vaults (of a resource group with -g, else of the subscription).
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Change a vault's properties or tags.
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        p: Placement,
        /// Fixed at creation: the server refuses a different value.
        #[arg(long)]
        retention_days: Option<i64>,
        /// `true` turns purge protection on; it cannot be turned off again.
        #[arg(long)]
        enable_purge_protection: Option<bool>,
        #[arg(long)]
        enable_rbac_authorization: Option<bool>,
        /// Replaces all tags (key=value pairs).
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
    },
    /// Delete a vault (soft delete; exit 4 if there is none).
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        p: Placement,
    },
    /// Recover a soft-deleted vault, with its secrets.
    Recover {
        #[arg(long, short = 'n')]
        name: String,
        /// Resource group (default: the deleted vault's, else the credentials').
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Location (default: the deleted vault's).
        #[arg(long, short = 'l')]
        location: Option<String>,
    },
    /// Permanently remove a soft-deleted vault (refused under purge protection).
    Purge {
        #[arg(long, short = 'n')]
        name: String,
        /// Location (default: the deleted vault's).
        #[arg(long, short = 'l')]
        location: Option<String>,
    },
    /// List soft-deleted vaults.
    ListDeleted,
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("ResourceGroup", &|v| {
            s(v, "/id")
                .split('/')
                .nth(4)
                .unwrap_or_default()
                .to_string()
        }),
        col("Location", &|v| s(v, "/location")),
        col("RetentionDays", &|v| {
            s(v, "/properties/softDeleteRetentionInDays")
        }),
        // Absent (null) until turned on, as in Azure.
        col("PurgeProtection", &|v| {
            let on = v.pointer("/properties/enablePurgeProtection") == Some(&Value::Bool(true));
            if on { "True" } else { "False" }.into()
        }),
        col("Rbac", &|v| s(v, "/properties/enableRbacAuthorization")),
        col("VaultUri", &|v| s(v, "/properties/vaultUri")),
    ]
}

fn deleted_cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("Location", &|v| s(v, "/properties/location")),
        col("Deleted", &|v| s(v, "/properties/deletionDate")),
        col("ScheduledPurge", &|v| {
            s(v, "/properties/scheduledPurgeDate")
        }),
        col("PurgeProtection", &|v| {
            s(v, "/properties/purgeProtectionEnabled")
        }),
    ]
}

pub async fn run(g: &Global, command: VaultCommand) -> anyhow::Result<ExitCode> {
    if let VaultCommand::Create {
        data_dir: Some(data_dir),
        store_url,
        name,
        tenant,
        retention_days,
        enable_purge_protection,
        enable_rbac_authorization,
        p,
        ..
    } = command
    {
        return admin_cmd::create_vault(OfflineVault {
            store: StoreArgs {
                data_dir,
                store_url,
                passphrase_file: None,
                key_file: None,
                dns_suffix: strongbox_server::DEFAULT_DNS_SUFFIX.into(),
            },
            name,
            tenant,
            retention_days,
            purge_protection: enable_purge_protection,
            enable_rbac: enable_rbac_authorization,
            resource_group: p.resource_group.unwrap_or_else(|| "strongbox-dev".into()),
        })
        .await;
    }
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    let format = g.output;
    match command {
        VaultCommand::Create {
            name,
            p,
            location,
            retention_days,
            enable_purge_protection,
            enable_rbac_authorization,
            tags,
            ..
        } => {
            let rg = context::resource_group(&p.resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let v = arm::NewVault {
                location,
                tenant_id: c.credentials().tenant_id.clone(),
                retention_days,
                purge_protection: enable_purge_protection,
                enable_rbac: enable_rbac_authorization,
                tags: context::tags(&tags)?,
            };
            // The PUT would replace an existing vault, access policies included (the trap
            // `az keyvault create` has): refuse instead. A caller who may not read it gets
            // the server's own answer to the PUT.
            if c.send(&arm::vault_get(&base, &group, &name)).await.is_ok() {
                return Err(refused(
                    409,
                    "VaultAlreadyExists",
                    format!(
                        "The vault '{name}' already exists in resource group '{rg}'; change it with `strongbox vault update`."
                    ),
                ));
            }
            let r = c.json(&arm::vault_create(&base, &group, &name, &v)).await?;
            output::one(format, &cols(), &r);
        }
        VaultCommand::Show { name, p } => {
            let rg = context::resource_group(&p.resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let r = c.json(&arm::vault_get(&base, &group, &name)).await?;
            output::one(format, &cols(), &r);
        }
        VaultCommand::List { resource_group } => {
            let items = c
                .list_all(
                    &arm::vault_list(&base, &sub, resource_group.as_deref()),
                    None,
                )
                .await?;
            output::items(format, &cols(), &items);
        }
        VaultCommand::Update {
            name,
            p,
            retention_days,
            enable_purge_protection,
            enable_rbac_authorization,
            tags,
        } => {
            let rg = context::resource_group(&p.resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let patch = arm::VaultPatch {
                retention_days,
                purge_protection: enable_purge_protection,
                enable_rbac: enable_rbac_authorization,
                tags: context::tags(&tags)?,
            };
            let r = c
                .json(&arm::vault_update(&base, &group, &name, &patch))
                .await?;
            output::one(format, &cols(), &r);
        }
        VaultCommand::Delete { name, p } => {
            let rg = context::resource_group(&p.resource_group, &c)?;
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            // ARM answers 204 when there was nothing to delete.
            let (status, _) = c.send(&arm::vault_delete(&base, &group, &name)).await?;
            if status == 204 {
                return Err(refused(
                    404,
                    "ResourceNotFound",
                    format!("The vault '{name}' was not found in resource group '{rg}'."),
                ));
            }
        }
        VaultCommand::Recover {
            name,
            resource_group,
            location,
        } => {
            let found = if resource_group.is_none() || location.is_none() {
                find_deleted(&c, &base, &sub, &name).await
            } else {
                None
            };
            let from_found = |path: &str| found.as_ref().map(|v| s(v, path));
            let rg = match resource_group {
                Some(rg) => rg,
                None => match from_found("/properties/vaultId")
                    .and_then(|id| id.split('/').nth(4).map(String::from))
                {
                    Some(rg) => rg,
                    None => context::resource_group(&None, &c)?,
                },
            };
            let location = location
                .or_else(|| from_found("/properties/location"))
                .unwrap_or_else(|| "local".into());
            let group = Group {
                subscription: &sub,
                resource_group: &rg,
            };
            let tenant = c.credentials().tenant_id.clone();
            let r = c
                .json(&arm::vault_recover(
                    &base, &group, &name, &location, &tenant,
                ))
                .await?;
            output::one(format, &cols(), &r);
        }
        VaultCommand::Purge { name, location } => {
            let location = match location {
                Some(l) => l,
                None => find_deleted(&c, &base, &sub, &name)
                    .await
                    .map(|v| s(&v, "/properties/location"))
                    .unwrap_or_else(|| "local".into()),
            };
            c.send(&arm::vault_purge(&base, &sub, &location, &name))
                .await?;
        }
        VaultCommand::ListDeleted => {
            let items = c
                .list_all(&arm::vault_list_deleted(&base, &sub), None)
                .await?;
            output::items(format, &deleted_cols(), &items);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The soft-deleted vault of that name, if the caller may list deleted vaults (else None: the
/// defaults apply and the server answers the real request).
async fn find_deleted(
    c: &strongbox_client::Client,
    base: &str,
    sub: &str,
    name: &str,
) -> Option<Value> {
    c.list_all(&arm::vault_list_deleted(base, sub), None)
        .await
        .ok()?
        .into_iter()
        .find(|v| s(v, "/name").eq_ignore_ascii_case(name))
}
