//! `strongbox audit …`: query and insights through the management API (RBAC:
//! `Microsoft.Insights/logs/read` on the vault), and `verify`, which checks hash chains offline:
//! in the store (every vault, or one) or in the files a diagnostic setting wrote (`--dir`).

use crate::admin_cmd::StoreArgs;
use crate::context::{self, Global};
use crate::output::{self, Col, Format, col, s};
use clap::Subcommand;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use strongbox_client::arm::{self, AuditQuery, Group};
use strongbox_server::audit_files;
use strongbox_store::chain::Verifier;

#[derive(clap::Args, Debug)]
pub struct Filters {
    /// The vault.
    #[arg(long)]
    vault: String,
    /// The vault's resource group (default: the one the credentials name).
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    /// From (inclusive): RFC 3339, Unix seconds, or an age such as 15m, 2h, 7d.
    #[arg(long)]
    from: Option<String>,
    /// To (exclusive), in the same forms.
    #[arg(long)]
    to: Option<String>,
    /// Operation name, e.g. SecretGet.
    #[arg(long)]
    operation: Option<String>,
    /// Caller object id.
    #[arg(long)]
    caller: Option<String>,
    /// Success or Failure.
    #[arg(long, value_parser = ["Success", "Failure", "success", "failure"])]
    result: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Records of a vault, oldest first, filtered.
    Query {
        #[command(flatten)]
        f: Filters,
        /// Most records to show.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Records per request.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: u32,
    },
    /// Counts by operation, result and caller, latency percentiles and a timeline.
    Insights {
        #[command(flatten)]
        f: Filters,
        /// Bucket width of the timeline (ISO 8601: PT5M, PT1H, P1D).
        #[arg(long)]
        interval: Option<String>,
    },
    /// The sign-in log: every interactive sign-in and refused token request of people, with
    /// result, reason, address and user agent (never a password or a code). Offline, on the store.
    Signins {
        #[command(flatten)]
        store: StoreArgs,
        /// From (inclusive): RFC 3339, Unix seconds, or an age such as 15m, 2h, 7d (default 24h).
        #[arg(long, default_value = "24h")]
        from: String,
        /// Only this user (principal name).
        #[arg(long)]
        user: Option<String>,
        /// Success or Failure.
        #[arg(long, value_parser = ["Success", "Failure"])]
        result: Option<String>,
        #[arg(long, default_value_t = 1000)]
        max: i64,
    },
    /// Check audit hash chains and report the first break (exit 1 if any chain is broken).
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this vault (store check).
        #[arg(long)]
        vault: Option<String>,
        /// Check the audit files under this directory instead (a storage account's directory,
        /// or one chain's), from the files alone.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn query_of(f: &Filters) -> anyhow::Result<AuditQuery> {
    let now = context::now_ms();
    Ok(AuditQuery {
        from: f
            .from
            .as_deref()
            .map(|t| context::parse_query_time(t, now))
            .transpose()?,
        to: f
            .to
            .as_deref()
            .map(|t| context::parse_query_time(t, now))
            .transpose()?,
        operation: f.operation.clone(),
        caller: f.caller.clone(),
        result: f.result.clone(),
    })
}

fn record_cols() -> Vec<Col<'static>> {
    vec![
        col("Seq", &|v| s(v, "/seq")),
        col("Time", &|v| s(v, "/time")),
        col("Operation", &|v| s(v, "/operationName")),
        col("Result", &|v| s(v, "/resultType")),
        col("Status", &|v| s(v, "/properties/httpStatusCode")),
        col("Caller", &|v| s(v, "/identity/claim/oid")),
        col("DurationMs", &|v| s(v, "/durationMs")),
    ]
}

fn signin_cols() -> Vec<Col<'static>> {
    vec![
        col("Time", &|v| s(v, "/time")),
        col("User", &|v| s(v, "/userPrincipalName")),
        col("Flow", &|v| s(v, "/flow")),
        col("Result", &|v| s(v, "/result")),
        col("Reason", &|v| s(v, "/reason")),
        col("Address", &|v| s(v, "/ipAddress")),
        col("Client", &|v| s(v, "/clientId")),
    ]
}

