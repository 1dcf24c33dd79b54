//! `Microsoft.Insights/diagnosticSettings` on a vault (api-version 2021-05-01-preview, as
//! azure-mgmt-monitor 6.x sends it). The built-in store always keeps every record (it is the
//! source of truth and holds the hash chain); a setting adds a storage account that receives a
//! verifiable copy. The files carry the whole chain (Administrative records included), because
//! a chain with links left out could not be verified.
//!
//! Only storage-account destinations exist here: a workspace, event hub, service bus or partner
//! destination is refused, not silently ignored. A setting with no destination is allowed (the
//! store keeps the records anyway).

use super::common::*;
use super::storage::{account_id, parse_account_id};
use crate::AppState;
use crate::management::{ArmError, require};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use strongbox_store::StoreError;
use strongbox_store::insights::DiagnosticSettingRow;

/// Azure allows five diagnostic settings per resource.
const MAX_SETTINGS: usize = 5;
const API_VERSIONS: &[&str] = &[
    "2021-05-01-preview",
    "2017-05-01-preview",
    "2020-01-01-preview",
];

pub fn routes() -> Router<Arc<AppState>> {
    let mut r = Router::new();
    for rg in ["resourceGroups", "resourcegroups"] {
        let vault = format!(
            "/subscriptions/{{sub}}/{rg}/{{rg}}/providers/Microsoft.KeyVault/vaults/{{vault}}"
        );
        for ns in ["Microsoft.Insights", "microsoft.insights"] {
            r = r
                .route(
                    &format!("{vault}/providers/{ns}/diagnosticSettings/{{name}}"),
                    get(get_setting).put(put_setting).delete(delete_setting),
                )
                .route(
                    &format!("{vault}/providers/{ns}/diagnosticSettings"),
                    get(list_settings),
                );
        }
    }
    r
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionPolicy {
    enabled: bool,
    days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LogSettings {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    category_group: Option<String>,
    enabled: bool,
    #[serde(default)]
    retention_policy: Option<RetentionPolicy>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MetricSettings {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    time_grain: Option<String>,
    enabled: bool,
    #[serde(default)]
    retention_policy: Option<RetentionPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Properties {
    #[serde(default)]
    storage_account_id: Option<String>,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    event_hub_authorization_rule_id: Option<String>,
    #[serde(default)]
    event_hub_name: Option<String>,
    #[serde(default)]
    service_bus_rule_id: Option<String>,
    #[serde(default)]
    marketplace_partner_id: Option<String>,
    #[serde(default)]
    log_analytics_destination_type: Option<String>,
    #[serde(default)]
    logs: Vec<LogSettings>,
    #[serde(default)]
    metrics: Vec<MetricSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    properties: Properties,
    // Read-only in ARM; accepted and ignored if a client echoes them back.
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    r#type: Option<Value>,
}

const LOG_CATEGORIES: &[&str] = &["AuditEvent", "AzurePolicyEvaluationDetails"];
const LOG_GROUPS: &[&str] = &["audit", "allLogs"];

/// The canonical spelling of a known name, matched ignoring case.
fn known(list: &[&'static str], s: &str) -> Option<&'static str> {
    list.iter().copied().find(|k| k.eq_ignore_ascii_case(s))
}

fn valid_setting_name(name: &str) -> bool {
    let len = name.chars().count();
    (1..=260).contains(&len)
        && !name.ends_with([' ', '.'])
        && !name
            .chars()
            .any(|c| c.is_control() || "<>*%&:\\?/#+|\"".contains(c))
}

fn setting_id(vault_resource_id: &str, name: &str) -> String {
    format!("{vault_resource_id}/providers/microsoft.insights/diagnosticSettings/{name}")
}

fn view(vault_resource_id: &str, s: &DiagnosticSettingRow) -> Value {
    let properties: Value = serde_json::from_str(&s.properties_json).unwrap_or_else(|_| json!({}));
    json!({
        "id": setting_id(vault_resource_id, &s.name),
        "name": s.name,
        "type": "Microsoft.Insights/diagnosticSettings",
        "properties": properties,
    })
}

/// Checks a setting and returns (storage account name, AuditEvent enabled, properties to keep).
async fn validate(
    app: &AppState,
    caller: &strongbox_domain::Caller,
    p: Properties,
) -> Result<(Option<String>, bool, Value), ArmError> {
    let unsupported = [
        ("workspaceId", &p.workspace_id),
        (
            "eventHubAuthorizationRuleId",
            &p.event_hub_authorization_rule_id,
        ),
        ("eventHubName", &p.event_hub_name),
        ("serviceBusRuleId", &p.service_bus_rule_id),
        ("marketplacePartnerId", &p.marketplace_partner_id),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, v)| v.is_some()) {
        return Err(ArmError::bad_request(format!(
            "properties.{field}: only storage account destinations are supported."
        )));
    }
    let mut logs = Vec::new();
    let mut audit_enabled = false;
    for (i, l) in p.logs.into_iter().enumerate() {
        let mut l = l;
        match (&l.category, &l.category_group) {
            (Some(c), None) => {
                let c = known(LOG_CATEGORIES, c).ok_or_else(|| {
                    ArmError::bad_request(format!(
                        "properties.logs[{i}].category must be one of {}.",
                        LOG_CATEGORIES.join(", ")
                    ))
                })?;
                audit_enabled |= l.enabled && c == "AuditEvent";
                l.category = Some(c.into());
            }
            (None, Some(g)) => {
                let g = known(LOG_GROUPS, g).ok_or_else(|| {
                    ArmError::bad_request(format!(
                        "properties.logs[{i}].categoryGroup must be one of {}.",
                        LOG_GROUPS.join(", ")
                    ))
                })?;
                audit_enabled |= l.enabled;
                l.category_group = Some(g.into());
            }
            _ => {
                return Err(ArmError::bad_request(format!(
                    "properties.logs[{i}] must name either a category or a categoryGroup."
                )));
            }
        }
        if l.retention_policy.as_ref().is_some_and(|r| r.days > 365) {
            return Err(ArmError::bad_request(
                "retentionPolicy.days must be at most 365.",
            ));
        }
        logs.push(l);
    }
    let mut metrics = Vec::new();
    for (i, m) in p.metrics.into_iter().enumerate() {
        if !m
            .category
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("AllMetrics"))
        {
            return Err(ArmError::bad_request(format!(
                "properties.metrics[{i}].category must be AllMetrics."
            )));
        }
        metrics.push(MetricSettings {
            category: Some("AllMetrics".into()),
            ..m
        });
    }
    if logs.len() > 16 || metrics.len() > 16 {
        return Err(ArmError::bad_request("Too many log or metric entries."));
    }
    let mut account = None;
    let mut account_ref = Value::Null;
    if let Some(id) = &p.storage_account_id {
        let (sub, rg, name) = parse_account_id(id).ok_or_else(|| {
            ArmError::bad_request(
                "properties.storageAccountId must be /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}.",
            )
        })?;
        let full = account_id(&sub, &rg, &name);
        // Routing records to an account requires being allowed to see it.
        require(app, caller, &full, "Microsoft.Storage/storageAccounts/read").await?;
        let found = app
            .store
            .get_storage_account(&name)
            .await?
            .filter(|a| a.subscription_id.eq_ignore_ascii_case(&sub) && a.resource_group == rg);
        if found.is_none() {
            return Err(ArmError::bad_request(format!(
                "The storage account '{}' does not exist.",
                clip(&name)
            )));
        }
        account = Some(name);
        account_ref = Value::String(full);
    }
    let properties = json!({
        "storageAccountId": account_ref,
        "workspaceId": null,
        "eventHubAuthorizationRuleId": null,
        "eventHubName": null,
        "serviceBusRuleId": null,
        "marketplacePartnerId": null,
        "logAnalyticsDestinationType": p.log_analytics_destination_type,
        "logs": logs,
        "metrics": metrics,
    });
    Ok((account, audit_enabled, properties))
}

async fn put_setting(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, vault, name)): Path<(String, String, String, String)>,
    ctx: ArmCtx,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let (v, chain, rid) = vault_target(&app, &sub, &rg, &vault).await;
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain,
        resource_id: setting_id(&rid, &clip(&name)),
        operation: "Microsoft.Insights/diagnosticSettings/write",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
        require(&app, caller, &rid, a.operation).await?;
        let vault = v?;
        if !valid_setting_name(&name) {
            return Err(ArmError::bad_request(
                "The diagnostic setting name must have 1-260 characters and none of <>*%&:\\?/#+|\".",
            ));
        }
        let b: PutBody = json_body(&raw, crate::MAX_BODY_BYTES)?;
        let (account, audit_enabled, properties) = validate(&app, caller, b.properties).await?;
        let existing = app.store.get_diagnostic_setting(&vault.id, &name).await?;
        if existing.is_none()
            && app.store.list_diagnostic_settings(&vault.id).await?.len() >= MAX_SETTINGS
        {
            return Err(ArmError::bad_request(format!(
                "A resource can have at most {MAX_SETTINGS} diagnostic settings."
            )));
        }
        let row = DiagnosticSettingRow {
            vault_id: vault.id.clone(),
            // A replaced setting keeps the name it was created with.
            name: existing.as_ref().map_or_else(|| name.clone(), |e| e.name.clone()),
            storage_account: account,
            audit_enabled,
            properties_json: properties.to_string(),
            created: existing.as_ref().map_or_else(|| app.clock.now(), |e| e.created),
        };
        app.store
            .put_diagnostic_setting(row.clone(), a.entry(200))
            .await?;
        Ok((StatusCode::OK, Json(view(&vault.resource_id, &row))).into_response())
    }
    .await;
    a.finish(outcome.map(Done::committed)).await
}

async fn get_setting(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, vault, name)): Path<(String, String, String, String)>,
    ctx: ArmCtx,
) -> Response {
    let (v, chain, rid) = vault_target(&app, &sub, &rg, &vault).await;
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain,
        resource_id: setting_id(&rid, &clip(&name)),
        operation: "Microsoft.Insights/diagnosticSettings/read",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
        require(&app, caller, &rid, a.operation).await?;
        let vault = v?;
        let s = app
            .store
            .get_diagnostic_setting(&vault.id, &name)
            .await?
            .ok_or_else(|| {
                ArmError::not_found(
                    "ResourceNotFound",
                    format!("The diagnostic setting '{}' does not exist.", clip(&name)),
                )
            })?;
        Ok((
            StatusCode::OK,
            Json(view(&vault.resource_id, &s)).into_response(),
        ))
    }
    .await;
    a.finish(outcome.map(|(_, r)| Done::response(r))).await
}

