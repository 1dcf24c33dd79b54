//! `strongbox synced-secret …` and `strongbox endpoint …`: edge resources of a running agent,
//! through its local API (`agent.json` + `api.token` in the agent's data dir). "create" stores
//! new values in the vault with the caller's own credentials (audited as the caller) before the
//! synced secret is made; "add-from-vault" lists the vault's secret names and syncs existing ones.
//! Deleting a synced secret removes it at the edge only, never in the vault.

use crate::context::{self, Global};
use crate::exit::usage;
use crate::output::{self, Col, col, s};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use strongbox_client::secrets;

#[derive(Args, Debug, Clone)]
pub struct AgentDir {
    /// The running agent's data dir (it holds agent.json and api.token).
    #[arg(long, env = "STRONGBOX_AGENT_DIR")]
    pub agent_dir: PathBuf,
}

/// The synced secret's Secret type (the agent knows each one's required keys).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SecretType {
    Opaque,
    BasicAuth,
    Tls,
    SshAuth,
    #[value(name = "dockerconfigjson")]
    DockerConfigJson,
}

impl From<SecretType> for strongbox_agent::targets::SecretType {
    fn from(t: SecretType) -> Self {
        use strongbox_agent::targets::SecretType as K;
        match t {
            SecretType::Opaque => K::Opaque,
            SecretType::BasicAuth => K::BasicAuth,
            SecretType::Tls => K::Tls,
            SecretType::SshAuth => K::SshAuth,
            SecretType::DockerConfigJson => K::DockerConfigJson,
        }
    }
}

/// How a synced secret is delivered, as create and add-from-vault both take it.
#[derive(Args, Debug, Clone)]
pub struct Delivery {
    #[arg(long = "type", value_enum, default_value_t = SecretType::Opaque)]
    pub secret_type: SecretType,
    /// Deliver as files into this dir (default: the agent's secrets dir).
    #[arg(long, conflicts_with = "kube_namespace")]
    pub target_dir: Option<PathBuf>,
    /// Deliver as a Kubernetes Secret in this namespace.
    #[arg(long)]
    pub kube_namespace: Option<String>,
    /// Keep the last known value at the edge when a vault secret is deleted or disabled
    /// (default: remove it from the target).
    #[arg(long)]
    pub keep_last_known: bool,
    /// Seconds to wait for the synced secret to reach its target (0: don't wait).
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
}