async fn signins(
    g: &Global,
    store: StoreArgs,
    from: &str,
    user: Option<String>,
    result: Option<String>,
    max: i64,
) -> anyhow::Result<ExitCode> {
    let (s, _) = strongbox_server::open_context(&store.config()?).await?;
    let since = time::OffsetDateTime::parse(
        &context::parse_query_time(from, context::now_ms())?,
        &time::format_description::well_known::Rfc3339,
    )?
    .unix_timestamp_nanos()
        / 1_000_000;
    let since = i64::try_from(since)?;
    let user = user.map(|u| u.to_lowercase());
    let items: Vec<Value> = s
        .list_signins(since, max)
        .await?
        .into_iter()
        .filter(|r| user.is_none() || r.upn == user)
        .filter(|r| result.as_ref().is_none_or(|x| *x == r.result))
        .map(|r| {
            serde_json::json!({
                "time": output::rfc3339(r.time_ms.div_euclid(1000)), "timeMs": r.time_ms,
                "tenantId": r.tenant_id, "userId": r.user_id, "userPrincipalName": r.upn,
                "clientId": r.client_id, "flow": r.flow, "result": r.result, "reason": r.reason,
                "ipAddress": r.ip, "userAgent": r.user_agent,
            })
        })
        .collect();
    output::items(g.output, &signin_cols(), &items);
    Ok(ExitCode::SUCCESS)
}

