//! Device alerts, Recover key vault / Recover access, and the device's own view of its vault.
//!
//! Alerts are computed on every read from what is there now (the vault row, its access
//! policies, the device secrets in it and the versions the device last reported, the device's
//! identity and credential, the audit target), so they cannot drift from the truth and clear by
//! themselves once the condition is gone. Only their history is stored: when each was first
//! seen, when its current episode began, how many episodes there were, when it cleared.
//!
//! `POST …/recoverKeyVault` is a long-running operation like `generateActivationKey`, built
//! from the same idempotent steps: a soft-deleted vault is recovered under its name; after a
//! purge a new vault (a name the caller gives) is created; then the lock, audit storage,
//! diagnostic setting and the identity's Get+Set are put back where missing. The server never
//! holds the device secrets: the device pushes them (`strongbox agent sync-secrets`), after
//! asking `GET /devices/{id}/keyVault` (as itself) which vault is now its own.

use super::provision::{Run, check_vault_name, claim, op_body, owned_by, release};
use super::*;
use axum::http::{HeaderMap, HeaderValue, header};
use strongbox_domain::devices::{bmc_password_name, disk_recovery_key_name};
use strongbox_store::{DeviceAlertRow, DeviceOperationRow, VaultRow};

pub const ALERTS_READ: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/alerts/read";
pub const RECOVER: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/recoverKeyVault/action";
const SELF_READ: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/keyVault/device/read";

/// The device's vault as it is now.
pub(super) enum VaultNow {
    /// No vault was ever provisioned.
    NotConfigured,
    Live(VaultRow),
    SoftDeleted(VaultRow),
    /// Purged (or taken over by a vault that is not the device's).
    Gone(String),
}

/// The device's system-assigned identity as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdentityNow {
    Enabled,
    /// Switched off (`identity.type: None` on the device): it gets no tokens.
    Disabled,
    /// Its principal no longer exists.
    Deleted,
}

pub(super) struct Health {
    pub vault: VaultNow,
    pub identity: IdentityNow,
    /// The identity holds at least secrets Get and Set on the live vault.
    pub access: bool,
    /// The identity holds a device credential (the key the agent registered at activation).
    pub credential: bool,
    /// Device secrets absent (or soft-deleted) from the live vault.
    pub missing: Vec<String>,
    /// Device secrets whose current vault version is not the one the device last reported:
    /// (name, vault version, reported version). Someone wrote another value, or put an old
    /// one back.
    pub changed: Vec<(String, String, String)>,
    /// When the device last reported its secret versions (before its first report: when it
    /// was activated).
    pub last_report: Option<i64>,
    /// The audit storage account and the diagnostic setting sending AuditEvents there exist.
    pub audit_logging: bool,
}

/// A device that has not reported its secrets for this long is flagged. The agent reports
/// after every sync (every 5 minutes by default); a day is 288 missed checks at that pace and
/// 24 at the hourly poll of Azure's Secret Store extension, so a flag is no network blip.
pub const REPORT_OVERDUE_SECS: i64 = 24 * 3600;

/// The device's three secrets in its vault.
fn device_secret_names(d: &DeviceRow, st: &DeviceState) -> [String; 3] {
    [
        st.cik_name
            .clone()
            .unwrap_or_else(|| strongbox_domain::devices::cik_secret_name(&d.id)),
        disk_recovery_key_name(&d.name),
        bmc_password_name(&d.name),
    ]
}

