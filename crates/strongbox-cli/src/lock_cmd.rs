//! `strongbox lock …`: management locks (`Microsoft.Authorization/locks`) on a resource group or
//! on a vault, with the paths azure-mgmt-resource-locks sends.

use crate::context::{self, Global};
use crate::output::{self, Col, col, s};
use clap::{Subcommand, ValueEnum};
use std::process::ExitCode;
use strongbox_client::arm::{self, Group, LockScope};

/// Azure's spellings (as `az lock create --lock-type` takes them), or kebab case.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Level {
    /// Refuses deletes at the scope and beneath it.
    #[value(name = "CanNotDelete", alias = "can-not-delete")]
    CanNotDelete,
    /// Refuses deletes and writes at the scope and beneath it.
    #[value(name = "ReadOnly", alias = "read-only")]
    ReadOnly,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::CanNotDelete => "CanNotDelete",
            Level::ReadOnly => "ReadOnly",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Scope {
    /// Resource group (default: the one the credentials name).
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    /// Lock this vault (default: the resource group).
    #[arg(long)]
    vault: Option<String>,
}

#[derive(Subcommand)]
pub enum LockCommand {
    /// Create or replace a lock.
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 't', value_enum, ignore_case = true)]
        lock_type: Level,
        #[arg(long)]
        notes: Option<String>,
        #[command(flatten)]
        scope: Scope,
    },
    /// List the locks at a scope (a resource group's include its vaults').
    List {
        #[command(flatten)]
        scope: Scope,
    },
    /// Delete a lock (exit 4 if there is none).
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        scope: Scope,
    },
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("Level", &|v| s(v, "/properties/level")),
        col("Notes", &|v| s(v, "/properties/notes")),
        col("Id", &|v| s(v, "/id")),
    ]
}

pub async fn run(g: &Global, command: LockCommand) -> anyhow::Result<ExitCode> {
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    let scope = match &command {
        LockCommand::Create { scope, .. }
        | LockCommand::List { scope }
        | LockCommand::Delete { scope, .. } => scope,
    };
    let rg = context::resource_group(&scope.resource_group, &c)?;
    let group = Group {
        subscription: &sub,
        resource_group: &rg,
    };
    let at = match &scope.vault {
        Some(v) => LockScope::Vault(group, v),
        None => LockScope::Group(group),
    };
    match &command {
        LockCommand::Create {
            name,
            lock_type,
            notes,
            ..
        } => {
            let call = arm::lock_create(&base, &at, name, lock_type.as_str(), notes.as_deref());
            let r = c.json(&call).await?;
            output::one(g.output, &cols(), &r);
        }
        LockCommand::List { .. } => {
            let items = c.list_all(&arm::lock_list(&base, &at), None).await?;
            output::items(g.output, &cols(), &items);
        }
        LockCommand::Delete { name, .. } => {
            // ARM answers 204 when there was nothing to delete.
            let (status, _) = c.send(&arm::lock_delete(&base, &at, name)).await?;
            if status == 204 {
                return Err(crate::exit::refused(
                    404,
                    "LockNotFound",
                    format!("The lock '{name}' could not be found."),
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
