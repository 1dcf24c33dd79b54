//! `strongbox role …`: role assignments through the server's management API over HTTPS
//! (`Microsoft.Authorization/roleAssignments`, as azure-mgmt-authorization sends them), with the
//! credentials every client command uses (or `--data-dir`'s dev-credentials.json). Going
//! through the API means the server's own rules apply: only an Owner at the scope may assign,
//! and every change is audited.

use crate::context::{self, Global};
use crate::exit::{refused, usage};
use crate::output::{self, Col, col, s};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_client::arm;
use strongbox_domain::rbac;

#[derive(Args)]
pub struct Connection {
    /// Use this data dir's dev-credentials.json (unless the global --credentials is given).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ScopeArgs {
    /// Full ARM scope (/subscriptions/…[/resourceGroups/…[/providers/…]]).
    #[arg(long, conflicts_with_all = ["vault", "secret", "resource_group"])]
    scope: Option<String>,
    /// A vault's name: the scope is that vault (in --resource-group).
    #[arg(long)]
    vault: Option<String>,
    /// With --vault: the scope is one secret of the vault.
    #[arg(long, requires = "vault")]
    secret: Option<String>,
    /// A resource group: the scope is that group, or with --vault the vault's group
    /// (default: the credentials' resource group).
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Assign a role (by name, e.g. "Key Vault Secrets User", or GUID) to a principal at a scope
    /// (default: the subscription).
    Assign {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        role: String,
        /// Object id of the principal (service principal or managed identity).
        #[arg(long)]
        assignee: String,
        /// The assignment's name (a GUID; default: a new one).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the role assignments that apply at a scope (default: the subscription): at it,
    /// above it and beneath it.
    List {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Only this principal's assignments.
        #[arg(long)]
        assignee: Option<String>,
        /// Only assignments at the scope or above it (not beneath).
        #[arg(long)]
        at_scope: bool,
    },
    /// Delete a role assignment, by its full id or by name and scope (exit 4 if there is none).
    Delete {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        scope: ScopeArgs,
        /// The assignment's full id ({scope}/providers/Microsoft.Authorization/roleAssignments/{name}).
        #[arg(long, conflicts_with = "name")]
        id: Option<String>,
        /// The assignment's name (a GUID), at the scope given.
        #[arg(long, required_unless_present = "id")]
        name: Option<String>,
    },
    /// List the built-in role definitions.
    Definitions {
        #[command(flatten)]
        conn: Connection,
    },
}

/// The global options, with `--data-dir` standing in for `--credentials` when only it is given.
fn global_for(g: &Global, conn: &Connection) -> Global {
    let mut g = g.clone();
    if g.credentials.is_none()
        && let Some(d) = &conn.data_dir
    {
        g.credentials = Some(d.join("dev-credentials.json"));
    }
    g
}

fn scope_of(s: &ScopeArgs, sub: &str, c: &strongbox_client::Client) -> anyhow::Result<String> {
    if let Some(scope) = &s.scope {
        return Ok(format!("/{}", scope.trim_matches('/')));
    }
    let group = |rg: &str| format!("/subscriptions/{sub}/resourceGroups/{rg}");
    Ok(match (&s.vault, &s.resource_group) {
        (None, None) => format!("/subscriptions/{sub}"),
        (None, Some(rg)) => group(rg),
        (Some(vault), rg) => {
            let rg = context::resource_group(rg, c)?;
            let mut id = format!("{}/providers/Microsoft.KeyVault/vaults/{vault}", group(&rg));
            if let Some(secret) = &s.secret {
                id.push_str(&format!("/secrets/{secret}"));
            }
            id
        }
    })
}

/// The subscription a scope lies in (role definition ids name it).
fn subscription_of(scope: &str) -> Option<&str> {
    scope
        .strip_prefix("/subscriptions/")
        .and_then(|r| r.split('/').next())
        .filter(|s| !s.is_empty())
}

fn role_guid(role: &str) -> anyhow::Result<&'static str> {
    rbac::role_by_name(role)
        .or_else(|| rbac::role_definition(role))
        .map(|r| r.id)
        .ok_or_else(|| {
            usage(format!(
                "unknown role {role:?}; built-in roles: {}",
                rbac::BUILTIN_ROLES
                    .iter()
                    .map(|r| r.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("Role", &|v| {
            let id = s(v, "/properties/roleDefinitionId");
            rbac::role_definition(&id).map_or(id, |r| r.name.to_string())
        }),
        col("Principal", &|v| s(v, "/properties/principalId")),
        col("Scope", &|v| s(v, "/properties/scope")),
    ]
}

pub async fn run(g: &Global, command: RoleCommand) -> anyhow::Result<ExitCode> {
    let conn = match &command {
        RoleCommand::Assign { conn, .. }
        | RoleCommand::List { conn, .. }
        | RoleCommand::Delete { conn, .. }
        | RoleCommand::Definitions { conn } => conn,
    };
    let g = global_for(g, conn);
    let c = context::client(&g)?;
    let sub = context::subscription(&g, &c)?;
    let base = c.management_base().to_string();
    match command {
        RoleCommand::Assign {
            scope,
            role,
            assignee,
            name,
            ..
        } => {
            let guid = role_guid(&role)?;
            let scope = scope_of(&scope, &sub, &c)?;
            let name = name.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let call = arm::role_assign(
                &base,
                &scope,
                &name,
                subscription_of(&scope).unwrap_or(&sub),
                guid,
                &assignee,
                Some("ServicePrincipal"),
            );
            let r = c.json(&call).await?;
            output::one(g.output, &cols(), &r);
        }
        RoleCommand::List {
            scope,
            assignee,
            at_scope,
            ..
        } => {
            let scope = scope_of(&scope, &sub, &c)?;
            let call = arm::role_list(&base, &scope, assignee.as_deref(), at_scope);
            let items = c.list_all(&call, None).await?;
            output::items(g.output, &cols(), &items);
        }
        RoleCommand::Delete {
            scope, id, name, ..
        } => {
            let id = match (id, name) {
                (Some(id), _) => id,
                (None, Some(name)) => arm::role_assignment_id(&scope_of(&scope, &sub, &c)?, &name),
                (None, None) => return Err(usage("give --id or --name")),
            };
            // ARM answers 204 when there was nothing to delete.
            match c.send(&arm::role_delete(&base, &id)).await? {
                (204, _) | (_, None) => {
                    return Err(refused(
                        404,
                        "RoleAssignmentNotFound",
                        format!("The role assignment '{id}' is not found."),
                    ));
                }
                (_, Some(r)) => output::one(g.output, &cols(), &r),
            }
        }
        RoleCommand::Definitions { .. } => {
            let call = arm::role_definitions(&base, &format!("/subscriptions/{sub}"));
            let items = c.list_all(&call, None).await?;
            output::items(
                g.output,
                &[
                    col("Name", &|v: &Value| s(v, "/properties/roleName")),
                    col("Id", &|v| s(v, "/name")),
                    col("Description", &|v| s(v, "/properties/description")),
                ],
                &items,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
