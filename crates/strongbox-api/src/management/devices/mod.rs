//! `Microsoft.DataBoxEdge/dataBoxEdgeDevices`: the cloud-side twin of an edge device. Creating
//! one creates its system-assigned managed identity (deleted with it); generating an
//! activation key provisions the device's vault as a long-running operation
//! ([`provision`]); the device redeems the key once at `POST /devices/activate`
//! ([`activate`]); deleting the device deletes its vault too only with explicit consent
//! (`?deleteVault=true`).
//!
//! Every request leaves one audit record in the subscription's chain; what provisioning or
//! deletion does to the vault is audited in the vault's chain.

mod activate;
mod channel;
mod provision;
mod recover;
mod sync;

use super::context::*;
use super::{ArmError, require};
use crate::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use strongbox_domain::devices::{DEVICE_TYPE, valid_device_name};
use strongbox_domain::vault_lifecycle::{self as lifecycle, VaultRequest};
use strongbox_domain::{identities, locks};
use strongbox_store::{DeviceRow, StoreError};

pub mod actions {
    pub const READ: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/read";
    pub const WRITE: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/write";
    pub const DELETE: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/delete";
    pub const GENERATE_KEY: &str =
        "Microsoft.DataBoxEdge/dataBoxEdgeDevices/generateActivationKey/action";
    pub const ACTIVATE: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/activate/action";
}

/// The CanNotDelete lock provisioning places on the device's vault.
pub const VAULT_LOCK: &str = "strongbox-device-vault";
/// The diagnostic setting provisioning puts on the device's vault.
pub const DIAGNOSTIC_SETTING: &str = "strongbox-device-audit";
/// Tag on the device's vault naming the device id, so a retry recognises the vault as its own.
pub const DEVICE_TAG: &str = "strongbox-device-id";
/// Tag on the audit storage account naming the vault (Azure tags it with the vault name).
pub const VAULT_TAG: &str = "keyVaultName";

const GROUP_DEVICES: &str =
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices";
const SUBSCRIPTION_DEVICES: &str =
    "/subscriptions/{sub}/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            GROUP_DEVICES,
            get(list_in_group).fallback(method_not_allowed),
        )
        .route(
            SUBSCRIPTION_DEVICES,
            get(list_in_subscription).fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_DEVICES}/{{name}}"),
            get(get_device)
                .put(put_device)
                .delete(delete_device)
                .fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_DEVICES}/{{name}}/generateActivationKey"),
            post(provision::generate).fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_DEVICES}/{{name}}/operationsStatus/{{op}}"),
            get(provision::operation_status).fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_DEVICES}/{{name}}/alerts"),
            get(recover::list_alerts).fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_DEVICES}/{{name}}/recoverKeyVault"),
            post(recover::recover).fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_DEVICES}/{{name}}/syncSecrets"),
            post(sync::sync_secrets).fallback(method_not_allowed),
        )
        .route(
            &format!("{GROUP_DEVICES}/{{name}}/sendSecret"),
            post(channel::send_secret).fallback(method_not_allowed),
        )
        .route(
            "/devices/{id}/secretsSynced",
            post(sync::secrets_synced).fallback(method_not_allowed),
        )
        .route(
            "/devices/{id}/keyVault",
            get(recover::device_key_vault).fallback(method_not_allowed),
        )
        .route(
            "/devices/activate",
            post(activate::activate).fallback(method_not_allowed),
        )
        .layer(DefaultBodyLimit::max(MAX_AUTHZ_BODY_BYTES))
}

/// What provisioning has built for a device, kept as JSON beside it. Each step sets its part
/// only once it is done, so a retry skips what exists and redoes nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct DeviceState {
    /// `ReadyToSetup` until activated, then `Online`.
    pub status: String,
    pub identity_enabled: bool,
    pub vault_name: Option<String>,
    pub vault_locked: bool,
    pub storage_account: Option<String>,
    pub diagnostic_setting: bool,
    pub access_granted: bool,
    pub cik_name: Option<String>,
    pub cik_version: Option<String>,
    pub key_generated_at: Option<i64>,
    pub activated_at: Option<i64>,
    /// When a recovery last asked the device to push its secrets.
    pub secrets_push_requested_at: Option<i64>,
    /// The pending `syncSecrets` operation the device is asked to answer, and when.
    pub sync_request_id: Option<String>,
    pub sync_requested_at: Option<i64>,
}

