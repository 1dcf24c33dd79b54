//! Vault creation (used by dev bootstrap and the admin CLI until the management API lands).

use crate::{Clock, DomainError, Permission, names};
use strongbox_store::{AccessPolicyRow, Store, StoreError, VaultRow};

pub struct NewVault<'a> {
    pub name: &'a str,
    pub tenant_id: &'a str,
    pub subscription_id: &'a str,
    pub resource_group: &'a str,
    pub location: &'a str,
    pub retention_days: i64,
    pub purge_protection: bool,
    pub enable_rbac: bool,
}

/// The ARM id of a vault.
pub fn vault_resource_id(subscription_id: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{name}"
    )
}

pub async fn create_vault(
    store: &dyn Store,
    clock: &dyn Clock,
    new: NewVault<'_>,
) -> Result<VaultRow, DomainError> {
    let name = names::vault_name(new.name)?;
    if !(7..=90).contains(&new.retention_days) {
        return Err(DomainError::BadParameter(
            "softDeleteRetentionInDays must be between 7 and 90.".into(),
        ));
    }
    let resource_group = new.resource_group.to_ascii_lowercase();
    let vault = VaultRow {
        id: uuid::Uuid::new_v4().to_string(),
        resource_id: vault_resource_id(new.subscription_id, &resource_group, &name),
        name,
        tenant_id: new.tenant_id.to_string(),
        subscription_id: new.subscription_id.to_string(),
        resource_group,
        location: new.location.to_string(),
        tags_json: None,
        retention_days: new.retention_days,
        purge_protection: new.purge_protection,
        enable_rbac: new.enable_rbac,
        created: clock.now(),
        deleted: None,
    };
    match store.insert_vault(vault.clone()).await {
        Ok(()) => Ok(vault),
        Err(StoreError::Conflict) => Err(DomainError::Conflict {
            message: format!("A vault named '{}' already exists.", vault.name),
            inner: Some("VaultAlreadyExists"),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Sets (replaces) the secret permissions of `object_id` on `vault`.
pub async fn set_policy(
    store: &dyn Store,
    vault: &VaultRow,
    object_id: &str,
    permissions: &[Permission],
) -> Result<(), DomainError> {
    let policy = AccessPolicyRow {
        vault_id: vault.id.clone(),
        object_id: object_id.to_string(),
        secret_permissions: permissions.iter().map(|p| p.as_str().to_string()).collect(),
    };
    Ok(store.set_access_policy(policy).await?)
}
