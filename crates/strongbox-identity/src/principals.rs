use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use strongbox_crypto::Keyring;
use strongbox_domain::{Clock, DomainError};
use strongbox_store::{ClientSecretRow, PrincipalRow, Store, TenantRow};

/// Label of the keyed hash under which client secrets are stored.
pub(crate) const CLIENT_SECRET_MAC: &str = "client-secret";

pub async fn create_tenant(
    store: &dyn Store,
    display_name: &str,
) -> Result<TenantRow, DomainError> {
    let tenant = TenantRow {
        id: uuid::Uuid::new_v4().to_string(),
        display_name: display_name.to_string(),
    };
    store.insert_tenant(tenant.clone()).await?;
    Ok(tenant)
}

pub struct NewServicePrincipal<'a> {
    pub tenant_id: &'a str,
    pub display_name: &'a str,
    pub secret_lifetime_days: i64,
}

/// Creates a service principal with one client secret. The secret is returned once and stored
/// only as a keyed hash.
pub async fn create_service_principal(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
    new: NewServicePrincipal<'_>,
) -> Result<(PrincipalRow, SecretString), DomainError> {
    let principal = PrincipalRow {
        object_id: uuid::Uuid::new_v4().to_string(),
        tenant_id: new.tenant_id.to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        display_name: new.display_name.to_string(),
        kind: "ServicePrincipal".into(),
    };
    store.insert_principal(principal.clone()).await?;
    let secret =
        add_client_secret(store, keyring, clock, &principal, new.secret_lifetime_days).await?;
    Ok((principal, secret))
}

pub async fn add_client_secret(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
    principal: &PrincipalRow,
    lifetime_days: i64,
) -> Result<SecretString, DomainError> {
    let secret = format!(
        "sbx~{}",
        URL_SAFE_NO_PAD.encode(strongbox_crypto::random_bytes::<32>())
    );
    let row = ClientSecretRow {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: principal.object_id.clone(),
        hash: keyring.mac(CLIENT_SECRET_MAC, secret.as_bytes()).to_vec(),
        expires: clock.now() + lifetime_days * 86_400,
    };
    store.insert_client_secret(row).await?;
    Ok(SecretString::from(secret))
}