async fn delete_setting(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, vault, name)): Path<(String, String, String, String)>,
    ctx: ArmCtx,
) -> Response {
    let (v, chain, rid) = vault_target(&app, &sub, &rg, &vault).await;
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain,
        resource_id: setting_id(&rid, &clip(&name)),
        operation: "Microsoft.Insights/diagnosticSettings/delete",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
        require(&app, caller, &rid, a.operation).await?;
        let vault = v?;
        match app
            .store
            .delete_diagnostic_setting(&vault.id, &name, a.entry(200))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound) => Ok(false),
            Err(e) => Err(ArmError::from(e)),
        }
    }
    .await;
    match outcome {
        Ok(true) => StatusCode::OK.into_response(),
        // Nothing to delete: 204, as ARM answers.
        Ok(false) => {
            a.finish(Ok(Done::empty(StatusCode::NO_CONTENT, false)))
                .await
        }
        Err(e) => a.finish(Err(e)).await,
    }
}

async fn list_settings(
    State(app): State<Arc<AppState>>,
    Path((sub, rg, vault)): Path<(String, String, String)>,
    ctx: ArmCtx,
) -> Response {
    let (v, chain, rid) = vault_target(&app, &sub, &rg, &vault).await;
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain,
        resource_id: format!("{rid}/providers/microsoft.insights/diagnosticSettings"),
        operation: "Microsoft.Insights/diagnosticSettings/read",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Only(API_VERSIONS))?;
        require(&app, caller, &rid, a.operation).await?;
        let vault = v?;
        let value: Vec<Value> = app
            .store
            .list_diagnostic_settings(&vault.id)
            .await?
            .iter()
            .map(|s| view(&vault.resource_id, s))
            .collect();
        Ok((
            StatusCode::OK,
            Json(json!({"value": value})).into_response(),
        ))
    }
    .await;
    a.finish(outcome.map(|(_, r)| Done::response(r))).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn setting_names() {
        use super::valid_setting_name as ok;
        assert!(ok("to-files") && ok("Audit logs 1") && ok("a.b_c"));
        assert!(!ok("") && !ok("a/b") && !ok("a?") && !ok("end.") && !ok(&"x".repeat(261)));
    }
}
