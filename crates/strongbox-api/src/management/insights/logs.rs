//! Audit query and insights on a vault (Strongbox extensions in ARM's shape; RBAC action
//! `Microsoft.Insights/logs/read` at the vault's scope, which Owner, Contributor and Reader hold).
//!
//! `GET {vault}/providers/Microsoft.Insights/auditEvents?api-version=2024-01-01`
//!   `&from=&to=` (RFC 3339; from inclusive, to exclusive) `&operation=&caller=` (object id)
//!   `&result=Success|Failure&$top=` (1-1000, default 100) `&$skiptoken=`
//!   → `{"value":[{"seq":N, …the AuditEvent record…}], "nextLink": …}` in chain order.
//! `GET {vault}/providers/Microsoft.Insights/auditInsights?api-version=2024-01-01`
//!   `&from=&to=` (default: the last 24 hours) `&interval=PT1H` (ISO 8601; at most 1000
//!   buckets) and the same filters → counts by operation, result and caller, latency
//!   percentiles, and every bucket of the window (zeros included) for charts.

use super::common::*;
use crate::AppState;
use crate::management::{ArmError, require};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use strongbox_store::insights::{AuditFilter, Count};

const ACTION: &str = "Microsoft.Insights/logs/read";
const MAX_TOP: u32 = 1000;
const DEFAULT_TOP: u32 = 100;
const MAX_BUCKETS: i64 = 1000;
const DAY_MS: i64 = 86_400_000;

pub fn routes() -> Router<Arc<AppState>> {
    let mut r = Router::new();
    for rg in ["resourceGroups", "resourcegroups"] {
        let vault = format!(
            "/subscriptions/{{sub}}/{rg}/{{rg}}/providers/Microsoft.KeyVault/vaults/{{vault}}/providers/Microsoft.Insights"
        );
        r = r
            .route(&format!("{vault}/auditEvents"), get(query))
            .route(&format!("{vault}/auditInsights"), get(insights));
    }
    r
}

/// The filters both endpoints share (times are checked by the caller).
fn filter(ctx: &ArmCtx, chain: &str) -> Result<AuditFilter, ArmError> {
    let text = |k: &str| -> Result<Option<String>, ArmError> {
        match ctx.query(k) {
            None => Ok(None),
            Some(v) if v.is_empty() || v.len() > 128 => Err(ArmError::bad_request(format!(
                "The '{k}' parameter must have 1 to 128 characters."
            ))),
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let result_type = match ctx.query("result").map(|r| r.to_ascii_lowercase()) {
        None => None,
        Some(r) if r == "success" => Some("Success".to_string()),
        Some(r) if r == "failure" => Some("Failure".to_string()),
        Some(_) => {
            return Err(ArmError::bad_request(
                "The 'result' parameter must be Success or Failure.",
            ));
        }
    };
    let time = |k: &str| ctx.query(k).map(|v| parse_rfc3339(k, v)).transpose();
    let f = AuditFilter {
        chain: chain.to_string(),
        from_ms: time("from")?,
        to_ms: time("to")?,
        operation: text("operation")?,
        caller_oid: text("caller")?,
        result_type,
    };
    if let (Some(a), Some(b)) = (f.from_ms, f.to_ms)
        && a >= b
    {
        return Err(ArmError::bad_request("'from' must be before 'to'."));
    }
    Ok(f)
}

fn known_params(ctx: &ArmCtx, allowed: &[&str]) -> Result<(), ArmError> {
    match ctx
        .query_pairs()
        .map(|(k, _)| k)
        .find(|k| !allowed.iter().any(|a| a.eq_ignore_ascii_case(k)))
    {
        Some(k) => Err(ArmError::bad_request(format!(
            "Unknown query parameter '{}'.",
            clip(k)
        ))),
        None => Ok(()),
    }
}

async fn query(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, vault)): Path<(String, String, String)>,
    ctx: ArmCtx,
) -> Response {
    let (v, chain, rid) = vault_target(&app, &sub, &rg, &vault).await;
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain,
        resource_id: rid.clone(),
        operation: ACTION,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &rid, ACTION).await?;
        let vault = v?;
        known_params(
            &ctx,
            &[
                "api-version",
                "from",
                "to",
                "operation",
                "caller",
                "result",
                "$top",
                "$skiptoken",
            ],
        )?;
        let f = filter(&ctx, &vault.id)?;
        let top = match ctx.query("$top") {
            None => DEFAULT_TOP,
            Some(t) => t
                .parse::<u32>()
                .ok()
                .filter(|t| (1..=MAX_TOP).contains(t))
                .ok_or_else(|| ArmError::bad_request(format!("$top must be 1 to {MAX_TOP}.")))?,
        };
        let after = match ctx.query("$skiptoken") {
            None => 0,
            Some(t) => t
                .parse::<i64>()
                .ok()
                .filter(|t| *t >= 0)
                .ok_or_else(|| ArmError::bad_request("The $skiptoken is not valid."))?,
        };
        let rows = app.store.query_audit(&f, after, top).await?;
        let next = (rows.len() as u32 == top).then(|| {
            let last = rows.last().map_or(after, |r| r.seq);
            let mut pairs: Vec<(&str, &str)> = ctx
                .query_pairs()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
                .collect();
            pairs.sort();
            let last = last.to_string();
            pairs.push(("$skiptoken", &last));
            format!(
                "{}{}/providers/Microsoft.Insights/auditEvents?{}",
                ctx.base_url,
                vault.resource_id,
                serde_urlencoded::to_string(&pairs).unwrap_or_default()
            )
        });
        let value: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut m: Map<String, Value> = match serde_json::from_str(&r.entry.record_json) {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                m.insert("seq".into(), json!(r.seq));
                Value::Object(m)
            })
            .collect();
        Ok((
            StatusCode::OK,
            Json(json!({"value": value, "nextLink": next})).into_response(),
        ))
    }
    .await;
    a.finish(outcome.map(|(_, r)| Done::response(r))).await
}