pub(super) async fn health(app: &AppState, d: &DeviceRow) -> Result<Health, ArmError> {
    let st = DeviceState::of(d);
    let vault = match &st.vault_name {
        None => VaultNow::NotConfigured,
        Some(n) => match app.store.get_vault_by_name(n).await? {
            Some(v) if owned_by(&v, d) && v.deleted.is_some() => VaultNow::SoftDeleted(v),
            Some(v) if owned_by(&v, d) => VaultNow::Live(v),
            _ => VaultNow::Gone(n.clone()),
        },
    };
    let identity = if app
        .store
        .get_principal(&d.identity_object_id)
        .await?
        .is_none()
    {
        IdentityNow::Deleted
    } else if !st.identity_enabled {
        IdentityNow::Disabled
    } else {
        IdentityNow::Enabled
    };
    let credential = identity != IdentityNow::Deleted
        && app
            .store
            .list_key_credentials(&d.identity_object_id)
            .await?
            .iter()
            .any(|c| c.key_id.starts_with("device-"));
    let report = app.store.get_device_report(&d.id).await?;
    let reported: Vec<(String, String)> = report
        .as_ref()
        .and_then(|r| serde_json::from_str::<Vec<ReportedSecret>>(&r.secrets_json).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name.to_ascii_lowercase(), s.version))
        .collect();
    let mut access = false;
    let mut audit_logging = false;
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    if let VaultNow::Live(v) = &vault {
        access = app
            .store
            .list_access_policies(&v.id)
            .await?
            .iter()
            .any(|p| {
                p.object_id == d.identity_object_id
                    && ["get", "set"]
                        .iter()
                        .all(|x| p.secret_permissions.iter().any(|h| h == x))
            });
        for name in device_secret_names(d, &st) {
            match app.store.get_latest(&v.id, &name).await? {
                Some((s, version)) if s.deleted.is_none() => {
                    let theirs = reported
                        .iter()
                        .find(|(n, _)| *n == name.to_ascii_lowercase())
                        .map(|(_, v)| v.clone())
                        .filter(|v| !v.is_empty());
                    if let Some(theirs) = theirs
                        && !theirs.eq_ignore_ascii_case(&version.version)
                    {
                        changed.push((name, version.version, theirs));
                    }
                }
                _ => missing.push(name),
            }
        }
        let account = match &st.storage_account {
            Some(a) => app.store.get_storage_account(a).await?.is_some(),
            None => false,
        };
        audit_logging = account
            && app
                .store
                .get_diagnostic_setting(&v.id, DIAGNOSTIC_SETTING)
                .await?
                .is_some();
    }
    Ok(Health {
        vault,
        identity,
        access,
        credential,
        missing,
        changed,
        last_report: report.map(|r| r.reported_at).or(st.activated_at),
        audit_logging,
    })
}

/// One secret of a device's report, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReportedSecret {
    pub name: String,
    pub version: String,
}

struct Alert<'a> {
    kind: &'a str,
    severity: &'a str,
    title: &'a str,
    /// When the condition itself began, if the state says (a vault's deletion time); else the
    /// recorded start of this episode is shown.
    began_ms: Option<i64>,
    recommendation: String,
    message: String,
}

fn alert_json(
    d: &DeviceRow,
    a: &Alert<'_>,
    history: Option<&DeviceAlertRow>,
    now_ms: i64,
) -> Value {
    let appeared = a
        .began_ms
        .or(history.map(|h| h.appeared_at * 1000))
        .unwrap_or(now_ms);
    json!({
        "id": format!("{}/alerts/{}", device_id(&d.subscription_id, &d.resource_group, &d.name), a.kind),
        "name": a.kind,
        "type": "Microsoft.DataBoxEdge/dataBoxEdgeDevices/alerts",
        "properties": {
            "title": a.title,
            "alertType": a.kind,
            "severity": a.severity,
            "appearedAtDateTime": rfc3339(appeared),
            "firstSeenDateTime": rfc3339(history.map_or(now_ms, |h| h.first_seen * 1000)),
            "recommendation": a.recommendation,
            "errorDetails": {
                "errorCode": a.kind,
                "errorMessage": a.message,
                "occurrences": history.map_or(1, |h| h.occurrences),
            },
            "detailedInformation": {},
        },
    })
}

