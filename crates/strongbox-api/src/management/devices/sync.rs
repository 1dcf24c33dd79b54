//! `POST …/syncSecrets`: an administrator asks the device to push its secrets again. The
//! server holds no copy of them, so the operation only records the request; the device sees it
//! on its next `GET /devices/{id}/keyVault`, pushes, and reports the versions it wrote at
//! `POST /devices/{id}/secretsSynced`, which completes the operation. A device that does not
//! report within [`SYNC_TIMEOUT_SECS`] (by the server's clock, checked when the status is read)
//! fails the operation with a message that says what to check.

use super::provision::op_body;
use super::*;
use axum::http::{HeaderMap, HeaderValue, header};
use strongbox_domain::Caller;
use strongbox_identity::Plane;
use strongbox_store::{DeviceOperationRow, DeviceReportRow};

pub const SYNC: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/syncSecrets/action";
const SELF_REPORT: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/secretsSynced/device/action";
/// How long the device has to report a requested sync.
pub const SYNC_TIMEOUT_SECS: i64 = 600;
const WAIT_STEP: &str = "DevicePushesSecrets";

fn steps(wait: &str) -> Vec<(String, String)> {
    vec![
        ("RequestSecretPush".to_string(), "Done".to_string()),
        (WAIT_STEP.to_string(), wait.to_string()),
    ]
}

/// The pending request, as the device sees it on `GET /devices/{id}/keyVault`.
pub(super) fn pending(st: &DeviceState) -> Value {
    match (&st.sync_request_id, st.sync_requested_at) {
        (Some(id), Some(at)) => json!({"id": id, "requestedAt": rfc3339(at * 1000)}),
        _ => Value::Null,
    }
}

/// The request takes no properties (an empty body or `{}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

pub(super) async fn sync_secrets(
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
        operation: SYNC,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, SYNC).await?;
        if let Ok(b) = &raw
            && !b.iter().all(u8::is_ascii_whitespace)
        {
            let _: EmptyBody = json_body(&raw, MAX_AUTHZ_BODY_BYTES)?;
        }
        let device = find(&app, &sub, &rg, &name).await?;
        let mut st = DeviceState::of(&device);
        if st.activated_at.is_none() {
            return Err(ArmError::conflict(
                "DeviceNotActivated",
                "The device is not activated yet: activate it (strongbox agent activate) first; activation pushes its secrets.",
            ));
        }
        match super::recover::health(&app, &device).await?.vault {
            super::recover::VaultNow::Live(_) => {}
            _ => {
                return Err(ArmError::conflict(
                    "KeyVaultDeleted",
                    format!(
                        "The device's vault is deleted: recover it first (strongbox device recover-vault --name {}).",
                        device.name
                    ),
                ));
            }
        }
        let op_id = uuid::Uuid::new_v4().to_string();
        let now = app.clock.now();
        let body = op_body(&op_id, "InProgress", &steps("Running"), None);
        let op = DeviceOperationRow {
            id: op_id.clone(),
            device_id: device.id.clone(),
            status: "InProgress".into(),
            body_json: body.to_string(),
            created: now,
            updated: now,
        };
        app.store.put_device_operation(&op).await?;
        // A newer request replaces an older one: the device's next report answers it.
        if let Some(old) = st.sync_request_id.take() {
            finish_op(&app, &old, &device.id, "Canceled", Some(&ArmError::conflict(
                "SyncSuperseded",
                "A newer sync request replaced this one.",
            )), None)
            .await?;
        }
        st.sync_request_id = Some(op_id.clone());
        st.sync_requested_at = Some(now);
        let mut d = device.clone();
        d.state_json = st.json();
        app.store.update_device(&d).await?;
        let status_url = format!(
            "{}{}/operationsStatus/{op_id}?api-version={}",
            ctx.base_url,
            device_id(&sub, &device.resource_group, &device.name),
            ctx.query("api-version").unwrap_or_default()
        );
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