fn counts(list: &[Count], key: &str, with_failures: bool) -> Vec<Value> {
    list.iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert(key.into(), json!(c.key));
            m.insert("count".into(), json!(c.total));
            if with_failures {
                m.insert("failures".into(), json!(c.failures));
            }
            Value::Object(m)
        })
        .collect()
}

async fn insights(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, vault)): Path<(String, String, String)>,
    ctx: ArmCtx,
) -> Response {
    let (v, chain, rid) = vault_target(&app, &sub, &rg, &vault).await;
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain,
        resource_id: rid.clone(),
        operation: ACTION,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &rid, ACTION).await?;
        let vault = v?;
        known_params(
            &ctx,
            &[
                "api-version",
                "from",
                "to",
                "operation",
                "caller",
                "result",
                "interval",
            ],
        )?;
        let mut f = filter(&ctx, &vault.id)?;
        let to = f.to_ms.unwrap_or_else(|| app.clock.now_ms() + 1);
        let from = f.from_ms.unwrap_or(to - DAY_MS);
        if from >= to {
            return Err(ArmError::bad_request("'from' must be before 'to'."));
        }
        (f.from_ms, f.to_ms) = (Some(from), Some(to));
        let interval = match ctx.query("interval") {
            None => 3_600_000,
            Some(i) => parse_duration(i).ok_or_else(|| {
                ArmError::bad_request(
                    "'interval' must be an ISO 8601 duration such as PT5M or PT1H.",
                )
            })?,
        };
        let buckets = (to - from + interval - 1) / interval;
        if buckets > MAX_BUCKETS {
            return Err(ArmError::bad_request(format!(
                "The window holds {buckets} intervals; at most {MAX_BUCKETS} are allowed."
            )));
        }
        let ins = app.store.audit_insights(&f, interval).await?;
        // Every bucket of the window, zeros included, so a chart needs no gap filling.
        let mut series = Vec::with_capacity(buckets as usize);
        let mut stored = ins.buckets.iter().peekable();
        for i in 0..buckets {
            let start = from + i * interval;
            let (total, failures) = match stored.peek() {
                Some(b) if b.start_ms == start => {
                    let b = stored.next().expect("peeked");
                    (b.total, b.failures)
                }
                _ => (0, 0),
            };
            series.push(json!({"start": rfc3339(start), "count": total, "failures": failures}));
        }
        let body = json!({
            "resourceId": vault.resource_id,
            "from": rfc3339(from),
            "to": rfc3339(to),
            "interval": ctx.query("interval").unwrap_or("PT1H"),
            "intervalMs": interval,
            "total": ins.total,
            "failures": ins.failures,
            "byOperation": counts(&ins.by_operation, "operationName", true),
            "byResult": counts(&ins.by_result, "resultType", false),
            "byCaller": counts(&ins.by_caller, "callerObjectId", true),
            "latencyMs": {
                "count": ins.latency.count,
                "p50": ins.latency.p50,
                "p90": ins.latency.p90,
                "p99": ins.latency.p99,
                "max": ins.latency.max,
            },
            "timeline": series,
        });
        Ok((StatusCode::OK, Json(body).into_response()))
    }
    .await;
    a.finish(outcome.map(|(_, r)| Done::response(r))).await
}