#[derive(Subcommand)]
pub enum SyncedSecretCommand {
    /// Store new values in the vault (with your credentials) and sync them down as one synced
    /// secret. Values come from --values-file or stdin: a JSON object {KEY: value}.
    Create {
        #[command(flatten)]
        a: AgentDir,
        #[arg(long, short = 'n')]
        name: String,
        /// A key and the vault secret it comes from: KEY=SECRET (repeatable). SECRET may be a
        /// name, NAME/VERSION to pin a version, or a full secret id in this edge's vault.
        #[arg(long = "secret", value_name = "KEY=SECRET", required = true)]
        secrets: Vec<String>,
        #[command(flatten)]
        delivery: Delivery,
        #[arg(long)]
        values_file: Option<PathBuf>,
        /// Write new versions of vault secrets that already exist (otherwise refused).
        #[arg(long)]
        overwrite: bool,
    },
    /// Sync existing vault secrets (latest version unless pinned) as one synced secret; with
    /// --list, only list the vault's secret names to pick from.
    AddFromVault {
        #[command(flatten)]
        a: AgentDir,
        #[arg(long, short = 'n', required_unless_present = "list")]
        name: Option<String>,
        /// As for create.
        #[arg(long = "secret", value_name = "KEY=SECRET")]
        secrets: Vec<String>,
        #[command(flatten)]
        delivery: Delivery,
        /// List the vault's secret names (names only) and exit.
        #[arg(long)]
        list: bool,
    },
    /// Every synced secret at this edge: references, status, the endpoints that use it.
    List {
        #[command(flatten)]
        a: AgentDir,
    },
    Show {
        #[command(flatten)]
        a: AgentDir,
        #[arg(long, short = 'n')]
        name: String,
    },
    /// Remove a synced secret at the edge (never in the vault). Refused while an endpoint uses
    /// it, unless --force (audited; those endpoints go into an error state).
    Delete {
        #[command(flatten)]
        a: AgentDir,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Re-read every referenced vault secret now.
    Sync {
        #[command(flatten)]
        a: AgentDir,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EndpointKind {
    Asset,
    Dataflow,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthMethod {
    Anonymous,
    UsernamePassword,
    Certificate,
    SecretRef,
}

#[derive(Subcommand)]
pub enum EndpointCommand {
    /// Create or replace an endpoint whose authentication names synced secrets
    /// (`<synced-secret>/<key>`).
    Create {
        #[command(flatten)]
        a: AgentDir,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, value_enum)]
        kind: EndpointKind,
        #[arg(long)]
        address: String,
        #[arg(long, value_enum, default_value_t = AuthMethod::Anonymous)]
        auth: AuthMethod,
        #[arg(long)]
        username_secret: Option<String>,
        #[arg(long)]
        password_secret: Option<String>,
        #[arg(long)]
        certificate_secret: Option<String>,
        #[arg(long)]
        key_secret: Option<String>,
        /// Dataflow endpoints: a synced secret holding `username` and `password`.
        #[arg(long)]
        secret_ref: Option<String>,
    },
    List {
        #[command(flatten)]
        a: AgentDir,
    },
    Show {
        #[command(flatten)]
        a: AgentDir,
        #[arg(long, short = 'n')]
        name: String,
    },
    Delete {
        #[command(flatten)]
        a: AgentDir,
        #[arg(long, short = 'n')]
        name: String,
    },
}

/// The running agent's local API.
struct AgentApi {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl AgentApi {
    fn open(a: &AgentDir) -> anyhow::Result<AgentApi> {
        let info: Value = serde_json::from_slice(
            &std::fs::read(a.agent_dir.join(strongbox_agent::local_api::AGENT_FILE)).with_context(
                || {
                    format!(
                        "reading {}: is `strongbox agent run --data-dir {}` running?",
                        a.agent_dir
                            .join(strongbox_agent::local_api::AGENT_FILE)
                            .display(),
                        a.agent_dir.display()
                    )
                },
            )?,
        )?;
        let token =
            std::fs::read_to_string(a.agent_dir.join(strongbox_agent::local_api::TOKEN_FILE))
                .with_context(|| {
                    format!("reading the agent API token in {}", a.agent_dir.display())
                })?;
        Ok(AgentApi {
            url: info["url"].as_str().unwrap_or_default().to_string(),
            token: token.trim().to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            strongbox_client::Error::Transport(format!(
                "the agent at {} did not answer: {e}",
                self.url
            ))
        })?;
        let status = resp.status().as_u16();
        let body: Option<Value> = resp.json().await.ok();
        if (200..300).contains(&status) {
            return Ok(body.unwrap_or(Value::Null));
        }
        Err(strongbox_client::http_error(status, body.as_ref()).into())
    }
}

fn pairs(list: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| usage(format!("{p:?} is not KEY=SECRET")))
        })
        .collect()
}

fn reference(key: &str, secret: &str) -> Value {
    // NAME/VERSION pins a version; a full id is passed as it is (the agent checks its vault).
    match secret.split_once('/') {
        Some((name, version)) if !secret.contains("://") => {
            json!({"key": key, "secret": name, "version": version})
        }
        _ => json!({"key": key, "secret": secret}),
    }
}