async fn finish_op(
    app: &AppState,
    op_id: &str,
    device_id: &str,
    status: &str,
    error: Option<&ArmError>,
    properties: Option<Value>,
) -> Result<(), ArmError> {
    let Some(mut op) = app
        .store
        .get_device_operation(op_id)
        .await?
        .filter(|o| o.device_id == device_id && o.status == "InProgress")
    else {
        return Ok(());
    };
    let wait = if status == "Succeeded" {
        "Done"
    } else {
        "Failed"
    };
    let mut body = op_body(op_id, status, &steps(wait), error);
    if let Some(p) = properties {
        body["properties"] = p;
    }
    op.status = status.into();
    op.body_json = body.to_string();
    op.updated = app.clock.now();
    app.store.put_device_operation(&op).await?;
    Ok(())
}

/// Fails a sync operation the device has not answered in time (called when its status is read,
/// so the server's clock, not a timer, decides).
pub(super) async fn expire(
    app: &AppState,
    device: &DeviceRow,
    op: &DeviceOperationRow,
) -> Result<bool, ArmError> {
    let st = DeviceState::of(device);
    if op.status != "InProgress"
        || st.sync_request_id.as_deref() != Some(op.id.as_str())
        || app.clock.now() < op.created + SYNC_TIMEOUT_SECS
    {
        return Ok(false);
    }
    let e = ArmError::conflict(
        "DeviceDidNotRespond",
        format!(
            "The device did not report a sync within {} minutes: check that `strongbox agent run` is running on the device and can reach the service, or run `strongbox agent sync-secrets` there.",
            SYNC_TIMEOUT_SECS / 60
        ),
    );
    finish_op(app, &op.id, &device.id, "Failed", Some(&e), None).await?;
    let mut st = st;
    st.sync_request_id = None;
    st.sync_requested_at = None;
    let mut d = device.clone();
    d.state_json = st.json();
    app.store.update_device(&d).await?;
    Ok(true)
}

/// The caller of a device-authenticated call: a vault-plane token, verified, or None.
pub(super) async fn device_token_caller(app: &AppState, headers: &HeaderMap) -> Option<Caller> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))?;
    app.tokens.verify(token, Plane::Vault).await.ok()
}

/// The device behind a device-authenticated call: the caller must be the device's own
/// identity. Unknown device and someone else's token answer alike (the audit record still goes
/// to the named device's chain, so its owners see the attempt).
pub(super) fn device_caller(
    caller: Option<&Caller>,
    target: Option<DeviceRow>,
) -> Result<DeviceRow, ArmError> {
    let denied = || {
        ArmError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "A valid token of the device's own identity is required.",
        )
    };
    let caller = caller.ok_or_else(denied)?;
    target
        .filter(|d| d.identity_object_id == caller.object_id)
        .ok_or_else(denied)
}

