//! `POST …/sendSecret`: the CIK channel (issue 4 point 5). A customer secret meant for the
//! device is sealed under a key derived from the device's CIK
//! ([`strongbox_crypto::cik`]) and stored in the device's vault as an envelope; the device
//! opens it with its own CIK copy (`strongbox agent receive`). The vault value, and anything on
//! the way, is ciphertext to whoever lacks the CIK. The server reads the CIK the way it wrote it
//! at provisioning: through the device identity's own Get grant on the vault.

use super::recover::{VaultNow, health};
use super::*;
use std::time::Instant;
use strongbox_domain::audit::{Operation, RequestInfo};
use strongbox_domain::devices::{bmc_password_name, cik_secret_name, disk_recovery_key_name};
use strongbox_domain::{Caller, SecretAction, VaultAccess, authorize};

pub const SEND: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices/sendSecret/action";
/// Tag on the vault secret naming its envelope's sequence (the next one must be larger).
const ENVELOPE_SEQ_TAG: &str = "envelopeSequence";
/// Largest customer secret sent over the channel.
const MAX_VALUE: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendBody {
    secret_name: String,
    value: String,
    /// Given: `value` is the base64 (standard alphabet) of any bytes, sealed with this content
    /// type. Absent: `value` is text.
    content_type: Option<String>,
}

/// The bytes to seal and their content type (`None`: text, the `sbcik2` form).
fn payload(b: &SendBody) -> Result<(zeroize::Zeroizing<Vec<u8>>, Option<&str>), ArmError> {
    let bytes = match b.content_type.as_deref() {
        None => zeroize::Zeroizing::new(b.value.as_bytes().to_vec()),
        Some(ct) => {
            if ct.is_empty()
                || ct.len() > strongbox_crypto::cik::MAX_CONTENT_TYPE
                || !ct.bytes().all(|c| (0x20..0x7f).contains(&c))
            {
                return Err(ArmError::bad_request(format!(
                    "contentType must be 1 to {} printable ASCII characters.",
                    strongbox_crypto::cik::MAX_CONTENT_TYPE
                )));
            }
            use base64::Engine;
            zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(&b.value)
                    .map_err(|_| {
                        ArmError::bad_request(
                            "value must be base64 (standard alphabet, padded) when contentType is given.",
                        )
                    })?,
            )
        }
    };
    if bytes.is_empty() || bytes.len() > MAX_VALUE {
        return Err(ArmError::bad_request(format!(
            "value must be 1 to {MAX_VALUE} bytes."
        )));
    }
    Ok((bytes, b.content_type.as_deref()))
}

