//! `strongbox identity …`: managed identities, key credentials and the environment a workload
//! needs to get tokens for an identity. Works on the store directly (offline administration,
//! like `vault create` and `sp create`); the server picks the changes up at once.

use crate::admin_cmd::{StoreArgs, default_tenant};
use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_domain::SystemClock;
use strongbox_domain::identities::{self, ManagedIdentity, NewUserAssigned};
use strongbox_identity::credentials;
use strongbox_identity::managed;
use strongbox_store::{PrincipalRow, Store};

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Create a user-assigned identity (or, with --owner, the system-assigned identity of a
    /// resource); prints it as JSON.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// Name of the user-assigned identity.
        #[arg(long, required_unless_present = "owner", conflicts_with = "owner")]
        name: Option<String>,
        /// ARM id of the resource that owns a system-assigned identity.
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value = "strongbox-dev")]
        resource_group: String,
        #[arg(long, default_value = "local")]
        location: String,
        /// Subscription id (default: the dev subscription).
        #[arg(long)]
        subscription: Option<String>,
    },
    /// List the managed identities of a subscription as JSON.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        resource_group: Option<String>,
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Delete a managed identity with its credentials, endpoints and role assignments.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
    },
    /// Print the environment variables a workload needs so that azure-identity's
    /// ManagedIdentityCredential gets tokens for this identity. The App Service form issues a
    /// new secret each time (shown once).
    Env {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        which: Which,
        #[arg(long, value_enum, default_value_t = Form::AppService)]
        form: Form,
        /// Base URL of the server (default: the authority in dev-credentials.json).
        #[arg(long)]
        server_url: Option<String>,
        /// CA bundle the workload must trust (default: the dev CA).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Print a JSON object instead of KEY=VALUE lines.
        #[arg(long)]
        json: bool,
    },
    /// Key credentials (certificates, public keys) of a service principal or identity.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
}

#[derive(clap::Args)]
pub struct Which {
    /// Name of a user-assigned identity.
    #[arg(long, required_unless_present_any = ["owner", "object_id"])]
    name: Option<String>,
    #[arg(long, default_value = "strongbox-dev")]
    resource_group: String,
    /// ARM id of the resource that owns a system-assigned identity.
    #[arg(long, conflicts_with = "name")]
    owner: Option<String>,
    /// Object (principal) id of the identity.
    #[arg(long, conflicts_with_all = ["name", "owner"])]
    object_id: Option<String>,
    #[arg(long)]
    subscription: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Form {
    /// IDENTITY_ENDPOINT + IDENTITY_HEADER.
    AppService,
    /// IDENTITY_ENDPOINT + IMDS_ENDPOINT (the server must run with --arc-token-dir).
    Arc,
}

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// Register a certificate (PEM or DER; only the certificate is read) or a public key (JWK
    /// or PEM) for signed client assertions.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        principal: PrincipalArg,
        #[arg(
            long,
            required_unless_present = "public_key",
            conflicts_with = "public_key"
        )]
        certificate: Option<PathBuf>,
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Key id of a public key (default: its JWK `kid`, else its RFC 7638 thumbprint).
        #[arg(long, requires = "public_key")]
        kid: Option<String>,
        /// Lifetime of a public key credential in days.
        #[arg(long, default_value_t = 365, requires = "public_key")]
        days: i64,
    },
    /// List key credentials as JSON.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        principal: PrincipalArg,
    },
    /// Remove a key credential by key id (certificate thumbprint or kid).
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        principal: PrincipalArg,
        #[arg(long)]
        key_id: String,
    },
}

#[derive(clap::Args)]
pub struct PrincipalArg {
    /// Client (application) id of the principal.
    #[arg(long)]
    client_id: String,
    /// Tenant id (default: the dev tenant).
    #[arg(long)]
    tenant: Option<String>,
}

