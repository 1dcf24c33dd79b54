//! Dev mode: on first start a tenant, a vault named `dev` and an admin service principal with
//! every secret permission on it; the credentials go to `{data_dir}/dev-credentials.json` (0600).
//! Later starts reuse all of it (and rewrite the URLs, in case the port changed).

use crate::Config;
use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::Path;
use strongbox_crypto::Keyring;
use strongbox_domain::vaults::{NewVault, create_vault, set_policy};
use strongbox_domain::{Clock, Permission};
use strongbox_identity::{
    NewServicePrincipal, add_client_secret, create_service_principal, create_tenant,
};
use strongbox_store::{RoleAssignmentRow, Store, SubscriptionRow};

#[derive(Clone, Serialize, Deserialize)]
pub struct DevCredentials {
    pub tenant_id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub client_id: String,
    pub client_secret: String,
    pub authority: String,
    pub vault_url: String,
    pub ca_cert: String,
    /// A person: the dev user's principal name and password.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub password: String,
}

impl std::fmt::Debug for DevCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCredentials")
            .field("tenant_id", &self.tenant_id)
            .field("subscription_id", &self.subscription_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .field("vault_url", &self.vault_url)
            .finish()
    }
}

const DEV_VAULT: &str = "dev";
const DEV_RESOURCE_GROUP: &str = "strongbox-dev";
const ADMIN_LIFETIME_DAYS: i64 = 365;
const DEV_USER: &str = "dev@strongbox.localhost";

async fn meta_string(store: &dyn Store, key: &str) -> anyhow::Result<Option<String>> {
    Ok(store
        .get_meta(key)
        .await?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

pub async fn dev(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
    config: &Config,
    authority: &str,
    port_suffix: &str,
    ca_cert: &Path,
) -> anyhow::Result<DevCredentials> {
    let tenant_id = match meta_string(store, "dev_tenant").await? {
        Some(t) => t,
        None => {
            let t = create_tenant(store, "Strongbox dev").await?;
            store
                .put_meta_if_absent("dev_tenant", t.id.as_bytes())
                .await?;
            t.id
        }
    };
    let subscription_id = match meta_string(store, "dev_subscription").await? {
        Some(s) => s,
        None => {
            let sub = SubscriptionRow {
                id: uuid::Uuid::new_v4().to_string(),
                tenant_id: tenant_id.clone(),
                display_name: "Strongbox dev".into(),
            };
            store.insert_subscription(sub.clone()).await?;
            store
                .put_meta_if_absent("dev_subscription", sub.id.as_bytes())
                .await?;
            sub.id
        }
    };
    let vault = match store.get_vault_by_name(DEV_VAULT).await? {
        Some(v) => v,
        None => {
            create_vault(
                store,
                clock,
                NewVault {
                    name: DEV_VAULT,
                    tenant_id: &tenant_id,
                    subscription_id: &subscription_id,
                    resource_group: DEV_RESOURCE_GROUP,
                    location: "local",
                    retention_days: 90,
                    purge_protection: false,
                    enable_rbac: false,
                },
            )
            .await?
        }
    };
    let path = config.data_dir.join("dev-credentials.json");
    let previous: Option<DevCredentials> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let previous_user = previous
        .as_ref()
        .map(|p| (p.user.clone(), p.password.clone()));
    let admin_client = meta_string(store, "dev_admin_client_id").await?;
    let (client_id, client_secret) = match (admin_client, previous) {
        (Some(id), Some(prev)) if prev.client_id == id => (id, prev.client_secret),
        (Some(id), _) => {
            // The credentials file is gone: issue the admin a new client secret.
            let principal = store
                .get_principal_by_client_id(&tenant_id, &id)
                .await?
                .context("the dev admin principal is missing from the store")?;
            let secret =
                add_client_secret(store, keyring, clock, &principal, ADMIN_LIFETIME_DAYS).await?;
            (id, secret.expose_secret().to_string())
        }
        (None, _) => {
            let (principal, secret) = create_service_principal(
                store,
                keyring,
                clock,
                NewServicePrincipal {
                    tenant_id: &tenant_id,
                    display_name: "strongbox-dev-admin",
                    secret_lifetime_days: ADMIN_LIFETIME_DAYS,
                },
            )
            .await?;
            set_policy(store, &vault, &principal.object_id, &Permission::ALL).await?;
            // Owner of the dev subscription: may manage vaults, locks and role assignments.
            store
                .insert_role_assignment(RoleAssignmentRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    scope: format!("/subscriptions/{subscription_id}"),
                    role_definition_id: strongbox_domain::rbac::OWNER.into(),
                    principal_id: principal.object_id.clone(),
                    created: clock.now(),
                })
                .await?;
            store
                .put_meta_if_absent("dev_admin_client_id", principal.client_id.as_bytes())
                .await?;
            (principal.client_id, secret.expose_secret().to_string())
        }
    };
    let (user, password) = dev_user(
        store,
        clock,
        &tenant_id,
        &subscription_id,
        &vault,
        previous_user.as_ref(),
    )
    .await?;
    let credentials = DevCredentials {
        tenant_id,
        subscription_id,
        resource_group: DEV_RESOURCE_GROUP.into(),
        client_id,
        client_secret,
        authority: authority.to_string(),
        vault_url: format!("https://{DEV_VAULT}.{}{port_suffix}", config.dns_suffix),
        ca_cert: ca_cert.display().to_string(),
        user,
        password,
    };
    let json = serde_json::to_vec_pretty(&credentials)?;
    crate::tls::write_private(&path, &json)?;
    Ok(credentials)
}

/// The dev user: Owner of the dev subscription and every secret permission on the dev vault.
/// Its password is kept from the previous credentials file, or set anew if that is gone.
async fn dev_user(
    store: &dyn Store,
    clock: &dyn Clock,
    tenant_id: &str,
    subscription_id: &str,
    vault: &strongbox_store::VaultRow,
    previous: Option<&(String, String)>,
) -> anyhow::Result<(String, String)> {
    let password = match previous {
        Some((user, password)) if user == DEV_USER && !password.is_empty() => {
            if store.get_user_by_upn(DEV_USER).await?.is_some() {
                return Ok((user.clone(), password.clone()));
            }
            password.clone()
        }
        _ => strongbox_crypto::random_hex_id(),
    };
    let secret = SecretString::from(password.clone());
    match store.get_user_by_upn(DEV_USER).await? {
        // The credentials file is gone: the dev user gets a new password.
        Some(user) => strongbox_identity::reset_password(store, &user, &secret).await?,
        None => {
            let user = strongbox_identity::create_user(
                store,
                clock,
                strongbox_identity::NewUser {
                    tenant_id,
                    upn: DEV_USER,
                    display_name: "Strongbox developer",
                    password: &secret,
                },
            )
            .await?;
            set_policy(store, vault, &user.object_id, &Permission::ALL).await?;
            store
                .insert_role_assignment(RoleAssignmentRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    scope: format!("/subscriptions/{subscription_id}"),
                    role_definition_id: strongbox_domain::rbac::OWNER.into(),
                    principal_id: user.object_id.clone(),
                    created: clock.now(),
                })
                .await?;
        }
    }
    Ok((DEV_USER.to_string(), password))
}