/// The alerts the device's state raises now, each with the command that fixes it. Deletion,
/// access and staleness alerts need a device in use (activated); an identity that is gone and
/// audit logging that is missing are raised as soon as they matter. The history (first seen,
/// occurrences, clearances) is recorded as a side effect.
pub(super) async fn alerts(app: &AppState, d: &DeviceRow) -> Result<Vec<Value>, ArmError> {
    let st = DeviceState::of(d);
    let in_use = st.activated_at.is_some();
    let h = health(app, d).await?;
    let now_ms = app.clock.now_ms();
    let rg = &d.resource_group;
    let n = &d.name;
    let mut out: Vec<Alert<'_>> = Vec::new();
    let reactivate = format!(
        "then generate a new activation key (strongbox device activation-key --name {n} --resource-group {rg}) and activate the device with it (strongbox agent activate --key KEY --data-dir NEW-DIR)"
    );
    match h.identity {
        IdentityNow::Deleted => out.push(Alert {
            kind: "DeviceIdentityDeleted",
            severity: "Critical",
            title: "The device's managed identity is deleted",
            began_ms: None,
            recommendation: format!(
                "Create a new identity for the device and grant it the vault: strongbox device recover-vault --name {n} --resource-group {rg}; {reactivate}"
            ),
            message: format!(
                "The device's system-assigned identity '{}' no longer exists: the device cannot get tokens or reach its vault.",
                d.identity_object_id
            ),
        }),
        IdentityNow::Disabled if in_use => out.push(Alert {
            kind: "DeviceIdentityDisabled",
            severity: "Critical",
            title: "The device's managed identity is disabled",
            began_ms: None,
            recommendation: format!(
                "Enable the identity and grant it the vault again: strongbox device recover-vault --name {n} --resource-group {rg}; {reactivate}"
            ),
            message: format!(
                "The device's system-assigned identity '{}' is disabled: the device cannot get tokens or reach its vault.",
                d.identity_object_id
            ),
        }),
        IdentityNow::Enabled if in_use && !h.credential => out.push(Alert {
            kind: "DeviceNotActivated",
            severity: "Critical",
            title: "The device must be activated again",
            began_ms: None,
            recommendation: format!(
                "Generate a new activation key (strongbox device activation-key --name {n} --resource-group {rg}) and activate the device with it (strongbox agent activate --key KEY --data-dir NEW-DIR)."
            ),
            message: "The device's identity holds no device credential (it was re-created or re-enabled): the device cannot get tokens until it is activated again.".into(),
        }),
        _ => {}
    }
    // Access and staleness are the device's to fix only while its identity works.
    let identity_ok = h.identity == IdentityNow::Enabled && h.credential;
    match &h.vault {
        _ if !in_use => {}
        VaultNow::NotConfigured => {}
        VaultNow::SoftDeleted(v) => out.push(Alert {
            kind: "KeyVaultDeleted",
            severity: "Critical",
            title: "Key Vault is deleted",
            began_ms: v.deleted.map(|x| x.deleted_at * 1000),
            recommendation: format!(
                "Recover the vault within its retention period: strongbox device recover-vault --name {n} --resource-group {rg}"
            ),
            message: format!("The device's vault '{}' is soft-deleted; the device cannot resync its secrets.", v.name),
        }),
        VaultNow::Gone(name) => out.push(Alert {
            kind: "KeyVaultDeleted",
            severity: "Critical",
            title: "Key Vault is deleted",
            began_ms: None,
            recommendation: format!(
                "The vault was purged: create a new one for the device: strongbox device recover-vault --name {n} --resource-group {rg} --new-vault-name <NEW-NAME>"
            ),
            message: format!("The device's vault '{name}' no longer exists."),
        }),
        VaultNow::Live(_) if !identity_ok => {}
        VaultNow::Live(v) if !h.access => out.push(Alert {
            kind: "KeyVaultAccessLost",
            severity: "Critical",
            title: "Couldn't access the Key Vault",
            began_ms: None,
            recommendation: format!(
                "Restore the device identity's access: strongbox device recover-access --name {n} --resource-group {rg}"
            ),
            message: format!(
                "The device's identity lacks secrets Get and Set on vault '{}'; the device cannot resync.",
                v.name
            ),
        }),
        VaultNow::Live(v) => {
            let overdue = h
                .last_report
                .filter(|t| now_ms / 1000 - t > REPORT_OVERDUE_SECS);
            let mut causes = Vec::new();
            if !h.missing.is_empty() {
                causes.push(format!("missing from vault '{}': {}", v.name, h.missing.join(", ")));
            }
            for (name, vault_version, reported) in &h.changed {
                causes.push(format!(
                    "{name} in vault '{}' is version {vault_version}, but the device last reported version {reported} (another value was written, or an old one put back)",
                    v.name
                ));
            }
            if let Some(t) = overdue {
                causes.push(format!(
                    "the device has not reported its secrets since {} (more than {} hours)",
                    rfc3339(t * 1000),
                    REPORT_OVERDUE_SECS / 3600
                ));
            }
            if !causes.is_empty() {
                let title = if !h.missing.is_empty() {
                    "Device secrets are missing from the Key Vault"
                } else if !h.changed.is_empty() {
                    "Device secrets in the Key Vault differ from the device's"
                } else {
                    "The device has not reported its secrets"
                };
                let mut rec = format!(
                    "Sync the device secrets: run `strongbox agent sync-secrets` on the device (or strongbox device sync-secrets --name {n} --resource-group {rg})"
                );
                if overdue.is_some() {
                    rec.push_str(
                        "; check that `strongbox agent run` is running on the device and can reach the service",
                    );
                }
                out.push(Alert {
                    kind: "DeviceSecretsStale",
                    severity: "Warning",
                    title,
                    began_ms: None,
                    recommendation: rec,
                    message: format!("{}.", causes.join("; ")),
                });
            }
        }
    }
    if let VaultNow::Live(v) = &h.vault
        && !h.audit_logging
    {
        out.push(Alert {
            kind: "AuditLoggingNotConfigured",
            severity: "Warning",
            title: "Audit logging of the Key Vault is not configured",
            began_ms: None,
            recommendation: format!(
                "Remove what blocks it (a storage account name already taken), then complete the setup: strongbox device recover-vault --name {n} --resource-group {rg}"
            ),
            message: format!(
                "The audit storage account or the diagnostic setting sending vault '{}' AuditEvents there is missing.",
                v.name
            ),
        });
    }
    let raised: Vec<String> = out.iter().map(|a| a.kind.to_string()).collect();
    let history = app
        .store
        .observe_device_alerts(&d.id, &raised, now_ms / 1000)
        .await?;
    Ok(out
        .iter()
        .map(|a| {
            let hist = history.iter().find(|r| r.alert_type == a.kind);
            alert_json(d, a, hist, now_ms)
        })
        .collect())
}