impl DeviceState {
    pub fn of(d: &DeviceRow) -> DeviceState {
        serde_json::from_str(&d.state_json).unwrap_or_default()
    }
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("state serializes")
    }
    /// Whether every blocking provisioning step has run (audit storage and its diagnostic
    /// setting do not block: Azure issues the key without them, and so does Strongbox).
    pub fn provisioned(&self) -> bool {
        self.vault_name.is_some()
            && self.vault_locked
            && self.identity_enabled
            && self.access_granted
            && self.cik_version.is_some()
    }
}

pub(crate) fn device_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{DEVICE_TYPE}/{name}")
}

fn not_found(name: &str) -> ArmError {
    ArmError::not_found(
        "ResourceNotFound",
        format!("The Resource '{DEVICE_TYPE}/{}' was not found.", clip(name)),
    )
}

/// The device a path names, checking the names first (400) and then existence (404).
pub(crate) async fn find(
    app: &AppState,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<DeviceRow, ArmError> {
    if !valid_resource_group(rg) {
        return Err(ArmError::bad_request("The resource group name is invalid."));
    }
    if !valid_device_name(name) {
        return Err(invalid_name(name));
    }
    app.store
        .get_device(&device_id(sub, rg, name))
        .await?
        .ok_or_else(|| not_found(name))
}

fn invalid_name(name: &str) -> ArmError {
    ArmError::bad_request(format!(
        "'{}' is not a valid device name: use 2 to 50 letters, digits and hyphens, starting and ending with a letter or digit.",
        clip(name)
    ))
}

pub(crate) async fn view(app: &AppState, d: &DeviceRow) -> Result<Value, ArmError> {
    let st = DeviceState::of(d);
    let principal = app.store.get_principal(&d.identity_object_id).await?;
    let identity_status = match &principal {
        None => "Deleted",
        Some(_) if st.identity_enabled => "Enabled",
        Some(_) => "Disabled",
    };
    let tenant = principal.map(|p| p.tenant_id).unwrap_or_default();
    let host = vault_host(app);
    let key_vault = st.vault_name.as_ref().map(|v| {
        json!({
            "name": v,
            "id": strongbox_domain::vaults::vault_resource_id(&d.subscription_id, &d.resource_group, v),
            "uri": format!("https://{v}.{}{}/", host.dns_suffix, host.port_suffix),
            "locked": st.vault_locked,
            "auditStorageAccount": st.storage_account,
            "diagnosticSetting": st.diagnostic_setting.then_some(DIAGNOSTIC_SETTING),
            "identityAccessGranted": st.access_granted,
            "channelIntegrityKeyName": st.cik_name,
            "channelIntegrityKeyVersion": st.cik_version,
            "syncStatus": if st.activated_at.is_some() { "KeyVaultSyncPending" } else { "KeyVaultNotSynced" },
        })
    });
    Ok(json!({
        "id": device_id(&d.subscription_id, &d.resource_group, &d.name),
        "name": d.name,
        "type": DEVICE_TYPE,
        "location": d.location,
        "tags": tags_value(d.tags_json.as_deref()),
        "sku": {"name": "Edge", "tier": "Standard"},
        "identity": {
            "type": "SystemAssigned",
            "principalId": d.identity_object_id,
            "tenantId": tenant,
        },
        "properties": {
            "deviceId": d.id,
            "dataBoxEdgeDeviceStatus": if st.status.is_empty() { "ReadyToSetup" } else { st.status.as_str() },
            "identityStatus": identity_status,
            "keyVault": key_vault,
            "keyVaultSyncStatus": if key_vault_configured(&st) { "KeyVaultSyncPending" } else { "KeyVaultNotConfigured" },
            "activatedAt": st.activated_at.map(|t| rfc3339(t * 1000)),
            "createdAt": rfc3339(d.created * 1000),
        },
    }))
}

fn key_vault_configured(st: &DeviceState) -> bool {
    st.provisioned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuIn {
    #[allow(dead_code)] // accepted for ARM's sake: one kind of device here
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    tier: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityIn {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PropertiesIn {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    location: String,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    sku: Option<SkuIn>,
    #[serde(default)]
    identity: Option<IdentityIn>,
    #[serde(default)]
    #[allow(dead_code)]
    properties: Option<PropertiesIn>,
}

type DevicePath = Result<Path<(String, String, String)>, PathRejection>;

async fn put_device(
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
        operation: actions::WRITE,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, actions::WRITE).await?;
        if !valid_resource_group(&rg) {
            return Err(ArmError::bad_request("The resource group name is invalid."));
        }
        if !valid_device_name(&name) {
            return Err(invalid_name(&name));
        }
        lifecycle::require_subscription(&*app.store, &sub).await?;
        let b: PutBody = json_body(&raw, MAX_AUTHZ_BODY_BYTES)?;
        let _ = b.sku;
        // `None` switches an existing device's identity off (ARM's way to disable a
        // system-assigned identity); a device is always created with one.
        let disable = match &b.identity {
            None => false,
            Some(i) if i.kind.eq_ignore_ascii_case("SystemAssigned") => false,
            Some(i) if i.kind.eq_ignore_ascii_case("None") => true,
            Some(_) => {
                return Err(ArmError::bad_request(
                    "identity.type must be SystemAssigned (or None to disable an existing device's identity).",
                ));
            }
        };
        let location = lifecycle::location(&b.location)?;
        let tags = tags_json(b.tags)?;
        let rid = device_id(&sub, &rg.to_ascii_lowercase(), &name);
        if let Some(mut existing) = app.store.get_device(&rid).await? {
            if existing.location != location {
                return Err(ArmError::conflict(
                    "InvalidResourceLocation",
                    format!(
                        "The device '{name}' already exists in location '{}'.",
                        existing.location
                    ),
                ));
            }
            existing.tags_json = tags;
            if disable {
                disable_identity(&app, &a, &mut existing).await?;
            }
            app.store.update_device(&existing).await?;
            return Ok(Done::response(
                (StatusCode::OK, axum::Json(view(&app, &existing).await?)).into_response(),
            ));
        }
        if disable {
            return Err(ArmError::bad_request(
                "identity.type must be SystemAssigned when creating a device: a device always has its own identity.",
            ));
        }
        let identity = identities::create_system_assigned(&*app.store, &*app.clock, &rid).await?;
        let row = DeviceRow {
            id: uuid::Uuid::new_v4().to_string(),
            resource_id: rid.to_ascii_lowercase(),
            subscription_id: sub.clone(),
            resource_group: rg.to_ascii_lowercase(),
            name: name.clone(),
            location,
            tags_json: tags,
            identity_object_id: identity.principal.object_id.clone(),
            state_json: DeviceState {
                status: "ReadyToSetup".into(),
                ..Default::default()
            }
            .json(),
            created: app.clock.now(),
        };
        match app.store.insert_device(row.clone(), a.entry(201)).await {
            Ok(()) => Ok(Done::committed(
                (StatusCode::CREATED, axum::Json(view(&app, &row).await?)).into_response(),
            )),
            Err(StoreError::Conflict) => Err(ArmError::conflict(
                "Conflict",
                "The device was created by another request at the same time; retry.",
            )),
            Err(e) => {
                // The device was not created: its identity must not outlive it.
                let _ = identities::delete_for_resource(&*app.store, &rid).await;
                Err(e.into())
            }
        }
    }
    .await;
    a.finish(outcome).await
}

/// Switches the device's identity off: it is marked disabled and loses its device credentials,
/// so it gets no token (Strongbox's token service has no per-principal switch; removing the
/// key the agent signs with is what makes "disabled" real). Its object id and vault grants stay,
/// so Recover key vault can enable it again; the device must then be activated again.
async fn disable_identity(
    app: &AppState,
    a: &Audited<'_>,
    d: &mut DeviceRow,
) -> Result<(), ArmError> {
    let mut st = DeviceState::of(d);
    if app
        .store
        .get_principal(&d.identity_object_id)
        .await?
        .is_some()
    {
        for c in app
            .store
            .list_key_credentials(&d.identity_object_id)
            .await?
        {
            if c.key_id.starts_with("device-") {
                match app
                    .store
                    .delete_key_credential(&d.identity_object_id, &c.key_id)
                    .await
                {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    if st.identity_enabled {
        st.identity_enabled = false;
        d.state_json = st.json();
        app.audit
            .append(a.ctx.entry(
                app,
                &a.chain,
                &format!("{}/identity", a.resource_id),
                "Microsoft.DataBoxEdge/dataBoxEdgeDevices/identity/disable/action",
                200,
            ))
            .await?;
    }
    Ok(())
}

async fn get_device(State(app): State<Arc<AppState>>, ctx: ArmCtx, path: DevicePath) -> Response {
    let Ok(Path((sub, rg, name))) = path else {
        return ArmError::bad_request("The request path is malformed.").into_response();
    };
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain: subscription_chain(&app, &sub).await,
        resource_id: device_id(&clip(&sub), &clip(&rg), &clip(&name)),
        operation: actions::READ,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, actions::READ).await?;
        let d = find(&app, &sub, &rg, &name).await?;
        Ok(Done::response(
            (StatusCode::OK, axum::Json(view(&app, &d).await?)).into_response(),
        ))
    }
    .await;
    a.finish(outcome).await
}

async fn list(app: &AppState, ctx: &ArmCtx, sub: &str, rg: Option<&str>) -> Response {
    let scope = match rg {
        Some(rg) => format!("/subscriptions/{}/resourceGroups/{}", clip(sub), clip(rg)),
        None => format!("/subscriptions/{}", clip(sub)),
    };
    let a = Audited {
        app,
        ctx,
        chain: subscription_chain(app, sub).await,
        resource_id: scope.clone(),
        operation: actions::READ,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(app, caller, &scope, actions::READ).await?;
        if rg.is_some_and(|rg| !valid_resource_group(rg)) {
            return Err(ArmError::bad_request("The resource group name is invalid."));
        }
        let mut value = Vec::new();
        for d in app.store.list_devices(sub, rg).await? {
            value.push(view(app, &d).await?);
        }
        Ok(Done::response(
            (StatusCode::OK, axum::Json(json!({"value": value}))).into_response(),
        ))
    }
    .await;
    a.finish(outcome).await
}

async fn list_in_group(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match path {
        Ok(Path((sub, rg))) => list(&app, &ctx, &sub, Some(&rg)).await,
        Err(e) => bad_path(e),
    }
}

async fn list_in_subscription(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match path {
        Ok(Path(sub)) => list(&app, &ctx, &sub, None).await,
        Err(e) => bad_path(e),
    }
}

/// DELETE: the device and its identity always go. Its vault goes too (lock removed, then soft
/// deleted) only with `deleteVault=true`; without it the vault, its secrets and its lock stay.
async fn delete_device(
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
        resource_id: device_id(&clip(&sub), &clip(&rg), &clip(&name)),
        operation: actions::DELETE,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, actions::DELETE).await?;
        let delete_vault = match ctx.query("deleteVault") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(ArmError::bad_request(
                    "deleteVault must be 'true' or 'false'.",
                ));
            }
        };
        let d = match find(&app, &sub, &rg, &name).await {
            Ok(d) => d,
            // Deleting what is not there succeeds with 204, as in ARM.
            Err(e) if e.status == StatusCode::NOT_FOUND => {
                return Ok(Done::empty(StatusCode::NO_CONTENT, false));
            }
            Err(e) => return Err(e),
        };
        let st = DeviceState::of(&d);
        let live_vault = match &st.vault_name {
            Some(v) => app
                .store
                .get_vault_by_name(v)
                .await?
                .filter(|v| v.deleted.is_none() && v.subscription_id == d.subscription_id),
            None => None,
        };
        if delete_vault && let Some(vault) = &live_vault {
            require(&app, caller, &vault.resource_id, lifecycle::actions::VAULT_DELETE).await?;
            require(&app, caller, &vault.resource_id, "Microsoft.Authorization/locks/delete")
                .await?;
            // Only the lock provisioning placed is ours to lift: any other lock refuses the
            // whole delete before anything changes.
            let others: Vec<_> = app
                .store
                .list_locks_at(&locks::covering_scopes(&vault.resource_id))
                .await?
                .into_iter()
                .filter(|l| {
                    !(l.name == VAULT_LOCK
                        && l.scope == vault.resource_id.to_ascii_lowercase())
                })
                .collect();
            if let Some(l) = others.first() {
                return Err(ArmError::conflict(
                    "ScopeLocked",
                    format!(
                        "The scope '{}' cannot perform delete operation because following scope(s) are locked: '{}'. Please remove the lock and try again.",
                        vault.resource_id, l.resource_id
                    ),
                ));
            }
            let audit = ctx.audit_ctx();
            let target = locks::LockTarget::Vault {
                subscription_id: &vault.subscription_id,
                resource_group: &vault.resource_group,
                name: &vault.name,
            };
            locks::delete(&*app.store, &*app.clock, &audit, &target, VAULT_LOCK).await?;
            let host = vault_host(&app);
            lifecycle::delete(&VaultRequest {
                store: &*app.store,
                clock: &*app.clock,
                audit: &audit,
                host: &host,
                subscription_id: &vault.subscription_id,
                resource_group: &vault.resource_group,
                name: &vault.name,
            })
            .await?;
        }
        identities::delete_for_resource(&*app.store, &d.resource_id).await?;
        match app.store.delete_device(&d.id, a.entry(200)).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        app.store.delete_device_health(&d.id).await?;
        provision::forget_keys(&d.id);
        Ok(Done::committed(
            (
                StatusCode::OK,
                axum::Json(json!({
                    "vaultDeleted": delete_vault && live_vault.is_some(),
                    "vaultKept": live_vault.is_some() && !delete_vault,
                    "vaultName": st.vault_name,
                })),
            )
                .into_response(),
        ))
    }
    .await;
    a.finish(outcome).await
}

fn valid_resource_group(rg: &str) -> bool {
    lifecycle::resource_group_name(rg).is_ok()
}