async fn subscription(store: &dyn Store, given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(s) => Ok(s),
        None => store
            .get_meta("dev_subscription")
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .context("no --subscription given and no dev subscription exists"),
    }
}

fn identity_json(m: &ManagedIdentity) -> serde_json::Value {
    json!({
        "id": if m.is_user_assigned() { m.arm_id() } else {
            format!("{}/providers/Microsoft.ManagedIdentity/identities/default", m.arm_id())
        },
        "kind": m.identity.kind,
        "name": m.identity.name,
        "resourceGroup": m.identity.resource_group,
        "location": m.identity.location,
        "tenantId": m.principal.tenant_id,
        "principalId": m.principal.object_id,
        "clientId": m.principal.client_id,
    })
}

async fn find(store: &dyn Store, which: &Which) -> anyhow::Result<ManagedIdentity> {
    if let Some(oid) = &which.object_id {
        let (identity, principal) = store
            .get_managed_identity(oid)
            .await?
            .with_context(|| format!("no managed identity with object id {oid}"))?;
        return Ok(ManagedIdentity {
            identity,
            principal,
        });
    }
    if let Some(owner) = &which.owner {
        return identities::system_assigned_for(store, owner)
            .await?
            .with_context(|| format!("{owner} has no system-assigned identity"));
    }
    let name = which
        .name
        .as_deref()
        .context("give --name, --owner or --object-id")?;
    let sub = subscription(store, which.subscription.clone()).await?;
    identities::get_user_assigned(store, &sub, &which.resource_group, name)
        .await?
        .with_context(|| {
            format!(
                "no user-assigned identity {name} in {}",
                which.resource_group
            )
        })
}

async fn principal(store: &dyn Store, p: &PrincipalArg) -> anyhow::Result<PrincipalRow> {
    let tenant = default_tenant(store, p.tenant.clone()).await?;
    store
        .get_principal_by_client_id(&tenant, &p.client_id)
        .await?
        .with_context(|| format!("no principal with client id {}", p.client_id))
}

fn print(v: serde_json::Value) {
    println!("{v}");
}

/// A value safe to paste into a POSIX shell.
fn shell_quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/~+=@%".contains(&b))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