pub(super) async fn list_alerts(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: DevicePath,
) -> Response {
    let Ok(Path((sub, rg, name))) = path else {
        return ArmError::bad_request("The request path is malformed.").into_response();
    };
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain: subscription_chain(&app, &sub).await,
        resource_id: format!(
            "{}/alerts",
            device_id(&clip(&sub), &clip(&rg), &clip(&name))
        ),
        operation: ALERTS_READ,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &device_id(&sub, &rg, &name), actions::READ).await?;
        let d = find(&app, &sub, &rg, &name).await?;
        let value = alerts(&app, &d).await?;
        Ok(Done::response(
            (StatusCode::OK, axum::Json(json!({"value": value}))).into_response(),
        ))
    }
    .await;
    a.finish(outcome).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecoverBody {
    #[serde(default)]
    vault_name: Option<String>,
}

const REPAIR: [&str; 5] = [
    "LockVault",
    "CreateAuditStorage",
    "CreateDiagnosticSetting",
    "GrantIdentityAccess",
    "RequestSecretPush",
];

/// POST …/recoverKeyVault: checks everything it can before any change (so a refusal leaves
/// nothing behind), then runs the repair as an operation.
pub(super) async fn recover(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: DevicePath,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path((sub, rg, name))) = path else {
        return ArmError::bad_request("The request path is malformed.").into_response();
    };
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain: subscription_chain(&app, &sub).await,
        resource_id: device_id(&clip(&sub), &clip(&rg), &clip(&name)),
        operation: RECOVER,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, RECOVER).await?;
        let device = find(&app, &sub, &rg, &name).await?;
        let group = format!("/subscriptions/{sub}/resourceGroups/{}", device.resource_group);
        require(&app, caller, &group, lifecycle::actions::VAULT_WRITE).await?;
        require(&app, caller, &group, "Microsoft.Authorization/locks/write").await?;
        let body: RecoverBody = match &raw {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => RecoverBody::default(),
            _ => json_body(&raw, MAX_AUTHZ_BODY_BYTES)?,
        };
        let asked = body.vault_name.map(|n| lifecycle::vault_name(&n)).transpose()?;
        let mut st = DeviceState::of(&device);
        let h = health(&app, &device).await?;
        let (first, vault_name): (Vec<&str>, String) = match (&h.vault, asked) {
            (VaultNow::NotConfigured, _) => {
                return Err(ArmError::conflict(
                    "KeyVaultNotConfigured",
                    "The device has no vault yet: generate an activation key (strongbox device activation-key) instead.",
                ));
            }
            (VaultNow::SoftDeleted(v), Some(n)) if n != v.name => {
                return Err(ArmError::conflict(
                    "KeyVaultRecoverable",
                    format!(
                        "The device's vault '{}' is soft-deleted and recoverable: recover it under its own name (omit the new vault name).",
                        v.name
                    ),
                ));
            }
            (VaultNow::SoftDeleted(v), _) => (vec!["RecoverVault"], v.name.clone()),
            (VaultNow::Gone(old), None) => {
                return Err(ArmError::bad_request_code(
                    "NewVaultNameRequired",
                    format!(
                        "The device's vault '{old}' was purged: give a new vault name (--new-vault-name)."
                    ),
                ));
            }
            (VaultNow::Gone(_), Some(n)) => {
                check_vault_name(&app, &device, &n).await?;
                (vec!["CreateVault"], n)
            }
            (VaultNow::Live(v), asked) => {
                if asked.is_some_and(|n| n != v.name) {
                    return Err(ArmError::conflict(
                        "KeyVaultHealthy",
                        format!("The device's vault '{}' exists; a new vault name is only for a purged vault.", v.name),
                    ));
                }
                let locked = app
                    .store
                    .list_locks_at(&[v.resource_id.to_ascii_lowercase()])
                    .await?
                    .iter()
                    .any(|l| l.name == VAULT_LOCK);
                let diag = app
                    .store
                    .get_diagnostic_setting(&v.id, DIAGNOSTIC_SETTING)
                    .await?
                    .is_some();
                if h.access && locked && diag && h.identity == IdentityNow::Enabled {
                    return Err(ArmError::conflict(
                        "NothingToRecover",
                        format!(
                            "The device's vault '{}' is healthy and the identity has its access: nothing to recover.{}",
                            v.name,
                            if h.missing.is_empty() { String::new() } else { " Missing device secrets are pushed by the device: strongbox agent sync-secrets.".into() }
                        ),
                    ));
                }
                (vec![], v.name.clone())
            }
        };
        if !claim(&device.id) {
            return Err(ArmError::conflict(
                "AnotherOperationInProgress",
                "Another operation is running for this device; wait for it to finish.",
            ));
        }
        // Whatever the repair redoes is re-checked against the real state by its step.
        st.vault_locked = false;
        st.diagnostic_setting = false;
        st.access_granted = false;
        st.storage_account = None;
        if first == ["CreateVault"] {
            // The CIK keeps its name; the device pushes its copy into the new vault.
            st.vault_name = None;
        }
        let mut d = device.clone();
        d.state_json = st.json();
        if let Err(e) = app.store.update_device(&d).await {
            release(&device.id);
            return Err(e.into());
        }
        let op_id = uuid::Uuid::new_v4().to_string();
        let now = app.clock.now();
        // The identity comes back after the vault (so its old grant can be dropped from it)
        // and before the access grant.
        let identity: &[&str] = if h.identity == IdentityNow::Enabled {
            &[]
        } else {
            &["RestoreIdentity"]
        };
        let steps: Vec<(String, String)> = first
            .iter()
            .chain(identity.iter())
            .chain(REPAIR.iter())
            .map(|s| (s.to_string(), "Pending".to_string()))
            .collect();
        let body = op_body(&op_id, "InProgress", &steps, None);
        let op = DeviceOperationRow {
            id: op_id.clone(),
            device_id: device.id.clone(),
            status: "InProgress".into(),
            body_json: body.to_string(),
            created: now,
            updated: now,
        };
        if let Err(e) = app.store.put_device_operation(&op).await {
            release(&device.id);
            return Err(e.into());
        }
        let status_url = format!(
            "{}{}/operationsStatus/{op_id}?api-version={}",
            ctx.base_url,
            device_id(&sub, &device.resource_group, &device.name),
            ctx.query("api-version").unwrap_or_default()
        );
        let run = Run {
            app: app.clone(),
            audit: ctx.audit_ctx(),
            device: d,
            op,
            steps,
            vault_name,
            warnings: Vec::new(),
        };
        tokio::spawn(run.execute());
        let mut r = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&status_url) {
            r.headers_mut().insert("azure-asyncoperation", v.clone());
            r.headers_mut().insert(header::LOCATION, v);
        }
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok(Done::response(r))
    }
    .await;
    a.finish(outcome).await
}

