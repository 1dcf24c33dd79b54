//! `strongbox role …`: role assignments through the server's management API over HTTPS
//! (`Microsoft.Authorization/roleAssignments`), authenticated with a credentials file in the
//! shape of dev-credentials.json (tenant, client id and secret, authority, CA). Going through
//! the API means the server's own rules apply: only an Owner at the scope may assign, and
//! every change is audited.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_domain::rbac;

const API_VERSION: &str = "2022-04-01";

#[derive(Args)]
pub struct Connection {
    /// Data dir whose dev-credentials.json to use (unless the global --credentials is given).
    #[arg(long, env = "STRONGBOX_DATA_DIR", default_value = ".strongbox")]
    data_dir: PathBuf,
}

#[derive(Args)]
pub struct ScopeArgs {
    /// Full ARM scope (/subscriptions/…[/resourceGroups/…[/providers/…]]).
    #[arg(long, conflicts_with_all = ["vault", "secret"])]
    scope: Option<String>,
    /// A vault's name: the scope is that vault (in --resource-group).
    #[arg(long)]
    vault: Option<String>,
    /// With --vault: the scope is one secret of the vault.
    #[arg(long, requires = "vault")]
    secret: Option<String>,
    /// Resource group of --vault (default: the credentials' resource group).
    #[arg(long)]
    resource_group: Option<String>,
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Assign a role (by name, e.g. "Key Vault Secrets User", or GUID) to a principal at a scope.
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
    /// List the role assignments that apply at a scope (default: the subscription), as JSON.
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
    /// Delete a role assignment, by its full id or by name and scope.
    Delete {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        scope: ScopeArgs,
        /// The assignment's full id ({scope}/providers/Microsoft.Authorization/roleAssignments/{name}).
        #[arg(long, conflicts_with = "name")]
        id: Option<String>,
        #[arg(long, required_unless_present = "id")]
        name: Option<String>,
    },
    /// List the built-in role definitions, as JSON.
    Definitions {
        #[command(flatten)]
        conn: Connection,
    },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    subscription: String,
    resource_group: String,
}

fn creds_field<'a>(creds: &'a Value, k: &str) -> anyhow::Result<&'a str> {
    creds[k]
        .as_str()
        .with_context(|| format!("the credentials file has no '{k}'"))
}

impl Api {
    async fn connect(conn: &Connection, credentials: Option<&PathBuf>) -> anyhow::Result<Api> {
        let path = credentials
            .cloned()
            .clone()
            .unwrap_or_else(|| conn.data_dir.join("dev-credentials.json"));
        let creds: Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", path.display()))?;
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = creds["ca_cert"].as_str() {
            let pem = std::fs::read(ca).with_context(|| format!("reading {ca}"))?;
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let http = http.build()?;
        let base = creds_field(&creds, "authority")?
            .trim_end_matches('/')
            .to_string();
        let tenant = creds_field(&creds, "tenant_id")?;
        let resp = http
            .post(format!("{base}/{tenant}/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", creds_field(&creds, "client_id")?),
                ("client_secret", creds_field(&creds, "client_secret")?),
                ("scope", &format!("{base}/.default")),
            ])
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success(),
            "the token service refused: {}",
            body["error_description"]
                .as_str()
                .unwrap_or("no reason given")
        );
        Ok(Api {
            http,
            base,
            token: body["access_token"]
                .as_str()
                .context("the token response has no access_token")?
                .to_string(),
            subscription: creds_field(&creds, "subscription_id")?.to_string(),
            resource_group: creds["resource_group"]
                .as_str()
                .unwrap_or("strongbox-dev")
                .to_string(),
        })
    }

    fn scope(&self, s: &ScopeArgs) -> String {
        if let Some(scope) = &s.scope {
            return scope.trim_end_matches('/').to_string();
        }
        match &s.vault {
            None => format!("/subscriptions/{}", self.subscription),
            Some(vault) => {
                let rg = s.resource_group.as_deref().unwrap_or(&self.resource_group);
                let mut id = format!(
                    "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}",
                    self.subscription
                );
                if let Some(secret) = &s.secret {
                    id.push_str(&format!("/secrets/{secret}"));
                }
                id
            }
        }
    }

    /// Sends a request; returns the JSON body (Null for an empty one) or the ARM error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("{path} is not a valid path"))?;
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION)
            .extend_pairs(query);
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.context("calling the management API")?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            anyhow::bail!(
                "{} ({status}): {}",
                json["error"]["code"].as_str().unwrap_or("Error"),
                json["error"]["message"].as_str().unwrap_or("no message")
            );
        }
        Ok((status, json))
    }
}

fn role_id(subscription: &str, role: &str) -> anyhow::Result<String> {
    let def = rbac::role_by_name(role)
        .or_else(|| rbac::role_definition(role))
        .with_context(|| {
            format!(
                "unknown role {role:?}; built-in roles: {}",
                rbac::BUILTIN_ROLES
                    .iter()
                    .map(|r| r.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    Ok(format!(
        "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{}",
        def.id
    ))
}

pub async fn run(g: &crate::context::Global, command: RoleCommand) -> anyhow::Result<ExitCode> {
    match command {
        RoleCommand::Assign {
            conn,
            scope,
            role,
            assignee,
            name,
        } => {
            let api = Api::connect(&conn, g.credentials.as_ref()).await?;
            let role_id = role_id(&api.subscription, &role)?;
            let name = name.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let path = format!(
                "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                api.scope(&scope)
            );
            let body = serde_json::json!({"properties": {
                "roleDefinitionId": role_id,
                "principalId": assignee,
                "principalType": "ServicePrincipal",
            }});
            let (_, v) = api
                .call(reqwest::Method::PUT, &path, &[], Some(body))
                .await?;
            println!("{v}");
        }
        RoleCommand::List {
            conn,
            scope,
            assignee,
            at_scope,
        } => {
            let api = Api::connect(&conn, g.credentials.as_ref()).await?;
            let mut terms = vec![];
            if at_scope {
                terms.push("atScope()".to_string());
            }
            if let Some(a) = &assignee {
                terms.push(format!("principalId eq '{a}'"));
            }
            let filter = terms.join(" and ");
            let query: Vec<(&str, &str)> = if filter.is_empty() {
                vec![]
            } else {
                vec![("$filter", filter.as_str())]
            };
            let path = format!(
                "{}/providers/Microsoft.Authorization/roleAssignments",
                api.scope(&scope)
            );
            let (_, v) = api.call(reqwest::Method::GET, &path, &query, None).await?;
            println!("{}", v["value"]);
        }
        RoleCommand::Delete {
            conn,
            scope,
            id,
            name,
        } => {
            let api = Api::connect(&conn, g.credentials.as_ref()).await?;
            let path = match (id, name) {
                (Some(id), _) => id,
                (None, Some(name)) => format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    api.scope(&scope)
                ),
                (None, None) => anyhow::bail!("give --id or --name"),
            };
            let (status, v) = api.call(reqwest::Method::DELETE, &path, &[], None).await?;
            if status == 204 {
                eprintln!("no such role assignment");
                return Ok(ExitCode::FAILURE);
            }
            println!("{v}");
        }
        RoleCommand::Definitions { conn } => {
            let api = Api::connect(&conn, g.credentials.as_ref()).await?;
            let path = format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions",
                api.subscription
            );
            let (_, v) = api.call(reqwest::Method::GET, &path, &[], None).await?;
            println!("{}", v["value"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}
