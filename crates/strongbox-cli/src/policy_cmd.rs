//! `strongbox policy set | delete`: a vault's access policies through the management API
//! (`accessPolicies/replace` and `accessPolicies/remove`, as azure-mgmt-keyvault sends them).
//! `policy set --data-dir …` still sets a policy offline on the store (like `admin policy set`).

use crate::admin_cmd::{self, OfflinePolicy, StoreArgs};
use crate::context::{self, Global};
use crate::exit::usage;
use crate::output::{self, col, s};
use clap::Subcommand;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_client::arm::{self, Group, PolicyKind};

const PERMISSIONS: &[&str] = &[
    "all", "get", "list", "set", "delete", "backup", "restore", "recover", "purge",
];

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Give an object exactly these secret permissions on a vault; prints the vault's policies.
    Set {
        #[arg(long)]
        vault: String,
        /// Resource group (default: the one the credentials name).
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// The principal's object id.
        #[arg(long)]
        object_id: String,
        /// Comma-separated: get,list,set,delete,backup,restore,recover,purge (or all).
        #[arg(long)]
        secret_permissions: String,
        /// Offline: set the policy directly in this data dir's store (like `admin policy set`).
        #[arg(long, hide = true)]
        data_dir: Option<PathBuf>,
        #[arg(long = "store", hide = true)]
        store_url: Option<String>,
    },
    /// Remove an object's access policy from a vault; prints the policies left.
    Delete {
        #[arg(long)]
        vault: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        object_id: String,
    },
}

fn permissions(list: &str) -> anyhow::Result<Vec<String>> {
    let perms: Vec<String> = list
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(bad) = perms.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
        return Err(usage(format!("unknown secret permission {bad:?}")));
    }
    Ok(perms)
}

pub async fn run(g: &Global, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    if let PolicyCommand::Set {
        data_dir: Some(data_dir),
        store_url,
        vault,
        object_id,
        secret_permissions,
        ..
    } = command
    {
        return admin_cmd::set_policy(OfflinePolicy {
            store: StoreArgs {
                data_dir,
                store_url,
                passphrase_file: None,
                key_file: None,
                dns_suffix: strongbox_server::DEFAULT_DNS_SUFFIX.into(),
            },
            vault,
            object_id,
            secret_permissions,
        })
        .await;
    }
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    let tenant = c.credentials().tenant_id.clone();
    let (vault, rg, object_id, kind, perms) = match command {
        PolicyCommand::Set {
            vault,
            resource_group,
            object_id,
            secret_permissions,
            ..
        } => (
            vault,
            resource_group,
            object_id,
            PolicyKind::Replace,
            permissions(&secret_permissions)?,
        ),
        PolicyCommand::Delete {
            vault,
            resource_group,
            object_id,
        } => (vault, resource_group, object_id, PolicyKind::Remove, vec![]),
    };
    let rg = context::resource_group(&rg, &c)?;
    let group = Group {
        subscription: &sub,
        resource_group: &rg,
    };
    let call = arm::access_policy(&base, &group, &vault, kind, &tenant, &object_id, &perms);
    let echoed = c.json(&call).await?;
    // The server echoes the edit (as Azure does); show the vault's policies as they now are,
    // so a removed object is seen gone. Should the read fail, the echo is what we have.
    let r = c
        .json(&arm::vault_get(&base, &group, &vault))
        .await
        .unwrap_or(echoed);
    let policies: Vec<Value> = r["properties"]["accessPolicies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    output::items(
        g.output,
        &[
            col("ObjectId", &|v| s(v, "/objectId")),
            col("TenantId", &|v| s(v, "/tenantId")),
            col("Secrets", &|v| {
                v["permissions"]["secrets"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            }),
        ],
        &policies,
    );
    Ok(ExitCode::SUCCESS)
}
