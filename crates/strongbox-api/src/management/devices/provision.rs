//! `POST …/generateActivationKey`: a long-running operation (ARM's async pattern: 202 with
//! `Azure-AsyncOperation` and `Location` pointing at an operation status resource) that builds
//! what a device needs, one recorded step at a time:
//!
//! 1. CreateVault: a standard vault, access-policy model, soft delete with 90 days' retention,
//!    tagged with the device id (so a retry knows it as its own);
//! 2. LockVault: a CanNotDelete lock on it;
//! 3. EnableIdentity: the device's system-assigned identity is enabled;
//! 4. CreateAuditStorage: a storage account tagged with the vault name;
//! 5. CreateDiagnosticSetting: the vault's AuditEvent records go to that account;
//! 6. GrantIdentityAccess: the identity gets secrets Get and Set, nothing else;
//! 7. StoreChannelIntegrityKey: 256 random bits written to the vault *by the identity itself*,
//!    through its Get+Set grant (so this step follows 6, and the audit target exists first so
//!    the write is delivered there);
//! 8. IssueActivationKey: a one-time enrolment secret (kept hashed, 72 h) in a new key.
//!
//! Each step checks what exists before acting, and the device records a step only once it is
//! done: a failed or interrupted run leaves a state that the next run completes, never a second
//! vault, lock, policy entry, account, setting or CIK version. Once everything is built, a new
//! key is step 8 alone: the vault is not touched. Steps 4 and 5 do not block (as in Azure): if
//! they fail the key is still issued, the operation carries a warning per step, the device
//! raises `AuditLoggingNotConfigured`, and Recover key vault (or a new key) completes them.
//!
//! What makes a key valid lives in the store: the enrolment (hash of the one-time secret,
//! expiry, used-at), so a key survives a server restart and stays single-use across it. The
//! key's text is never stored: it is shown on the completed operation's status from memory
//! only, so after a restart (or on another node) the status no longer shows it.