/// Audits a device-authenticated call under the caller its vault token names (the management
/// context sees no management caller there), then answers; fail closed like every other call.
pub(super) async fn finish_device_call(
    app: &AppState,
    ctx: &ArmCtx,
    caller: Option<&Caller>,
    chain: &str,
    resource_id: &str,
    operation: &str,
    outcome: Result<Response, ArmError>,
) -> Response {
    let response = outcome.unwrap_or_else(|e| e.into_response());
    let entry = strongbox_domain::audit::management_entry(
        chain,
        resource_id,
        operation,
        caller,
        response.status().as_u16(),
        &ctx.correlation_id,
        &ctx.caller_ip,
        app.clock.now_ms(),
    );
    if let Err(e) = app.audit.append(entry).await {
        return ArmError::from(e).into_response();
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyncedBody {
    /// The administrator's request this sync answers; absent for the device's own syncs.
    #[serde(default)]
    request_id: Option<String>,
    secrets: Vec<SyncedSecret>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyncedSecret {
    name: String,
    version: String,
    outcome: String,
}

/// What the agent may say it did to a secret.
const OUTCOMES: [&str; 4] = ["in sync", "read", "restored", "updated"];

/// `POST /devices/{id}/secretsSynced`, by the device as itself, after every sync: the versions of
/// its secrets now in the vault (kept as the device's last report, against which the vault is
/// checked for stale secrets), and, with `requestId`, the answer to an administrator's request.
/// A refused report changes nothing.
pub(super) async fn secrets_synced(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let mut chain = lifecycle::UNKNOWN_SUBSCRIPTION_CHAIN.to_string();
    let mut resource_id = "/devices/secretsSynced".to_string();
    let caller = device_token_caller(&app, &headers).await;
    let outcome = async {
        let Ok(Path(id)) = path else {
            return Err(ArmError::bad_request("The request path is malformed."));
        };
        let target = app.store.get_device_by_id(&clip(&id)).await?;
        if let Some(t) = &target {
            chain = lifecycle::subscription_chain(&t.subscription_id);
            resource_id = format!("{}/secretsSynced", t.resource_id);
        }
        let d = device_caller(caller.as_ref(), target)?;
        let b: SyncedBody = json_body(&raw, MAX_AUTHZ_BODY_BYTES)?;
        let mut st = DeviceState::of(&d);
        let names = [
            st.cik_name
                .clone()
                .unwrap_or_else(|| strongbox_domain::devices::cik_secret_name(&d.id)),
            strongbox_domain::devices::disk_recovery_key_name(&d.name),
            strongbox_domain::devices::bmc_password_name(&d.name),
        ];
        if b.secrets.len() > names.len()
            || b.request_id.as_ref().is_some_and(|r| r.len() > 64)
        {
            return Err(ArmError::bad_request("The report is too large."));
        }
        for s in &b.secrets {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&s.name)) {
                return Err(ArmError::bad_request(
                    "The report names a secret that is not one of the device's own.",
                ));
            }
            if s.version.len() > 64 || !s.version.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ArmError::bad_request(
                    "A reported version must be at most 64 hexadecimal digits.",
                ));
            }
            if !OUTCOMES.contains(&s.outcome.as_str()) {
                return Err(ArmError::bad_request(format!(
                    "A reported outcome must be one of: {}.",
                    OUTCOMES.join(", ")
                )));
            }
        }
        if let Some(request) = &b.request_id
            && st.sync_request_id.as_deref() != Some(request.as_str())
        {
            return Err(ArmError::conflict(
                "NoSuchSyncRequest",
                "No sync request with this id is pending (it completed, timed out or was replaced); report without requestId.",
            ));
        }
        let done_at = app.clock.now();
        let reported: Vec<super::recover::ReportedSecret> = b
            .secrets
            .iter()
            .map(|s| super::recover::ReportedSecret {
                name: s.name.clone(),
                version: s.version.to_ascii_lowercase(),
            })
            .collect();
        app.store
            .put_device_report(DeviceReportRow {
                device_id: d.id.clone(),
                reported_at: done_at,
                secrets_json: serde_json::to_string(&reported)
                    .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?,
            })
            .await?;
        if let Some(request) = &b.request_id {
            finish_op(
                &app,
                request,
                &d.id,
                "Succeeded",
                None,
                Some(json!({"completedAt": rfc3339(done_at * 1000), "secrets": b.secrets})),
            )
            .await?;
            st.sync_request_id = None;
            st.sync_requested_at = None;
            let mut d = d.clone();
            d.state_json = st.json();
            app.store.update_device(&d).await?;
        }
        // The report may have cleared (or raised) a staleness alert: record it now.
        super::recover::alerts(&app, &d).await?;
        Ok(
            (
                StatusCode::OK,
                axum::Json(json!({
                    "status": "Succeeded",
                    "answered": b.request_id.is_some(),
                    "reportedAt": rfc3339(done_at * 1000),
                })),
            )
                .into_response(),
        )
    }
    .await;
    finish_device_call(
        &app,
        &ctx,
        caller.as_ref(),
        &chain,
        &resource_id,
        SELF_REPORT,
        outcome,
    )
    .await
}
