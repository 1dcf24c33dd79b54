//! `POST …/syncSecrets`: an administrator asks the device to push its secrets again. The
//! server holds no copy of them, so the operation only records the request; the device sees it
//! on its next `GET /devices/{id}/keyVault`, pushes, and reports the versions it wrote at
//! `POST /devices/{id}/secretsSynced`, which completes the operation. A device that does not
//! report within [`SYNC_TIMEOUT_SECS`] (by the server's clock, checked when the status is read)
//! fails the operation with a message that says what to check.

use super::provision::op_body;
use super::*;
use axum::http::{HeaderMap, HeaderValue, header};
use strongbox_identity::Plane;
use strongbox_store::DeviceOperationRow;

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

/// The device behind a device-authenticated call: the bearer must be a vault token of the
/// device's own identity. Unknown device and someone else's token answer alike.
pub(super) async fn device_caller(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<DeviceRow, ArmError> {
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
    app.store
        .get_device_by_id(&clip(id))
        .await?
        .filter(|d| d.identity_object_id == caller.object_id)
        .ok_or_else(denied)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyncedBody {
    request_id: String,
    secrets: Vec<SyncedSecret>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyncedSecret {
    name: String,
    version: String,
    outcome: String,
}

/// `POST /devices/{id}/secretsSynced`, by the device as itself: the sync it was asked for is done.
pub(super) async fn secrets_synced(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let mut chain = lifecycle::UNKNOWN_SUBSCRIPTION_CHAIN.to_string();
    let mut resource_id = "/devices/secretsSynced".to_string();
    let outcome = async {
        let Ok(Path(id)) = path else {
            return Err(ArmError::bad_request("The request path is malformed."));
        };
        let d = device_caller(&app, &headers, &id).await?;
        chain = lifecycle::subscription_chain(&d.subscription_id);
        resource_id = format!("{}/secretsSynced", d.resource_id);
        let b: SyncedBody = json_body(&raw, MAX_AUTHZ_BODY_BYTES)?;
        if b.secrets.len() > 16
            || b.secrets.iter().any(|s| {
                s.name.len() > 127 || s.version.len() > 64 || s.outcome.len() > 32
            })
        {
            return Err(ArmError::bad_request("The report is too large."));
        }
        let mut st = DeviceState::of(&d);
        if st.sync_request_id.as_deref() != Some(b.request_id.as_str()) {
            return Err(ArmError::conflict(
                "NoSuchSyncRequest",
                "No sync request with this id is pending (it completed, timed out or was replaced).",
            ));
        }
        let done_at = app.clock.now();
        finish_op(
            &app,
            &b.request_id,
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
        Ok(Done::response(
            (StatusCode::OK, axum::Json(json!({"status": "Succeeded"}))).into_response(),
        ))
    }
    .await;
    ctx.finish(&app, &chain, &resource_id, SELF_REPORT, outcome)
        .await
}