use super::*;
use axum::http::{HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;
use strongbox_domain::audit::{Operation, RequestInfo};
use strongbox_domain::devices::{
    ActivationKey, KEY_LIFETIME_SECS, audit_account_name, cik_secret_name, default_vault_name,
};
use strongbox_domain::vault_lifecycle::{AuditCtx, PolicyEdit};
use strongbox_domain::{Caller, SecretAction, VaultAccess, authorize, identities};
use strongbox_store::insights::{DiagnosticSettingRow, StorageAccountRow};
use strongbox_store::{DeviceOperationRow, EnrollmentRow, VaultRow};

pub const STEPS: [&str; 8] = [
    "CreateVault",
    "LockVault",
    "EnableIdentity",
    "CreateAuditStorage",
    "CreateDiagnosticSetting",
    "GrantIdentityAccess",
    "StoreChannelIntegrityKey",
    "IssueActivationKey",
];

/// Devices with a provisioning run in progress: one run per device at a time.
static RUNNING: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// Issued keys by operation id: (device id, key, expiry). Memory only.
#[allow(clippy::type_complexity)]
static KEYS: Mutex<Option<HashMap<String, (String, String, i64)>>> = Mutex::new(None);

pub(super) fn claim(device_id: &str) -> bool {
    RUNNING
        .lock()
        .expect("lock")
        .get_or_insert_with(HashSet::new)
        .insert(device_id.to_string())
}

pub(super) fn release(device_id: &str) {
    if let Some(s) = RUNNING.lock().expect("lock").as_mut() {
        s.remove(device_id);
    }
}

/// Forgets the keys issued for a device (it was deleted).
pub(super) fn forget_keys(device_id: &str) {
    if let Some(m) = KEYS.lock().expect("lock").as_mut() {
        m.retain(|_, (d, _, _)| d != device_id);
    }
}

fn held_key(op_id: &str, now: i64) -> Option<String> {
    let mut keys = KEYS.lock().expect("lock");
    let m = keys.get_or_insert_with(HashMap::new);
    m.retain(|_, (_, _, exp)| *exp > now);
    m.get(op_id).map(|(_, k, _)| k.clone())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenerateBody {
    #[serde(default)]
    vault_name: Option<String>,
}

/// Steps whose failure does not stop the run (Azure: "not blocking; the key is still
/// generated"): the audit storage account and the diagnostic setting. The operation then
/// succeeds with a warning naming the step and its error, the device raises
/// `AuditLoggingNotConfigured`, and a later run (Recover key vault, or a new key) completes them.
pub const NON_BLOCKING: [&str; 2] = ["CreateAuditStorage", "CreateDiagnosticSetting"];

pub(super) fn op_body(
    op_id: &str,
    status: &str,
    steps: &[(String, String)],
    error: Option<&ArmError>,
) -> Value {
    op_body_with(op_id, status, steps, error, &[])
}

/// The operation body, with the warnings of non-blocking steps that failed.
pub(super) fn op_body_with(
    op_id: &str,
    status: &str,
    steps: &[(String, String)],
    error: Option<&ArmError>,
    warnings: &[(String, ArmError)],
) -> Value {
    let mut body = json!({
        "id": op_id,
        "name": op_id,
        "status": status,
        "steps": steps.iter().map(|(n, s)| json!({"name": n, "status": s})).collect::<Vec<_>>(),
        "error": error.map(|e| json!({"code": e.code, "message": e.message})),
    });
    if !warnings.is_empty() {
        body["warnings"] = warnings
            .iter()
            .map(|(step, e)| json!({"step": step, "code": e.code, "message": e.message}))
            .collect();
    }
    body
}

pub(super) async fn generate(
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
        operation: actions::GENERATE_KEY,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, actions::GENERATE_KEY).await?;
        let device = find(&app, &sub, &rg, &name).await?;
        let st = DeviceState::of(&device);
        // Vault and lock are made in the device's group on the caller's behalf: the caller
        // must be allowed to make them.
        let group = format!("/subscriptions/{sub}/resourceGroups/{}", device.resource_group);
        require(&app, caller, &group, lifecycle::actions::VAULT_WRITE).await?;
        require(&app, caller, &group, "Microsoft.Authorization/locks/write").await?;
        let body: GenerateBody = match &raw {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => GenerateBody::default(),
            _ => json_body(&raw, MAX_AUTHZ_BODY_BYTES)?,
        };
        let vault_name = match (&st.vault_name, body.vault_name) {
            (Some(have), Some(asked)) if !have.eq_ignore_ascii_case(&asked) => {
                return Err(ArmError::conflict(
                    "DeviceVaultAlreadyConfigured",
                    format!(
                        "The device already uses the vault '{have}'; generate the key without a vault name."
                    ),
                ));
            }
            (Some(have), _) => have.clone(),
            (None, asked) => {
                let n = asked.unwrap_or_else(|| default_vault_name(&device.name, &device.id));
                let n = lifecycle::vault_name(&n)?;
                check_vault_name(&app, &device, &n).await?;
                n
            }
        };
        if !claim(&device.id) {
            return Err(ArmError::conflict(
                "AnotherOperationInProgress",
                "An activation key is already being generated for this device; wait for it to finish.",
            ));
        }
        let op_id = uuid::Uuid::new_v4().to_string();
        let now = app.clock.now();
        let steps: Vec<(String, String)> =
            STEPS.iter().map(|s| (s.to_string(), "Pending".to_string())).collect();
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
            device,
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

/// A name the device may take: free, or already its own (a retry after step 1).
pub(super) async fn check_vault_name(
    app: &AppState,
    device: &DeviceRow,
    name: &str,
) -> Result<(), ArmError> {
    match app.store.get_vault_by_name(name).await? {
        None => Ok(()),
        Some(v) if v.deleted.is_some() => Err(ArmError::conflict(
            "VaultAlreadyExistsInDeletedState",
            format!(
                "A vault with the same name ('{name}') already exists in deleted state. You need to either recover or purge existing key vault, or choose another name."
            ),
        )),
        Some(v) if owned_by(&v, device) => Ok(()),
        Some(_) => Err(ArmError::conflict(
            "VaultAlreadyExists",
            format!("The vault name '{name}' is already in use; choose another name."),
        )),
    }
}

pub(super) fn owned_by(v: &VaultRow, device: &DeviceRow) -> bool {
    v.subscription_id == device.subscription_id
        && v.resource_group
            .eq_ignore_ascii_case(&device.resource_group)
        && v.tags_json
            .as_deref()
            .and_then(|t| serde_json::from_str::<BTreeMap<String, String>>(t).ok())
            .is_some_and(|t| t.get(DEVICE_TAG) == Some(&device.id))
}

pub(super) struct Run {
    pub app: Arc<AppState>,
    pub audit: AuditCtx,
    pub device: DeviceRow,
    pub op: DeviceOperationRow,
    pub steps: Vec<(String, String)>,
    pub vault_name: String,
    /// Non-blocking steps that failed, with their errors.
    pub warnings: Vec<(String, ArmError)>,
}

impl Run {
    async fn save_op(&mut self, status: &str, error: Option<&ArmError>) {
        self.op.status = status.into();
        self.op.body_json =
            op_body_with(&self.op.id, status, &self.steps, error, &self.warnings).to_string();
        self.op.updated = self.app.clock.now();
        if let Err(e) = self.app.store.put_device_operation(&self.op).await {
            tracing::error!(error = %e, "could not record a device operation");
        }
    }

    pub(super) async fn execute(mut self) {
        let device_id = self.device.id.clone();
        for i in 0..self.steps.len() {
            self.steps[i].1 = "Running".into();
            self.save_op("InProgress", None).await;
            let name = self.steps[i].0.clone();
            match self.step(&name).await {
                Ok(()) => self.steps[i].1 = "Done".into(),
                Err(e) => {
                    let e = if e.status.is_server_error() {
                        ArmError::new(
                            e.status,
                            e.code,
                            "The service encountered an internal error; retry.",
                        )
                    } else {
                        e
                    };
                    if NON_BLOCKING.contains(&name.as_str()) {
                        self.steps[i].1 = "Warning".into();
                        self.warnings.push((name, e));
                        continue;
                    }
                    self.steps[i].1 = "Failed".into();
                    self.save_op("Failed", Some(&e)).await;
                    release(&device_id);
                    return;
                }
            }
        }
        self.save_op("Succeeded", None).await;
        release(&device_id);
    }

    /// The device as stored now, with its state.
    async fn state(&self) -> Result<(DeviceRow, DeviceState), ArmError> {
        let d = self
            .app
            .store
            .get_device_by_id(&self.device.id)
            .await?
            .ok_or_else(|| not_found(&self.device.name))?;
        let st = DeviceState::of(&d);
        Ok((d, st))
    }

    async fn record(&self, mut d: DeviceRow, st: &DeviceState) -> Result<(), ArmError> {
        d.state_json = st.json();
        self.app.store.update_device(&d).await?;
        Ok(())
    }

    fn vault_request<'a>(
        &'a self,
        host: &'a strongbox_domain::vault_lifecycle::VaultHost,
    ) -> VaultRequest<'a> {
        VaultRequest {
            store: &*self.app.store,
            clock: &*self.app.clock,
            audit: &self.audit,
            host,
            subscription_id: &self.device.subscription_id,
            resource_group: &self.device.resource_group,
            name: &self.vault_name,
        }
    }

    async fn vault(&self) -> Result<VaultRow, ArmError> {
        self.app
            .store
            .get_vault_by_name(&self.vault_name)
            .await?
            .filter(|v| v.deleted.is_none() && owned_by(v, &self.device))
            .ok_or_else(|| {
                ArmError::conflict(
                    "KeyVaultNotFound",
                    format!(
                        "The device's vault '{}' no longer exists; recover it, then generate the key again.",
                        self.vault_name
                    ),
                )
            })
    }

    async fn step(&self, step: &str) -> Result<(), ArmError> {
        let (d, mut st) = self.state().await?;
        let host = vault_host(&self.app);
        match step {
            "RecoverVault" => {
                // Brings the soft-deleted vault back under its name, secrets and policies
                // included; a vault already live (a retry) is left as it is.
                let existing = self.app.store.get_vault_by_name(&self.vault_name).await?;
                if existing.is_some_and(|v| v.deleted.is_some()) {
                    let params = serde_json::from_value(json!({
                        "location": d.location,
                        "properties": {"createMode": "recover"},
                    }))
                    .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
                    lifecycle::create_or_update(&self.vault_request(&host), params).await?;
                }
                self.vault().await?;
            }
            "CreateVault" => {
                if st.vault_name.is_none() {
                    let existing = self.app.store.get_vault_by_name(&self.vault_name).await?;
                    match existing {
                        Some(v) if v.deleted.is_none() && owned_by(&v, &d) => {}
                        _ => {
                            let tenant = lifecycle::require_subscription(
                                &*self.app.store,
                                &d.subscription_id,
                            )
                            .await?
                            .tenant_id;
                            let params = serde_json::from_value(json!({
                                "location": d.location,
                                "tags": {DEVICE_TAG: d.id, "dataBoxEdgeDevice": d.name},
                                "properties": {
                                    "tenantId": tenant,
                                    "sku": {"family": "A", "name": "standard"},
                                    "accessPolicies": [],
                                    "enableSoftDelete": true,
                                    "softDeleteRetentionInDays": 90,
                                    "enableRbacAuthorization": false,
                                },
                            }))
                            .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
                            lifecycle::create_or_update(&self.vault_request(&host), params).await?;
                        }
                    }
                    st.vault_name = Some(self.vault_name.clone());
                    self.record(d, &st).await?;
                }
            }
            "LockVault" => {
                if !st.vault_locked {
                    self.vault().await?;
                    let target = locks::LockTarget::Vault {
                        subscription_id: &d.subscription_id,
                        resource_group: &d.resource_group,
                        name: &self.vault_name,
                    };
                    let params = serde_json::from_value(json!({"properties": {
                        "level": "CanNotDelete",
                        "notes": "Placed by Strongbox for an edge device: the device's secrets live here.",
                    }}))
                    .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
                    locks::put(
                        &*self.app.store,
                        &*self.app.clock,
                        &self.audit,
                        &target,
                        VAULT_LOCK,
                        params,
                    )
                    .await?;
                    st.vault_locked = true;
                    self.record(d, &st).await?;
                }
            }
            "EnableIdentity" => {
                // Also brings back an identity deleted since (a new one, granted in step 6).
                if !st.identity_enabled
                    || self
                        .app
                        .store
                        .get_principal(&d.identity_object_id)
                        .await?
                        .is_none()
                {
                    self.restore_identity(d, st).await?;
                }
            }
            "CreateAuditStorage" => {
                if st.storage_account.is_none() {
                    let account = audit_account_name(&self.vault_name);
                    match self.app.store.get_storage_account(&account).await? {
                        Some(a)
                            if a.subscription_id == d.subscription_id
                                && a.resource_group == d.resource_group
                                && a.tags_json
                                    .as_deref()
                                    .and_then(|t| {
                                        serde_json::from_str::<BTreeMap<String, String>>(t).ok()
                                    })
                                    .is_some_and(|t| {
                                        t.get(VAULT_TAG) == Some(&self.vault_name)
                                    }) => {}
                        Some(_) => {
                            return Err(ArmError::conflict(
                                "StorageAccountAlreadyTaken",
                                format!(
                                    "The storage account '{account}' for the vault's audit logs exists and is not this vault's; delete or rename it, then generate the key again."
                                ),
                            ));
                        }
                        None => {
                            let dir = self.app.storage_root.join(&account);
                            std::fs::create_dir_all(&dir).map_err(|e| {
                                strongbox_domain::DomainError::Internal(format!(
                                    "audit directory: {e}"
                                ))
                            })?;
                            let row = StorageAccountRow {
                                name: account.clone(),
                                subscription_id: d.subscription_id.clone(),
                                resource_group: d.resource_group.clone(),
                                location: d.location.clone(),
                                local_path: dir.to_string_lossy().into_owned(),
                                max_file_bytes: 8 * 1024 * 1024,
                                max_file_age_secs: 3600,
                                tags_json: Some(
                                    json!({VAULT_TAG: self.vault_name, "dataBoxEdgeDevice": d.name}).to_string(),
                                ),
                                created: self.app.clock.now(),
                            };
                            let entry = self.audit.entry(
                                &lifecycle::subscription_chain(&d.subscription_id),
                                &format!(
                                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{account}",
                                    d.subscription_id, d.resource_group
                                ),
                                "Microsoft.Storage/storageAccounts/write",
                                201,
                                self.app.clock.now_ms(),
                            );
                            match self.app.store.put_storage_account(row, entry).await {
                                Ok(()) => {}
                                Err(StoreError::Conflict) => {
                                    return Err(ArmError::conflict(
                                        "StorageAccountAlreadyTaken",
                                        format!(
                                            "The storage account named {account} is already taken."
                                        ),
                                    ));
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                    }
                    st.storage_account = Some(account);
                    self.record(d, &st).await?;
                }
            }
            "CreateDiagnosticSetting" => {
                if !st.diagnostic_setting {
                    let vault = self.vault().await?;
                    let Some(account) = st.storage_account.clone() else {
                        return Err(ArmError::conflict(
                            "AuditStorageMissing",
                            "The diagnostic setting needs the audit storage account, which could not be created (see CreateAuditStorage).",
                        ));
                    };
                    let account_id = format!(
                        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{account}",
                        d.subscription_id, d.resource_group
                    );
                    let existing = self
                        .app
                        .store
                        .get_diagnostic_setting(&vault.id, DIAGNOSTIC_SETTING)
                        .await?;
                    let properties = json!({
                        "storageAccountId": account_id,
                        "workspaceId": null,
                        "eventHubAuthorizationRuleId": null,
                        "eventHubName": null,
                        "serviceBusRuleId": null,
                        "marketplacePartnerId": null,
                        "logAnalyticsDestinationType": null,
                        "logs": [{"category": "AuditEvent", "categoryGroup": null, "enabled": true,
                                  "retentionPolicy": {"enabled": false, "days": 0}}],
                        "metrics": [],
                    });
                    let entry = self.audit.entry(
                        &vault.id,
                        &format!("{}/providers/microsoft.insights/diagnosticSettings/{DIAGNOSTIC_SETTING}", vault.resource_id),
                        "Microsoft.Insights/diagnosticSettings/write",
                        if existing.is_some() { 200 } else { 201 },
                        self.app.clock.now_ms(),
                    );
                    self.app
                        .store
                        .put_diagnostic_setting(
                            DiagnosticSettingRow {
                                vault_id: vault.id.clone(),
                                name: DIAGNOSTIC_SETTING.into(),
                                storage_account: Some(account),
                                audit_enabled: true,
                                properties_json: properties.to_string(),
                                created: existing
                                    .map_or_else(|| self.app.clock.now(), |e| e.created),
                            },
                            entry,
                        )
                        .await?;
                    st.diagnostic_setting = true;
                    self.record(d, &st).await?;
                }
            }
            "GrantIdentityAccess" => {
                if !st.access_granted {
                    let vault = self.vault().await?;
                    let params = serde_json::from_value(json!({"properties": {"accessPolicies": [{
                        "tenantId": vault.tenant_id,
                        "objectId": d.identity_object_id,
                        "permissions": {"secrets": ["get", "set"], "keys": [], "certificates": [], "storage": []},
                    }]}}))
                    .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
                    // `replace`: exactly Get+Set for this identity, however often it runs.
                    lifecycle::update_access_policy(
                        &self.vault_request(&host),
                        PolicyEdit::parse("replace")?,
                        params,
                    )
                    .await?;
                    st.access_granted = true;
                    self.record(d, &st).await?;
                }
            }
            "StoreChannelIntegrityKey" => {
                if st.cik_version.is_none() {
                    let vault = self.vault().await?;
                    let name = cik_secret_name(&d.id);
                    let version = match self.app.store.get_latest(&vault.id, &name).await? {
                        // Written by an interrupted run: adopt it rather than add a version.
                        Some((s, v)) if s.deleted.is_none() => v.version,
                        Some(_) => {
                            return Err(ArmError::conflict(
                                "ChannelIntegrityKeyDeleted",
                                format!(
                                    "The Channel Integrity Key secret '{name}' is soft-deleted in the vault; recover it, then generate the key again."
                                ),
                            ));
                        }
                        None => self.write_cik(&d, vault, &name).await?,
                    };
                    st.cik_name = Some(name);
                    st.cik_version = Some(version);
                    self.record(d, &st).await?;
                }
            }
            "RestoreIdentity" => self.restore_identity(d, st).await?,
            "RequestSecretPush" => {
                // The server holds no copy of the device secrets: the device pushes them
                // (it asks GET /devices/{id}/keyVault for its vault, then writes what is missing).
                st.secrets_push_requested_at = Some(self.app.clock.now());
                self.record(d, &st).await?;
            }
            "IssueActivationKey" => {
                let vault = self.vault().await?;
                self.issue_key(d, st, &vault, &host).await?;
            }
            _ => unreachable!("every planned step is matched"),
        }
        Ok(())
    }

    /// Brings the device's identity back: a deleted one is made anew for the device resource
    /// (a new object id; the old one's entry leaves the vault's access policies), a disabled
    /// one is enabled. Either way it holds no device credential: the device must be activated
    /// again, and the `DeviceNotActivated` alert says so until it is.
    async fn restore_identity(&self, d: DeviceRow, mut st: DeviceState) -> Result<(), ArmError> {
        let chain = lifecycle::subscription_chain(&d.subscription_id);
        let rid = device_id(&d.subscription_id, &d.resource_group, &d.name);
        let mut d = d;
        if self
            .app
            .store
            .get_principal(&d.identity_object_id)
            .await?
            .is_none()
        {
            let old = d.identity_object_id.clone();
            let m = identities::create_system_assigned(&*self.app.store, &*self.app.clock, &rid)
                .await?;
            let new = m.principal.object_id.clone();
            if new != old {
                if let Ok(vault) = self.vault().await
                    && self
                        .app
                        .store
                        .list_access_policies(&vault.id)
                        .await?
                        .iter()
                        .any(|p| p.object_id == old)
                {
                    let host = vault_host(&self.app);
                    let params = serde_json::from_value(json!({"properties": {"accessPolicies": [{
                        "tenantId": vault.tenant_id,
                        "objectId": old,
                        "permissions": {"secrets": [], "keys": [], "certificates": [], "storage": []},
                    }]}}))
                    .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
                    lifecycle::update_access_policy(
                        &self.vault_request(&host),
                        PolicyEdit::parse("remove")?,
                        params,
                    )
                    .await?;
                }
                self.app.store.set_device_identity(&d.id, &new).await?;
                d.identity_object_id = new;
                self.app
                    .audit
                    .append(self.audit.entry(
                        &chain,
                        &format!("{rid}/identity"),
                        "Microsoft.DataBoxEdge/dataBoxEdgeDevices/identity/write",
                        201,
                        self.app.clock.now_ms(),
                    ))
                    .await?;
            }
            st.access_granted = false;
        }
        if !st.identity_enabled {
            st.identity_enabled = true;
            self.app
                .audit
                .append(self.audit.entry(
                    &chain,
                    &format!("{rid}/identity"),
                    "Microsoft.DataBoxEdge/dataBoxEdgeDevices/identity/enable/action",
                    200,
                    self.app.clock.now_ms(),
                ))
                .await?;
        }
        self.record(d, &st).await
    }

    /// Writes a fresh CIK as the device identity, authorized by its own access policy.
    async fn write_cik(
        &self,
        d: &DeviceRow,
        vault: VaultRow,
        name: &str,
    ) -> Result<String, ArmError> {
        let principal = self
            .app
            .store
            .get_principal(&d.identity_object_id)
            .await?
            .ok_or_else(|| {
                strongbox_domain::DomainError::Internal("device identity is missing".into())
            })?;
        let caller = Caller {
            object_id: principal.object_id,
            tenant_id: principal.tenant_id,
            app_id: principal.client_id,
        };
        let policies = self.app.store.list_access_policies(&vault.id).await?;
        let host = vault_host(&self.app);
        let base_url = format!(
            "https://{}.{}{}",
            vault.name, host.dns_suffix, host.port_suffix
        );
        let grant = authorize(
            Arc::new(vault),
            &VaultAccess::Policies(policies),
            &caller,
            SecretAction::Set,
            Some(name),
        )?;
        let info = RequestInfo {
            operation: Operation::SecretSet,
            base_url,
            api_version: "7.6".into(),
            correlation_id: self.audit.correlation_id.clone(),
            caller_ip: String::new(),
            client_info: "strongbox device provisioning".into(),
            request_uri: format!("/secrets/{name}?api-version=7.6"),
            started: Instant::now(),
        };
        let value = URL_SAFE_NO_PAD.encode(strongbox_crypto::random_bytes::<32>());
        let params = serde_json::from_value(json!({
            "value": value,
            "contentType": "application/vnd.strongbox.channel-integrity-key",
        }))
        .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
        let bundle = self.app.secrets.set(&grant, &info, name, params).await?;
        Ok(bundle.id.rsplit('/').next().unwrap_or_default().to_string())
    }

    async fn issue_key(
        &self,
        mut d: DeviceRow,
        mut st: DeviceState,
        vault: &VaultRow,
        host: &strongbox_domain::vault_lifecycle::VaultHost,
    ) -> Result<(), ArmError> {
        let now = self.app.clock.now();
        let secret = URL_SAFE_NO_PAD.encode(strongbox_crypto::random_bytes::<32>());
        let enrollment = EnrollmentRow {
            id: uuid::Uuid::new_v4().to_string(),
            device_id: d.id.clone(),
            secret_hash: ActivationKey::secret_hash(&secret),
            expires: now + KEY_LIFETIME_SECS,
            used_at: None,
            created: now,
        };
        let tenant = vault.tenant_id.clone();
        let authority = self.app.tokens.authority().to_string();
        let key = ActivationKey {
            v: 1,
            device_id: d.id.clone(),
            resource_id: device_id(&d.subscription_id, &d.resource_group, &d.name),
            tenant_id: tenant,
            activation_endpoint: format!("{authority}/devices/activate"),
            authority,
            vault_name: vault.name.clone(),
            vault_uri: format!(
                "https://{}.{}{}/",
                vault.name, host.dns_suffix, host.port_suffix
            ),
            enrollment_id: enrollment.id.clone(),
            enrollment_secret: secret,
            exp: enrollment.expires,
        }
        .encode();
        self.app
            .store
            .replace_enrollment(enrollment.clone())
            .await?;
        KEYS.lock()
            .expect("lock")
            .get_or_insert_with(HashMap::new)
            .insert(self.op.id.clone(), (d.id.clone(), key, enrollment.expires));
        st.key_generated_at = Some(now);
        let entry = self.audit.entry(
            &lifecycle::subscription_chain(&d.subscription_id),
            &format!("{}/activationKeys/{}", d.resource_id, enrollment.id),
            "Microsoft.DataBoxEdge/dataBoxEdgeDevices/activationKey/issue/action",
            200,
            self.app.clock.now_ms(),
        );
        d.state_json = st.json();
        self.app.store.update_device(&d).await?;
        self.app.audit.append(entry).await?;
        Ok(())
    }
}

/// Whether an operation is a key generation (its last step issues the key).
fn issues_key(op: &DeviceOperationRow) -> bool {
    serde_json::from_str::<Value>(&op.body_json)
        .ok()
        .and_then(|b| b["steps"].as_array().cloned())
        .is_some_and(|steps| steps.iter().any(|x| x["name"] == "IssueActivationKey"))
}

/// The status of a device operation. Reading the device is enough for a sync or a recovery;
/// a key generation (whose status carries the activation key once it succeeded) also needs the
/// permission to generate keys.
pub(super) async fn operation_status(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((sub, rg, name, op_id))) = path else {
        return ArmError::bad_request("The request path is malformed.").into_response();
    };
    let a = Audited {
        app: &app,
        ctx: &ctx,
        chain: subscription_chain(&app, &sub).await,
        resource_id: format!(
            "{}/operationsStatus/{}",
            device_id(&clip(&sub), &clip(&rg), &clip(&name)),
            clip(&op_id)
        ),
        operation: "Microsoft.DataBoxEdge/dataBoxEdgeDevices/operationsStatus/read",
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        let rid = device_id(&sub, &rg, &name);
        require(&app, caller, &rid, actions::READ).await?;
        let device = find(&app, &sub, &rg, &name).await?;
        let op = app
            .store
            .get_device_operation(&op_id)
            .await?
            .filter(|o| o.device_id == device.id)
            .ok_or_else(|| {
                ArmError::not_found("OperationNotFound", "The operation was not found.")
            })?;
        if issues_key(&op) {
            require(&app, caller, &rid, actions::GENERATE_KEY).await?;
        }
        let op = if super::sync::expire(&app, &device, &op).await? {
            app.store
                .get_device_operation(&op_id)
                .await?
                .ok_or_else(|| {
                    ArmError::not_found("OperationNotFound", "The operation was not found.")
                })?
        } else {
            op
        };
        let mut body: Value = serde_json::from_str(&op.body_json)
            .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
        if op.status == "Succeeded"
            && issues_key(&op)
            && body.get("properties").is_none_or(Value::is_null)
        {
            let st = DeviceState::of(&device);
            body["properties"] = match held_key(&op.id, app.clock.now()) {
                Some(k) => json!({"activationKey": k, "vaultName": st.vault_name}),
                // The server keeps only the hash of a key's secret, so the text it showed is
                // gone after a restart; the key itself stays valid until used or expired.
                None => json!({
                    "vaultName": st.vault_name,
                    "message": "The key is no longer shown (it expired, or the server restarted since it was issued; a key issued before a restart still activates the device until it expires). To get a key to paste, generate a new one.",
                }),
            };
        }
        Ok(Done::response(
            (StatusCode::OK, axum::Json(body)).into_response(),
        ))
    }
    .await;
    a.finish(outcome).await
}
