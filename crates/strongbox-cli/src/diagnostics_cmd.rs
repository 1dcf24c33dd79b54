//! `strongbox diagnostic-settings …`: where a vault's audit records go besides the store
//! (`Microsoft.Insights/diagnosticSettings` on the vault, as azure-mgmt-monitor 6.x sends it).

use crate::context::{self, Global};
use crate::output::{self, Col, col, s};
use clap::Subcommand;
use serde_json::Value;
use std::process::ExitCode;
use strongbox_client::arm::{self, Group};

#[derive(clap::Args, Debug)]
pub struct On {
    /// The vault.
    #[arg(long)]
    vault: String,
    /// The vault's resource group (default: the one the credentials name).
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
}

#[derive(Subcommand)]
pub enum DiagnosticsCommand {
    /// Create or replace a setting.
    Create {
        #[command(flatten)]
        on: On,
        #[arg(long, short = 'n')]
        name: String,
        /// Storage account name (in the vault's resource group) or full id.
        #[arg(long)]
        storage_account: Option<String>,
        /// Log categories (default: the `audit` category group).
        #[arg(long, num_args = 1..)]
        categories: Vec<String>,
    },
    Show {
        #[command(flatten)]
        on: On,
        #[arg(long, short = 'n')]
        name: String,
    },
    List {
        #[command(flatten)]
        on: On,
    },
    Delete {
        #[command(flatten)]
        on: On,
        #[arg(long, short = 'n')]
        name: String,
    },
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("StorageAccount", &|v| {
            s(v, "/properties/storageAccountId")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        }),
        col("Logs", &|v| {
            v["properties"]["logs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|l| l["enabled"].as_bool() == Some(true))
                        .filter_map(|l| l["category"].as_str().or(l["categoryGroup"].as_str()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        }),
    ]
}

pub async fn run(g: &Global, command: DiagnosticsCommand) -> anyhow::Result<ExitCode> {
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    let on = match &command {
        DiagnosticsCommand::Create { on, .. }
        | DiagnosticsCommand::Show { on, .. }
        | DiagnosticsCommand::List { on }
        | DiagnosticsCommand::Delete { on, .. } => on,
    };
    let rg = context::resource_group(&on.resource_group, &c)?;
    let group = Group {
        subscription: &sub,
        resource_group: &rg,
    };
    let vault_id = group.vault_id(&on.vault);
    match &command {
        DiagnosticsCommand::Create {
            name,
            storage_account,
            categories,
            ..
        } => {
            let account = storage_account.as_ref().map(|a| {
                if a.starts_with('/') {
                    a.clone()
                } else {
                    group.storage_id(a)
                }
            });
            let call = arm::diagnostic_set(&base, &vault_id, name, account.as_deref(), categories);
            let r = c.json(&call).await?;
            output::one(g.output, &cols(), &r);
        }
        DiagnosticsCommand::Show { name, .. } => {
            let r = c.json(&arm::diagnostic_get(&base, &vault_id, name)).await?;
            output::one(g.output, &cols(), &r);
        }
        DiagnosticsCommand::List { .. } => {
            let r = c.json(&arm::diagnostic_list(&base, &vault_id)).await?;
            let items: Vec<Value> = r["value"].as_array().cloned().unwrap_or_default();
            output::items(g.output, &cols(), &items);
        }
        DiagnosticsCommand::Delete { name, .. } => {
            c.send(&arm::diagnostic_delete(&base, &vault_id, name))
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
