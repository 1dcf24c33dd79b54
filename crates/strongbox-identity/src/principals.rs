use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use strongbox_crypto::Keyring;
use strongbox_domain::{Clock, DomainError};
use strongbox_store::{ClientSecretRow, PrincipalRow, Store, StoreError, TenantRow, UserRow};

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

/// Shortest password accepted for a user.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes, OWASP's minimum).
pub fn hash_password(password: &SecretString) -> Result<String, DomainError> {
    use argon2::password_hash::PasswordHasher as _;
    use secrecy::ExposeSecret as _;
    if password.expose_secret().chars().count() < MIN_PASSWORD_CHARS {
        return Err(DomainError::BadParameter(format!(
            "A password must have at least {MIN_PASSWORD_CHARS} characters."
        )));
    }
    argon2::Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| DomainError::Internal(format!("password hashing: {e}")))
}

/// Whether `password` matches the stored hash. A hash that does not parse never matches.
pub(crate) fn password_matches(hash: &str, password: &str) -> bool {
    use argon2::password_hash::PasswordVerifier as _;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A user principal name: `name@domain`, letters, digits and `.-_+'` only, at most 113
/// characters (Entra's limit), kept lowercase.
pub fn normalize_upn(upn: &str) -> Result<String, DomainError> {
    let upn = upn.trim().to_lowercase();
    let ok_char = |c: char| c.is_ascii_alphanumeric() || ".-_+'".contains(c);
    let valid = match upn.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && local.chars().all(ok_char)
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        }
        None => false,
    };
    if !valid || upn.len() > 113 {
        return Err(DomainError::BadParameter(
            "A user principal name looks like name@domain.example (letters, digits and . - _ + ' only)."
                .into(),
        ));
    }
    Ok(upn)
}

pub struct NewUser<'a> {
    pub tenant_id: &'a str,
    pub upn: &'a str,
    pub display_name: &'a str,
    pub password: &'a SecretString,
}

/// Creates a user principal. Its client id is its object id (users never use one).
pub async fn create_user(
    store: &dyn Store,
    clock: &dyn Clock,
    new: NewUser<'_>,
) -> Result<UserRow, DomainError> {
    let upn = normalize_upn(new.upn)?;
    let password_hash = hash_password(new.password)?;
    if store.get_tenant(new.tenant_id).await?.is_none() {
        return Err(DomainError::NotFound(format!(
            "Tenant '{}' not found.",
            new.tenant_id
        )));
    }
    let object_id = uuid::Uuid::new_v4().to_string();
    let display_name = if new.display_name.trim().is_empty() {
        upn.split('@').next().unwrap_or(&upn).to_string()
    } else {
        new.display_name.trim().to_string()
    };
    let principal = PrincipalRow {
        object_id: object_id.clone(),
        tenant_id: new.tenant_id.to_string(),
        client_id: object_id.clone(),
        display_name: display_name.clone(),
        kind: "User".into(),
    };
    let user = UserRow {
        object_id,
        tenant_id: new.tenant_id.to_string(),
        upn: upn.clone(),
        display_name,
        password_hash,
        enabled: true,
        totp_sealed: None,
        totp_last_step: 0,
        created: clock.now(),
    };
    match store.insert_user(principal, user.clone()).await {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict) => Err(DomainError::Conflict {
            message: format!("A user named '{upn}' already exists."),
            inner: None,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Finds a user by object id or UPN.
pub async fn find_user(store: &dyn Store, which: &str) -> Result<UserRow, DomainError> {
    let found = if which.contains('@') {
        store.get_user_by_upn(&which.trim().to_lowercase()).await?
    } else {
        store.get_user(which.trim()).await?
    };
    found.ok_or_else(|| DomainError::NotFound(format!("No user '{which}'.")))
}

/// Ends every session of the user: web sessions and pending flows are deleted, refresh tokens
/// revoked. Access tokens already issued run out within their hour. Returns (sessions and
/// pending flows, refresh tokens).
pub async fn revoke_sessions(store: &dyn Store, user_id: &str) -> Result<(u64, u64), DomainError> {
    let grants = store.delete_user_grants(user_id).await?;
    let refresh = store.revoke_user_refresh_tokens(user_id).await?;
    Ok((grants, refresh))
}

/// Sets a new password; every session ends and the user's failure count is cleared.
pub async fn reset_password(
    store: &dyn Store,
    user: &UserRow,
    password: &SecretString,
) -> Result<(), DomainError> {
    let updated = UserRow {
        password_hash: hash_password(password)?,
        ..user.clone()
    };
    store.update_user(&updated).await?;
    store
        .clear_signin_failures(&crate::signin::user_key(&user.upn))
        .await?;
    revoke_sessions(store, &user.object_id).await?;
    Ok(())
}

/// Enables or disables a user; disabling ends every session.
pub async fn set_user_enabled(
    store: &dyn Store,
    user: &UserRow,
    enabled: bool,
) -> Result<(), DomainError> {
    store
        .update_user(&UserRow {
            enabled,
            ..user.clone()
        })
        .await?;
    if !enabled {
        revoke_sessions(store, &user.object_id).await?;
    }
    Ok(())
}
