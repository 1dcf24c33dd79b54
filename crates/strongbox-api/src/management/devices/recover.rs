//! Device alerts, Recover key vault / Recover access, and the device's own view of its vault.
//!
//! Alerts are not stored: every read computes them from what is there now (the vault row, its
//! access policies, the device secrets in it), so they cannot drift from the truth and clear
//! by themselves once the condition is gone.
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
use strongbox_identity::Plane;
use strongbox_store::{DeviceOperationRow, VaultRow};

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

pub(super) struct Health {
    pub vault: VaultNow,
    /// The identity holds at least secrets Get and Set on the live vault.
    pub access: bool,
    /// Device secrets absent (or soft-deleted) from the live vault.
    pub missing: Vec<String>,
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
    let mut access = false;
    let mut missing = Vec::new();
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
        let cik = st
            .cik_name
            .clone()
            .unwrap_or_else(|| strongbox_domain::devices::cik_secret_name(&d.id));
        for name in [
            cik,
            disk_recovery_key_name(&d.name),
            bmc_password_name(&d.name),
        ] {
            match app.store.get_latest(&v.id, &name).await? {
                Some((s, _)) if s.deleted.is_none() => {}
                _ => missing.push(name),
            }
        }
    }
    Ok(Health {
        vault,
        access,
        missing,
    })
}

fn alert(
    d: &DeviceRow,
    kind: &str,
    severity: &str,
    title: &str,
    at_ms: i64,
    rec: String,
    msg: String,
) -> Value {
    json!({
        "id": format!("{}/alerts/{kind}", device_id(&d.subscription_id, &d.resource_group, &d.name)),
        "name": kind,
        "type": "Microsoft.DataBoxEdge/dataBoxEdgeDevices/alerts",
        "properties": {
            "title": title,
            "alertType": kind,
            "severity": severity,
            "appearedAtDateTime": rfc3339(at_ms),
            "recommendation": rec,
            "errorDetails": {"errorCode": kind, "errorMessage": msg, "occurrences": 1},
            "detailedInformation": {},
        },
    })
}

/// The alerts the device's state raises now. Deletion and access alerts need an activated
/// device (one in use); before activation, generating the key reports the same problems.
pub(super) async fn alerts(app: &AppState, d: &DeviceRow) -> Result<Vec<Value>, ArmError> {
    let st = DeviceState::of(d);
    let in_use = st.activated_at.is_some();
    let h = health(app, d).await?;
    let now = app.clock.now_ms();
    let rg = &d.resource_group;
    let mut out = Vec::new();
    if !in_use {
        return Ok(out);
    }
    match &h.vault {
        VaultNow::NotConfigured => {}
        VaultNow::SoftDeleted(v) => out.push(alert(
            d,
            "KeyVaultDeleted",
            "Critical",
            "Key Vault is deleted",
            v.deleted.map_or(now, |x| x.deleted_at * 1000),
            format!(
                "Recover the vault within its retention period: strongbox device recover-vault --name {} --resource-group {rg}",
                d.name
            ),
            format!("The device's vault '{}' is soft-deleted; the device cannot resync its secrets.", v.name),
        )),
        VaultNow::Gone(n) => out.push(alert(
            d,
            "KeyVaultDeleted",
            "Critical",
            "Key Vault is deleted",
            now,
            format!(
                "The vault was purged: create a new one for the device: strongbox device recover-vault --name {} --resource-group {rg} --new-vault-name <NEW-NAME>",
                d.name
            ),
            format!("The device's vault '{n}' no longer exists."),
        )),
        VaultNow::Live(v) if !h.access => out.push(alert(
            d,
            "KeyVaultAccessLost",
            "Critical",
            "Couldn't access the Key Vault",
            now,
            format!(
                "Restore the device identity's access: strongbox device recover-access --name {} --resource-group {rg}",
                d.name
            ),
            format!(
                "The device's identity lacks secrets Get and Set on vault '{}'; the device cannot resync.",
                v.name
            ),
        )),
        VaultNow::Live(v) if !h.missing.is_empty() => out.push(alert(
            d,
            "DeviceSecretsStale",
            "Warning",
            "Device secrets are missing from the Key Vault",
            now,
            "Sync the device secrets: run `strongbox agent sync-secrets` on the device".to_string(),
            format!(
                "Missing from vault '{}': {}.",
                v.name,
                h.missing.join(", ")
            ),
        )),
        VaultNow::Live(_) => {}
    }
    Ok(out)
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
                if h.access && locked && diag {
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
        let steps: Vec<(String, String)> = first
            .iter()
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
    let outcome = async {
        let denied = || {
            ArmError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "A valid token of the device's own identity is required.",
            )
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(denied)?;
        let caller = app
            .tokens
            .verify(token, Plane::Vault)
            .await
            .map_err(|_| denied())?;
        let Ok(Path(id)) = path else {
            return Err(ArmError::bad_request("The request path is malformed."));
        };
        // Unknown device and someone else's token answer alike: nothing leaks about devices.
        let d = app
            .store
            .get_device_by_id(&clip(&id))
            .await?
            .filter(|d| d.identity_object_id == caller.object_id)
            .ok_or_else(denied)?;
        chain = lifecycle::subscription_chain(&d.subscription_id);
        resource_id = format!("{}/keyVault", d.resource_id);
        let h = health(&app, &d).await?;
        let host = vault_host(&app);
        let (name, status) = match &h.vault {
            VaultNow::NotConfigured => (None, "NotConfigured"),
            VaultNow::Live(v) => (Some(v.name.clone()), if h.access { "Ready" } else { "AccessLost" }),
            VaultNow::SoftDeleted(v) => (Some(v.name.clone()), "Deleted"),
            VaultNow::Gone(n) => (Some(n.clone()), "Deleted"),
        };
        Ok(Done::response(
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
        ))
    }
    .await;
    ctx.finish(&app, &chain, &resource_id, SELF_READ, outcome)
        .await
}