pub(super) async fn send_secret(
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
        operation: SEND,
    };
    let outcome = async {
        let caller = ctx.check(ApiVersions::Dates)?;
        require(&app, caller, &a.resource_id, SEND).await?;
        let b: SendBody = json_body(&raw, MAX_AUTHZ_BODY_BYTES)?;
        let (value, value_type) = payload(&b)?;
        let device = find(&app, &sub, &rg, &name).await?;
        let st = DeviceState::of(&device);
        let cik_name = st.cik_name.clone().unwrap_or_else(|| cik_secret_name(&device.id));
        if [cik_name.as_str(), &disk_recovery_key_name(&device.name), &bmc_password_name(&device.name)]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&b.secret_name))
        {
            return Err(ArmError::bad_request(
                "secretName names one of the device's own secrets; choose another name.",
            ));
        }
        let h = health(&app, &device).await?;
        let VaultNow::Live(vault) = h.vault else {
            return Err(ArmError::conflict(
                "KeyVaultNotAvailable",
                "The device's vault is missing or deleted: recover it first (strongbox device recover-vault).",
            ));
        };
        if !h.access {
            return Err(ArmError::conflict(
                "KeyVaultAccessLost",
                "The device identity lacks Get and Set on its vault: strongbox device recover-access.",
            ));
        }
        let principal = app
            .store
            .get_principal(&device.identity_object_id)
            .await?
            .ok_or_else(|| strongbox_domain::DomainError::Internal("device identity is missing".into()))?;
        let as_device = Caller {
            object_id: principal.object_id,
            tenant_id: principal.tenant_id,
            app_id: principal.client_id,
        };
        let policies = app.store.list_access_policies(&vault.id).await?;
        let host = vault_host(&app);
        let base_url = format!("https://{}.{}{}", vault.name, host.dns_suffix, host.port_suffix);
        let vault = Arc::new(vault);
        let access = VaultAccess::Policies(policies);
        let info = |op: Operation, n: &str| RequestInfo {
            operation: op,
            base_url: base_url.clone(),
            api_version: "7.6".into(),
            correlation_id: ctx.audit_ctx().correlation_id,
            caller_ip: String::new(),
            client_info: "strongbox device CIK channel".into(),
            request_uri: format!("/secrets/{n}?api-version=7.6"),
            started: Instant::now(),
        };
        let grant = authorize(vault.clone(), &access, &as_device, SecretAction::Get, Some(&cik_name))?;
        let cik = app
            .secrets
            .get(&grant, &info(Operation::SecretGet, &cik_name), &cik_name, None)
            .await
            .map_err(|_| {
                ArmError::conflict(
                    "ChannelIntegrityKeyMissing",
                    "The device's Channel Integrity Key is not in its vault: strongbox device sync-secrets restores it.",
                )
            })?;
        let cik = zeroize::Zeroizing::new(
            cik.value
                .as_deref()
                .and_then(|v| {
                    use base64::Engine;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).ok()
                })
                .ok_or_else(|| strongbox_domain::DomainError::Internal("the CIK is malformed".into()))?,
        );
        let version = strongbox_crypto::random_hex_id();
        // Each envelope under a name carries a larger sequence than the one before, so the
        // device can refuse an older one put back (a replay).
        let previous = match app.store.get_latest(&vault.id, &b.secret_name).await? {
            Some((_, v)) => v
                .tags_json
                .as_deref()
                .and_then(|t| serde_json::from_str::<BTreeMap<String, String>>(t).ok())
                .and_then(|t| t.get(ENVELOPE_SEQ_TAG).and_then(|s| s.parse::<u64>().ok()))
                .unwrap_or(0),
            None => 0,
        };
        let seq = u64::try_from(app.clock.now_ms())
            .unwrap_or(0)
            .max(previous.saturating_add(1));
        let label = strongbox_crypto::cik::Label {
            device_id: &device.id,
            name: &b.secret_name,
            version: &version,
            seq,
        };
        let envelope = match value_type {
            None => strongbox_crypto::cik::seal(&cik, &label, &value),
            Some(ct) => strongbox_crypto::cik::seal_typed(&cik, &label, ct, &value)
                .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?,
        };
        let grant = authorize(vault.clone(), &access, &as_device, SecretAction::Set, Some(&b.secret_name))?;
        let params = serde_json::from_value(json!({
            "value": envelope,
            "contentType": strongbox_crypto::cik::CONTENT_TYPE,
            "tags": {"deviceId": device.id, "envelopeVersion": version, ENVELOPE_SEQ_TAG: seq.to_string()},
        }))
        .map_err(|e| strongbox_domain::DomainError::Internal(e.to_string()))?;
        let bundle = app
            .secrets
            .set(&grant, &info(Operation::SecretSet, &b.secret_name), &b.secret_name, params)
            .await?;
        Ok(Done::response(
            (
                StatusCode::OK,
                axum::Json(json!({
                    "secretName": b.secret_name,
                    "vaultName": vault.name,
                    "secretVersion": bundle.id.rsplit('/').next().unwrap_or_default(),
                    "envelopeVersion": version,
                    "envelopeSequence": seq,
                    "contentType": strongbox_crypto::cik::CONTENT_TYPE,
                    "valueContentType": value_type,
                })),
            )
                .into_response(),
        ))
    }
    .await;
    a.finish(outcome).await
}