fn body(name: &str, refs: &[(String, String)], d: &Delivery) -> anyhow::Result<Value> {
    let target = match (&d.target_dir, &d.kube_namespace) {
        (_, Some(ns)) => json!({"kind": "kubernetes", "namespace": ns}),
        (Some(d), None) => {
            let d = std::path::absolute(d)?;
            json!({"kind": "files", "dir": d})
        }
        (None, None) => json!({"kind": "files"}),
    };
    Ok(json!({
        "name": name,
        "type": strongbox_agent::targets::SecretType::from(d.secret_type).as_str(),
        "references": refs.iter().map(|(k, v)| reference(k, v)).collect::<Vec<_>>(),
        "target": target,
        "onSourceDeleted": if d.keep_last_known { "keepLastKnown" } else { "remove" },
    }))
}

/// Waits (with a spinner on a terminal) until the synced secret is Synced; fails on Error.
async fn wait_synced(api: &AgentApi, name: &str, secs: u64) -> anyhow::Result<Value> {
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b.set_message(format!("syncing {name} to the edge"));
        b
    } else {
        ProgressBar::hidden()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let v = api
            .call(
                reqwest::Method::GET,
                &format!("/api/synced-secrets/{name}"),
                None,
            )
            .await?;
        match v["status"]["state"].as_str() {
            Some("Synced") => {
                bar.finish_and_clear();
                return Ok(v);
            }
            Some("Error") => {
                bar.finish_and_clear();
                return Err(crate::exit::refused(
                    422,
                    "SyncFailed",
                    format!(
                        "{name} was saved at the edge but does not sync: {}",
                        s(&v, "/status/reason")
                    ),
                ));
            }
            _ if tokio::time::Instant::now() >= deadline => {
                bar.finish_and_clear();
                return Err(crate::exit::refused(
                    504,
                    "SyncPending",
                    format!(
                        "{name} was saved at the edge but is not synced after {secs} s (status {}: {}); see `strongbox synced-secret show`",
                        s(&v, "/status/state"),
                        s(&v, "/status/reason")
                    ),
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn synced_cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("Status", &|v| s(v, "/status/state")),
        col("References", &|v| {
            v["references"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| format!("{}={}", s(r, "/key"), s(r, "/secret")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        }),
        col("Endpoints", &|v| {
            v["endpoints"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        }),
        col("Target", &|v| s(v, "/status/target")),
        col("Reason", &|v| s(v, "/status/reason")),
    ]
}

fn endpoint_cols() -> Vec<Col<'static>> {
    vec![
        col("Name", &|v| s(v, "/name")),
        col("Kind", &|v| s(v, "/kind")),
        col("Address", &|v| s(v, "/address")),
        col("Auth", &|v| s(v, "/authentication/method")),
        col("Status", &|v| s(v, "/status/state")),
        col("Reason", &|v| s(v, "/status/reason")),
    ]
}

/// `GET /api/{collection}` as a table (or JSON).
async fn list(g: &Global, a: &AgentDir, collection: &str, cols: &[Col<'_>]) -> anyhow::Result<()> {
    let v = AgentApi::open(a)?
        .call(reqwest::Method::GET, &format!("/api/{collection}"), None)
        .await?;
    let items = v["value"].as_array().cloned().unwrap_or_default();
    output::items(g.output, cols, &items);
    Ok(())
}

async fn show(g: &Global, a: &AgentDir, path: &str, cols: &[Col<'_>]) -> anyhow::Result<()> {
    let v = AgentApi::open(a)?
        .call(reqwest::Method::GET, &format!("/api/{path}"), None)
        .await?;
    output::one(g.output, cols, &v);
    Ok(())
}

async fn put_synced(api: &AgentApi, name: &str, body: Value, wait: u64) -> anyhow::Result<Value> {
    let v = api
        .call(
            reqwest::Method::PUT,
            &format!("/api/synced-secrets/{name}"),
            Some(body),
        )
        .await?;
    if wait == 0 {
        return Ok(v);
    }
    wait_synced(api, name, wait).await
}

pub async fn synced(g: &Global, command: SyncedSecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SyncedSecretCommand::Create {
            a,
            name,
            secrets: given,
            delivery,
            values_file,
            overwrite,
        } => {
            let api = AgentApi::open(&a)?;
            let refs = pairs(&given)?;
            let raw = match &values_file {
                Some(p) if p.as_os_str() != "-" => {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
                }
                _ => {
                    let mut b = Vec::new();
                    std::io::stdin().read_to_end(&mut b)?;
                    b
                }
            };
            let values: serde_json::Map<String, Value> = serde_json::from_slice(&raw)
                .map_err(|_| usage("the values must be a JSON object {\"KEY\": \"value\", …} (the value text is not shown)"))?;
            for (k, _) in &refs {
                if !values.get(k).is_some_and(Value::is_string) {
                    return Err(usage(format!(
                        "the values have no string for the key {k:?}"
                    )));
                }
            }
            if let Some(extra) = values.keys().find(|k| !refs.iter().any(|(r, _)| r == *k)) {
                return Err(usage(format!(
                    "the values name the key {extra:?}, which no --secret maps"
                )));
            }
            // The values too must make a valid Secret of the type (size, JSON, non-empty key):
            // checked before anything is written to the vault.
            strongbox_agent::targets::SecretType::from(delivery.secret_type)
                .check_values(refs.iter().map(|(k, _)| {
                    (
                        k.as_str(),
                        values[k].as_str().unwrap_or_default().as_bytes(),
                    )
                }))
                .map_err(|m| {
                    crate::exit::refused(400, "InvalidValue", format!("{m}; nothing was written"))
                })?;
            let body = body(&name, &refs, &delivery)?;
            // Validate at the edge first, so a bad name or key writes nothing to the vault.
            api.call(
                reqwest::Method::PUT,
                &format!("/api/synced-secrets/{name}?validateOnly=true"),
                Some(body.clone()),
            )
            .await?;
            let info = api.call(reqwest::Method::GET, "/api/info", None).await?;
            let vault = s(&info, "/vaultUri");
            let client = context::client(g)?;
            for (k, secret) in &refs {
                if secret.contains("://") || secret.contains('/') {
                    return Err(usage(format!(
                        "create writes new values: give a plain secret name for {k}, not a version or id"
                    )));
                }
                // A typo must not put a new version on someone's existing secret.
                let absent = matches!(
                    client.send(&secrets::get(&vault, secret, None)).await,
                    Err(strongbox_client::Error::Http { status: 404, .. })
                );
                if !absent && !overwrite {
                    return Err(crate::exit::refused(
                        409,
                        "SecretAlreadyExists",
                        format!(
                            "the vault already has a secret {secret} (or it is soft-deleted, or you may not read it): use add-from-vault to sync it, or --overwrite to write a new version; nothing was written"
                        ),
                    ));
                }
            }
            for (k, secret) in &refs {
                let value = values[k].as_str().unwrap_or_default();
                client
                    .json(&secrets::set(&vault, secret, value, &Default::default()))
                    .await?;
            }
            let v = put_synced(&api, &name, body, delivery.wait).await?;
            output::one(g.output, &synced_cols(), &v);
        }
        SyncedSecretCommand::AddFromVault {
            a,
            name,
            secrets: given,
            delivery,
            list: only_list,
        } => {
            let api = AgentApi::open(&a)?;
            let info = api.call(reqwest::Method::GET, "/api/info", None).await?;
            let vault = s(&info, "/vaultUri");
            if only_list {
                let client = context::client(g)?;
                let items = client.list_all(&secrets::list(&vault), None).await?;
                let names: Vec<Value> = items
                    .iter()
                    .map(|i| {
                        let sec: secrets::Secret = serde_json::from_value(i.clone()).unwrap_or_default();
                        json!({"name": sec.name(), "enabled": sec.attributes.enabled, "contentType": sec.content_type})
                    })
                    .collect();
                output::items(
                    g.output,
                    &[
                        col("Name", &|v| s(v, "/name")),
                        col("ContentType", &|v| s(v, "/contentType")),
                    ],
                    &names,
                );
                return Ok(ExitCode::SUCCESS);
            }
            let name = name.unwrap_or_default();
            if given.is_empty() {
                return Err(usage(
                    "name at least one --secret KEY=SECRET (see --list for the vault's names)",
                ));
            }
            let refs = pairs(&given)?;
            let body = body(&name, &refs, &delivery)?;
            let v = put_synced(&api, &name, body, delivery.wait).await?;
            output::one(g.output, &synced_cols(), &v);
        }
        SyncedSecretCommand::List { a } => list(g, &a, "synced-secrets", &synced_cols()).await?,
        SyncedSecretCommand::Show { a, name } => {
            show(g, &a, &format!("synced-secrets/{name}"), &synced_cols()).await?
        }
        SyncedSecretCommand::Delete { a, name, force } => {
            let api = AgentApi::open(&a)?;
            let v = api
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/synced-secrets/{name}?force={force}"),
                    None,
                )
                .await?;
            eprintln!(
                "deleted the synced secret {name} at the edge (the vault's secrets are untouched)"
            );
            // Someone else's object holding the target's name was left alone: done, with a word.
            if let Some(w) = v["warning"].as_str() {
                eprintln!("warning: {w}");
            }
        }
        SyncedSecretCommand::Sync { a } => {
            let api = AgentApi::open(&a)?;
            api.call(reqwest::Method::POST, "/api/sync", None).await?;
            eprintln!("the agent is re-reading every referenced secret");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn endpoint(g: &Global, command: EndpointCommand) -> anyhow::Result<ExitCode> {
    match command {
        EndpointCommand::Create {
            a,
            name,
            kind,
            address,
            auth,
            username_secret,
            password_secret,
            certificate_secret,
            key_secret,
            secret_ref,
        } => {
            let need = |v: Option<String>, flag: &str| {
                v.ok_or_else(|| usage(format!("--auth {auth:?} needs {flag}")))
            };
            let authentication = match auth {
                AuthMethod::Anonymous => json!({"method": "Anonymous"}),
                AuthMethod::UsernamePassword => json!({"method": "UsernamePassword",
                    "usernameSecretName": need(username_secret, "--username-secret")?,
                    "passwordSecretName": need(password_secret, "--password-secret")?}),
                AuthMethod::Certificate => {
                    let mut v = json!({"method": "Certificate",
                        "certificateSecretName": need(certificate_secret, "--certificate-secret")?});
                    if let Some(k) = key_secret {
                        v["keySecretName"] = json!(k);
                    }
                    v
                }
                AuthMethod::SecretRef => json!({"method": "SecretRef",
                    "secretRef": need(secret_ref, "--secret-ref")?}),
            };
            let api = AgentApi::open(&a)?;
            let v = api
                .call(
                    reqwest::Method::PUT,
                    &format!("/api/endpoints/{name}"),
                    Some(json!({"name": name, "kind": match kind { EndpointKind::Asset => "asset", EndpointKind::Dataflow => "dataflow" },
                        "address": address, "authentication": authentication})),
                )
                .await?;
            output::one(g.output, &endpoint_cols(), &v);
        }
        EndpointCommand::List { a } => list(g, &a, "endpoints", &endpoint_cols()).await?,
        EndpointCommand::Show { a, name } => {
            show(g, &a, &format!("endpoints/{name}"), &endpoint_cols()).await?
        }
        EndpointCommand::Delete { a, name } => {
            let api = AgentApi::open(&a)?;
            api.call(
                reqwest::Method::DELETE,
                &format!("/api/endpoints/{name}"),
                None,
            )
            .await?;
            eprintln!("deleted the endpoint {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
