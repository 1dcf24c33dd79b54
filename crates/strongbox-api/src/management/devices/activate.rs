//! `POST /devices/activate` on the authority: a device redeems its activation key, once, and
//! registers its own public key (a P-256 JWK) as its identity's credential. From then on the
//! device gets tokens by signed client assertion with its private key; no shared secret is ever
//! handed out. The key's enrolment secret is the only proof asked for: it is compared with the
//! stored hash in constant time, must be unexpired and unused, and is burnt by a conditional
//! update so two racing uses cannot both win.

use super::*;
use strongbox_domain::devices::{ActivationKey, cik_secret_name};
use strongbox_domain::vault_lifecycle::UNKNOWN_SUBSCRIPTION_CHAIN;
use strongbox_identity::credentials;

/// Largest activation request body.
const MAX_ACTIVATE_BODY: usize = 16 * 1024;
/// Device credentials last ten years: the device replaces it by activating again.
const CREDENTIAL_DAYS: i64 = 3650;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActivateBody {
    activation_key: String,
    public_key: Value,
}

fn unauthorized(message: &str) -> ArmError {
    ArmError::new(StatusCode::UNAUTHORIZED, "InvalidActivationKey", message)
}

pub(super) async fn activate(
    State(app): State<Arc<AppState>>,
    ctx: ArmCtx,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    // Until the key names a real device, the record goes to the shared unknown chain.
    let mut chain = UNKNOWN_SUBSCRIPTION_CHAIN.to_string();
    let mut resource_id = "/devices/activate".to_string();
    let outcome = async {
        let b: ActivateBody = json_body(&raw, MAX_ACTIVATE_BODY)?;
        let key = ActivationKey::parse(&b.activation_key)
            .map_err(|m| ArmError::bad_request(m.to_string()))?;
        let Some(enrollment) = app.store.get_enrollment(&key.enrollment_id).await? else {
            return Err(unauthorized(
                "The activation key is not valid: it was replaced by a newer key, or its device was deleted. Generate a new key.",
            ));
        };
        let Some(device) = app.store.get_device_by_id(&enrollment.device_id).await? else {
            return Err(unauthorized("The activation key's device no longer exists."));
        };
        chain = lifecycle::subscription_chain(&device.subscription_id);
        resource_id = device_id(&device.subscription_id, &device.resource_group, &device.name);
        let secret_ok = strongbox_crypto::constant_time_eq(
            &ActivationKey::secret_hash(&key.enrollment_secret),
            &enrollment.secret_hash,
        );
        // The key must be for this very device resource.
        if !secret_ok
            || key.device_id != device.id
            || !key.resource_id.eq_ignore_ascii_case(&device.resource_id)
        {
            return Err(unauthorized("The activation key is not valid."));
        }
        if enrollment.used_at.is_some() {
            return Err(ArmError::conflict(
                "ActivationKeyAlreadyUsed",
                "The activation key was already used; generate a new key to activate again.",
            ));
        }
        let now = app.clock.now();
        if now >= enrollment.expires {
            return Err(ArmError::bad_request_code(
                "ActivationKeyExpired",
                "The activation key has expired; generate a new key.",
            ));
        }
        let mut st = DeviceState::of(&device);
        if !st.identity_enabled {
            return Err(ArmError::conflict(
                "IdentityDisabled",
                "The device's identity is disabled; generate a new activation key.",
            ));
        }
        let vault_name = st.vault_name.clone().unwrap_or_default();
        let vault = app
            .store
            .get_vault_by_name(&vault_name)
            .await?
            .filter(|v| v.deleted.is_none() && v.subscription_id == device.subscription_id)
            .ok_or_else(|| {
                ArmError::conflict(
                    "KeyVaultNotFound",
                    format!(
                        "The device's vault '{vault_name}' was deleted after the key was generated; recover the vault (Recover key vault), then generate a new key."
                    ),
                )
            })?;
        if !b.public_key.is_object() {
            return Err(ArmError::bad_request("publicKey must be a JWK object."));
        }
        if b.public_key.get("kty").and_then(Value::as_str) != Some("EC")
            || b.public_key.get("crv").and_then(Value::as_str) != Some("P-256")
        {
            return Err(ArmError::bad_request(
                "publicKey must be an EC P-256 public JWK.",
            ));
        }
        let principal = app
            .store
            .get_principal(&device.identity_object_id)
            .await?
            .ok_or_else(|| {
                strongbox_domain::DomainError::Internal("device identity is missing".into())
            })?;
        // Register first (this validates the key), burn the enrolment second: a bad key does
        // not spend the activation key, and a lost race removes the credential again.
        let key_id = format!("device-{}", key.enrollment_id);
        let credential = credentials::add_public_key(
            &*app.store,
            &*app.clock,
            &principal,
            &b.public_key.to_string(),
            Some(&key_id),
            CREDENTIAL_DAYS,
        )
        .await?;
        if !app.store.consume_enrollment(&enrollment.id, now).await? {
            let _ = app
                .store
                .delete_key_credential(&principal.object_id, &credential.key_id)
                .await;
            return Err(ArmError::conflict(
                "ActivationKeyAlreadyUsed",
                "The activation key was already used; generate a new key to activate again.",
            ));
        }
        // One device instance at a time: an earlier activation's key stops working.
        for c in app.store.list_key_credentials(&principal.object_id).await? {
            if c.key_id != credential.key_id && c.key_id.starts_with("device-") {
                app.store
                    .delete_key_credential(&principal.object_id, &c.key_id)
                    .await?;
            }
        }
        st.status = "Online".into();
        st.activated_at = Some(now);
        let mut d = device.clone();
        d.state_json = st.json();
        app.store.update_device(&d).await?;
        let host = vault_host(&app);
        Ok(Done::response(
            (
                StatusCode::OK,
                axum::Json(json!({
                    "deviceId": device.id,
                    "resourceId": resource_id,
                    "tenantId": principal.tenant_id,
                    "clientId": principal.client_id,
                    "principalId": principal.object_id,
                    "keyId": credential.key_id,
                    "authority": app.tokens.authority(),
                    "tokenEndpoint": app.tokens.token_endpoint(&principal.tenant_id),
                    "vaultScope": format!("{}/.default", app.tokens.audience()),
                    "vaultName": vault.name,
                    "vaultUri": format!("https://{}.{}{}/", vault.name, host.dns_suffix, host.port_suffix),
                    "channelIntegrityKeyName": st.cik_name.clone().unwrap_or_else(|| cik_secret_name(&device.id)),
                    "caCertificate": app.ca_pem,
                })),
            )
                .into_response(),
        ))
    }
    .await;
    ctx.finish(&app, &chain, &resource_id, actions::ACTIVATE, outcome)
        .await
}