pub async fn run(g: &Global, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Signins {
            store,
            from,
            user,
            result,
            max,
        } => signins(g, store, &from, user, result, max).await,
        AuditCommand::Verify { store, vault, dir } => match dir {
            Some(d) => verify_dir(g, &d),
            None => verify_store(store, vault).await,
        },
        AuditCommand::Query { f, max, page_size } => {
            let c = context::client(g)?;
            let sub = context::subscription(g, &c)?;
            let rg = context::resource_group(&f.resource_group, &c)?;
            let vault_id = Group {
                subscription: &sub,
                resource_group: &rg,
            }
            .vault_id(&f.vault);
            let call = arm::audit_query(
                c.management_base(),
                &vault_id,
                &query_of(&f)?,
                Some(page_size),
            );
            let items = c.list_all(&call, Some(max)).await?;
            output::items(g.output, &record_cols(), &items);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Insights { f, interval } => {
            let c = context::client(g)?;
            let sub = context::subscription(g, &c)?;
            let rg = context::resource_group(&f.resource_group, &c)?;
            let vault_id = Group {
                subscription: &sub,
                resource_group: &rg,
            }
            .vault_id(&f.vault);
            let call = arm::audit_insights(
                c.management_base(),
                &vault_id,
                &query_of(&f)?,
                interval.as_deref(),
            );
            let r = c.json(&call).await?;
            match g.output {
                Format::Json => output::json(&r),
                Format::Table => insights_tables(&r),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

fn insights_tables(r: &Value) {
    println!(
        "{} records, {} failures, {} to {}\n",
        s(r, "/total"),
        s(r, "/failures"),
        s(r, "/from"),
        s(r, "/to")
    );
    output::table(
        &[
            col("Operation", &|v| s(v, "/operationName")),
            col("Count", &|v| s(v, "/count")),
            col("Failures", &|v| s(v, "/failures")),
        ],
        &list(r, "byOperation"),
    );
    println!();
    output::table(
        &[
            col("Result", &|v| s(v, "/resultType")),
            col("Count", &|v| s(v, "/count")),
        ],
        &list(r, "byResult"),
    );
    println!();
    output::table(
        &[
            col("Caller", &|v| s(v, "/callerObjectId")),
            col("Count", &|v| s(v, "/count")),
            col("Failures", &|v| s(v, "/failures")),
        ],
        &list(r, "byCaller"),
    );
    println!();
    output::table(
        &[
            col("LatencyMs", &|_| "".into()),
            col("Count", &|v| s(v, "/latencyMs/count")),
            col("P50", &|v| s(v, "/latencyMs/p50")),
            col("P90", &|v| s(v, "/latencyMs/p90")),
            col("P99", &|v| s(v, "/latencyMs/p99")),
            col("Max", &|v| s(v, "/latencyMs/max")),
        ],
        std::slice::from_ref(r),
    );
    println!();
    let busy: Vec<Value> = list(r, "timeline")
        .into_iter()
        .filter(|b| b["count"].as_i64().unwrap_or(0) > 0)
        .collect();
    output::table(
        &[
            col("Start", &|v| s(v, "/start")),
            col("Count", &|v| s(v, "/count")),
            col("Failures", &|v| s(v, "/failures")),
        ],
        &busy,
    );
}

/// Verifies every chain directory under `dir` from the files alone.
fn verify_dir(g: &Global, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let dirs = audit_files::find_chain_dirs(dir).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !dirs.is_empty(),
        "no audit files under {} (no {} found)",
        dir.display(),
        audit_files::MANIFEST
    );
    let mut broken = false;
    let mut reports = Vec::new();
    for d in dirs {
        let r = audit_files::verify_dir(&d);
        broken |= r.broken.is_some();
        reports.push(r);
    }
    match g.output {
        Format::Json => output::json(&Value::Array(
            reports
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "dir": r.dir.display().to_string(), "chain": r.chain,
                        "resourceId": r.resource_id, "files": r.files, "records": r.records,
                        "intact": r.broken.is_none(),
                        "break": r.broken.as_ref().map(|(f, line, reason)| serde_json::json!({
                            "file": f.display().to_string(), "line": line, "reason": reason})),
                    })
                })
                .collect(),
        )),
        Format::Table => {
            for r in &reports {
                match &r.broken {
                    None => println!(
                        "{} ({}): {} records in {} files, chain intact",
                        r.resource_id, r.chain, r.records, r.files
                    ),
                    Some((file, line, reason)) => println!(
                        "{} ({}): chain broken at {}:{line}: {reason}",
                        r.resource_id,
                        r.chain,
                        file.display()
                    ),
                }
            }
        }
    }
    Ok(if broken {
        ExitCode::from(crate::exit::CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Verifies the chain of each vault in the store. The chain needs no keys: only the store.
async fn verify_store(store: StoreArgs, only: Option<String>) -> anyhow::Result<ExitCode> {
    let config = store.config()?;
    let s = strongbox_server::open_store(&config.store_url()).await?;
    // Every chain: live and soft-deleted vaults by name, then chains without a vault row
    // (purged vaults, subscriptions, the keyring and backup records of system:keyring) by id.
    let vaults = s.list_vaults().await?;
    let mut chains: Vec<(String, String)> = vaults
        .iter()
        .map(|v| (v.id.clone(), v.name.clone()))
        .collect();
    if let Some(name) = &only {
        chains.retain(|(_, n)| n.eq_ignore_ascii_case(name));
        anyhow::ensure!(!chains.is_empty(), "no vault named {name}");
    } else {
        for id in s.list_audit_chains().await? {
            if !chains.iter().any(|(c, _)| *c == id) {
                let label = if id.starts_with("subscription:") || id.starts_with("system:") {
                    id.clone()
                } else {
                    format!("purged vault {id}")
                };
                chains.push((id, label));
            }
        }
    }
    let mut broken = false;
    for (chain, label) in chains {
        let mut verifier = Verifier::default();
        let mut after = 0;
        let result = 'chain: loop {
            let rows = s.read_audit(&chain, after, 1000).await?;
            if rows.is_empty() {
                break verifier.finish(s.audit_head(&chain).await?);
            }
            for row in &rows {
                if let Err(b) = verifier.push(row) {
                    break 'chain Err(b);
                }
                after = row.seq;
            }
        };
        match result {
            Ok(n) => println!("{label}: {n} records, chain intact"),
            Err(b) => {
                broken = true;
                println!("{label}: {b}");
            }
        }
    }
    Ok(if broken {
        ExitCode::from(crate::exit::CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