pub async fn run(command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Create {
            store,
            name,
            owner,
            resource_group,
            location,
            subscription: sub,
        } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let m = match (name, owner) {
                (_, Some(owner)) => {
                    identities::create_system_assigned(&*s, &SystemClock, &owner).await?
                }
                (Some(name), None) => {
                    let sub = subscription(&*s, sub).await?;
                    let (m, created) = identities::put_user_assigned(
                        &*s,
                        &SystemClock,
                        NewUserAssigned {
                            subscription_id: &sub,
                            resource_group: &resource_group,
                            name: &name,
                            location: &location,
                            tags_json: None,
                        },
                    )
                    .await?;
                    anyhow::ensure!(created, "an identity named {name} already exists");
                    m
                }
                (None, None) => anyhow::bail!("give --name or --owner"),
            };
            print(identity_json(&m));
        }
        IdentityCommand::List {
            store,
            resource_group,
            subscription: sub,
        } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let sub = subscription(&*s, sub).await?;
            let rg = resource_group.map(|r| r.to_ascii_lowercase());
            let items: Vec<_> = identities::list_all(&*s, &sub)
                .await?
                .iter()
                .filter(|m| rg.as_ref().is_none_or(|r| &m.identity.resource_group == r))
                .map(identity_json)
                .collect();
            print(json!(items));
        }
        IdentityCommand::Delete { store, which } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let m = find(&*s, &which).await?;
            s.delete_managed_identity(&m.principal.object_id).await?;
            print(json!({"deleted": m.principal.object_id}));
        }
        IdentityCommand::Env {
            store,
            which,
            form,
            server_url,
            ca_cert,
            json: as_json,
        } => {
            let config = store.config()?;
            let (s, keyring) = strongbox_server::open_context(&config).await?;
            let m = find(&*s, &which).await?;
            let dev: Option<serde_json::Value> =
                std::fs::read(config.data_dir.join("dev-credentials.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            let base = server_url
                .or_else(|| dev.as_ref()?["authority"].as_str().map(String::from))
                .context("give --server-url (no dev-credentials.json names the server)")?;
            let base = base.trim_end_matches('/');
            let ca = ca_cert
                .map(|p| p.display().to_string())
                .or_else(|| dev.as_ref()?["ca_cert"].as_str().map(String::from));
            let mut vars: Vec<(&str, String)> = match form {
                Form::AppService => {
                    let (_, secret) = managed::issue_app_service_secret(
                        &*s,
                        &keyring,
                        &SystemClock,
                        &m.principal.object_id,
                    )
                    .await?;
                    vec![
                        ("IDENTITY_ENDPOINT", format!("{base}/msi/token")),
                        ("IDENTITY_HEADER", secret.expose_secret().to_string()),
                    ]
                }
                Form::Arc => {
                    let e =
                        managed::arc_endpoint(&*s, &SystemClock, &m.principal.object_id).await?;
                    vec![
                        (
                            "IDENTITY_ENDPOINT",
                            format!("{base}/msi/arc/{}/token", e.id),
                        ),
                        ("IMDS_ENDPOINT", format!("{base}/msi/arc/{}", e.id)),
                    ]
                }
            };
            if m.is_user_assigned() {
                // Read by DefaultAzureCredential; ManagedIdentityCredential() needs no selector
                // (the endpoint serves one identity), and a selector it is given must match.
                vars.push(("AZURE_CLIENT_ID", m.principal.client_id.clone()));
            }
            if let Some(ca) = ca {
                vars.push(("REQUESTS_CA_BUNDLE", ca.clone()));
                vars.push(("SSL_CERT_FILE", ca));
            }
            if as_json {
                let map: serde_json::Map<_, _> = vars
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                print(serde_json::Value::Object(map));
            } else {
                for (k, v) in vars {
                    println!("{k}={}", shell_quote(&v));
                }
            }
        }
        IdentityCommand::Credential { command } => return credential(command).await,
    }
    Ok(ExitCode::SUCCESS)
}

fn credential_json(c: &strongbox_store::KeyCredentialRow) -> serde_json::Value {
    json!({
        "keyId": c.key_id,
        "type": c.kind,
        "sha256": c.sha256,
        "startDateTime": c.not_before,
        "endDateTime": c.expires,
    })
}

async fn credential(command: CredentialCommand) -> anyhow::Result<ExitCode> {
    match command {
        CredentialCommand::Add {
            store,
            principal: p,
            certificate,
            public_key,
            kid,
            days,
        } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let principal = principal(&*s, &p).await?;
            let row = match (certificate, public_key) {
                (Some(path), _) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    credentials::add_certificate(&*s, &SystemClock, &principal, &bytes).await?
                }
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    credentials::add_public_key(
                        &*s,
                        &SystemClock,
                        &principal,
                        &text,
                        kid.as_deref(),
                        days,
                    )
                    .await?
                }
                (None, None) => anyhow::bail!("give --certificate or --public-key"),
            };
            print(credential_json(&row));
        }
        CredentialCommand::List {
            store,
            principal: p,
        } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let principal = principal(&*s, &p).await?;
            let rows = s.list_key_credentials(&principal.object_id).await?;
            print(json!(rows.iter().map(credential_json).collect::<Vec<_>>()));
        }
        CredentialCommand::Delete {
            store,
            principal: p,
            key_id,
        } => {
            let (s, _) = strongbox_server::open_context(&store.config()?).await?;
            let principal = principal(&*s, &p).await?;
            s.delete_key_credential(&principal.object_id, &key_id)
                .await
                .with_context(|| format!("no key credential {key_id}"))?;
            print(json!({"deleted": key_id}));
        }
    }
    Ok(ExitCode::SUCCESS)
}