/// `GET /devices/{id}/keyVault`, called by the device as itself (a vault token from its own
/// client assertion): which vault is its own now, and which of its secrets the vault lacks.
pub(super) async fn device_key_vault(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let mut chain = lifecycle::UNKNOWN_SUBSCRIPTION_CHAIN.to_string();
    let mut resource_id = "/devices/keyVault".to_string();
    let caller = super::sync::device_token_caller(&app, &headers).await;
    let outcome = async {
        let Ok(Path(id)) = path else {
            return Err(ArmError::bad_request("The request path is malformed."));
        };
        // Unknown device and someone else's token answer alike: nothing leaks about devices.
        let target = app.store.get_device_by_id(&clip(&id)).await?;
        if let Some(t) = &target {
            chain = lifecycle::subscription_chain(&t.subscription_id);
            resource_id = format!("{}/keyVault", t.resource_id);
        }
        let d = super::sync::device_caller(caller.as_ref(), target)?;
        let h = health(&app, &d).await?;
        let host = vault_host(&app);
        let (name, status) = match &h.vault {
            VaultNow::NotConfigured => (None, "NotConfigured"),
            VaultNow::Live(v) => (Some(v.name.clone()), if h.access { "Ready" } else { "AccessLost" }),
            VaultNow::SoftDeleted(v) => (Some(v.name.clone()), "Deleted"),
            VaultNow::Gone(n) => (Some(n.clone()), "Deleted"),
        };
        Ok(
            (
                StatusCode::OK,
                axum::Json(json!({
                    "vaultName": name,
                    "vaultUri": name.as_ref().map(|v| format!("https://{v}.{}{}/", host.dns_suffix, host.port_suffix)),
                    "status": status,
                    "missingSecrets": h.missing,
                    "secretsSyncRequest": super::sync::pending(&DeviceState::of(&d)),
                })),
            )
                .into_response(),
        )
    }
    .await;
    super::sync::finish_device_call(
        &app,
        &ctx,
        caller.as_ref(),
        &chain,
        &resource_id,
        SELF_READ,
        outcome,
    )
    .await
}
