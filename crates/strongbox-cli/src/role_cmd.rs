//! `strongbox role assign | list | delete`: role assignments
//! (`Microsoft.Authorization/roleAssignments`, as azure-mgmt-authorization builds them).

use crate::context::{self, Global};
use crate::exit::usage;
use crate::output::{self, Col, col, s};
use clap::Subcommand;
use serde_json::Value;
use std::process::ExitCode;
use strongbox_client::arm;

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Assign a role to a principal at a scope.
    Assign {
        /// Role name (e.g. "Key Vault Secrets User") or role definition GUID.
        #[arg(long)]
        role: String,
        /// The principal's object id.
        #[arg(long)]
        assignee: String,
        /// ARM id of the scope (default: the subscription).
        #[arg(long)]
        scope: Option<String>,
        /// User, Group or ServicePrincipal.
        #[arg(long)]
        assignee_principal_type: Option<String>,
    },
    /// List role assignments at a scope (and above it), or one principal's.
    List {
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Delete role assignments: by id, or those of --assignee (with --role) at --scope.
    Delete {
        /// Full assignment ids.
        #[arg(long, num_args = 1..)]
        ids: Vec<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        scope: Option<String>,
    },
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("Principal", &|v| s(v, "/properties/principalId")),
        col("Role", &|v| {
            let id = s(v, "/properties/roleDefinitionId");
            arm::role_name(&id).map_or(id.clone(), String::from)
        }),
        col("Scope", &|v| s(v, "/properties/scope")),
        col("Name", &|v| s(v, "/name")),
    ]
}

fn random_guid() -> String {
    let b = strongbox_crypto::random_bytes::<16>();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

pub async fn run(g: &Global, command: RoleCommand) -> anyhow::Result<ExitCode> {
    let c = context::client(g)?;
    let sub = context::subscription(g, &c)?;
    let base = c.management_base().to_string();
    let default_scope = format!("/subscriptions/{sub}");
    match command {
        RoleCommand::Assign {
            role,
            assignee,
            scope,
            assignee_principal_type,
        } => {
            let guid =
                arm::role_guid(&role).ok_or_else(|| usage(format!("unknown role {role:?}")))?;
            let scope = scope.unwrap_or(default_scope);
            let call = arm::role_assign(
                &base,
                &scope,
                &random_guid(),
                &sub,
                &guid,
                &assignee,
                assignee_principal_type.as_deref(),
            );
            let r = c.json(&call).await?;
            output::one(g.output, &cols(), &r);
        }
        RoleCommand::List { scope, assignee } => {
            let scope = scope.unwrap_or(default_scope);
            let items = c
                .list_all(&arm::role_list(&base, &scope, assignee.as_deref()), None)
                .await?;
            output::items(g.output, &cols(), &items);
        }
        RoleCommand::Delete {
            ids,
            assignee,
            role,
            scope,
        } => {
            let ids = if !ids.is_empty() {
                ids
            } else {
                let assignee = assignee
                    .ok_or_else(|| usage("give --ids, or --assignee (with --role and --scope)"))?;
                let scope = scope.unwrap_or(default_scope);
                let role = role
                    .map(|r| arm::role_guid(&r).ok_or_else(|| usage(format!("unknown role {r:?}"))))
                    .transpose()?;
                let items = c
                    .list_all(&arm::role_list(&base, &scope, Some(&assignee)), None)
                    .await?;
                let matching: Vec<String> = items
                    .iter()
                    .filter(|a| s(a, "/properties/scope").eq_ignore_ascii_case(&scope))
                    .filter(|a| {
                        role.as_ref().is_none_or(|r| {
                            arm::role_guid(&s(a, "/properties/roleDefinitionId")).as_deref()
                                == Some(r)
                        })
                    })
                    .map(|a| s(a, "/id"))
                    .collect();
                if matching.is_empty() {
                    return Err(strongbox_client::Error::Http {
                        status: 404,
                        code: "RoleAssignmentNotFound".into(),
                        message: "no matching role assignment at that scope".into(),
                    }
                    .into());
                }
                matching
            };
            let mut deleted: Vec<Value> = Vec::new();
            for id in ids {
                if let (_, Some(v)) = c.send(&arm::role_delete(&base, &id)).await? {
                    deleted.push(v);
                }
            }
            output::items(g.output, &cols(), &deleted);
        }
    }
    Ok(ExitCode::SUCCESS)
}
