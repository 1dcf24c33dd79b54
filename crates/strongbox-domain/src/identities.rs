//! Managed identities. A user-assigned identity is an ARM resource of its own
//! (`Microsoft.ManagedIdentity/userAssignedIdentities`); a system-assigned identity is created
//! with the resource that owns it and deleted with it. Both are principals: their object id is
//! what access policies and role assignments name, and they get tokens only through the
//! managed-identity endpoints (they hold no client secret).

use crate::arm::Scope;
use crate::{Clock, DomainError};
use strongbox_store::{ManagedIdentityRow, PrincipalRow, Store, StoreError};

/// `ManagedIdentityRow::kind` of a user-assigned identity.
pub const USER_ASSIGNED: &str = "UserAssigned";
/// `ManagedIdentityRow::kind` of a system-assigned identity.
pub const SYSTEM_ASSIGNED: &str = "SystemAssigned";
/// `PrincipalRow::kind` values.
pub const USER_ASSIGNED_PRINCIPAL: &str = "UserAssignedManagedIdentity";
pub const SYSTEM_ASSIGNED_PRINCIPAL: &str = "SystemAssignedManagedIdentity";

/// The resource type of user-assigned identities.
pub const RESOURCE_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

/// A managed identity with its principal.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedIdentity {
    pub identity: ManagedIdentityRow,
    pub principal: PrincipalRow,
}

impl ManagedIdentity {
    fn from_pair((identity, principal): (ManagedIdentityRow, PrincipalRow)) -> Self {
        ManagedIdentity {
            identity,
            principal,
        }
    }

    /// The ARM id of a user-assigned identity in ARM's casing.
    pub fn arm_id(&self) -> String {
        crate::arm::display_scope(&self.identity.resource_id)
    }

    pub fn is_user_assigned(&self) -> bool {
        self.identity.kind == USER_ASSIGNED
    }
}

/// The ARM id of a user-assigned identity.
pub fn user_assigned_id(subscription_id: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{RESOURCE_TYPE}/{name}"
    )
}

/// Azure's rule for user-assigned identity names: 3–128 characters, letters, digits, hyphens
/// and underscores, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), DomainError> {
    let ok = (3..=128).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::BadParameter(format!(
            "The identity name '{}' is invalid: use 3 to 128 letters, digits, hyphens or underscores, starting with a letter or digit.",
            name.chars().take(140).collect::<String>()
        )))
    }
}

fn validate_resource_group(rg: &str) -> Result<(), DomainError> {
    let ok = (1..=90).contains(&rg.len())
        && !rg.ends_with('.')
        && rg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'(' | b')'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::BadParameter(
            "The resource group name is invalid.".into(),
        ))
    }
}

/// A location as ARM normalizes it: lowercase, no spaces (`West US` → `westus`).
pub fn normalize_location(location: &str) -> Result<String, DomainError> {
    let l: String = location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if (1..=64).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(l)
    } else {
        Err(DomainError::BadParameter(
            "The location is invalid: use a name such as 'local' or 'westeurope'.".into(),
        ))
    }
}

pub struct NewUserAssigned<'a> {
    pub subscription_id: &'a str,
    pub resource_group: &'a str,
    pub name: &'a str,
    pub location: &'a str,
    pub tags_json: Option<String>,
}

async fn tenant_of(store: &dyn Store, subscription_id: &str) -> Result<String, DomainError> {
    store
        .get_subscription(subscription_id)
        .await?
        .map(|s| s.tenant_id)
        .ok_or_else(|| {
            DomainError::NotFound(format!(
                "The subscription '{subscription_id}' could not be found."
            ))
        })
}

fn new_principal(tenant_id: &str, display_name: &str, kind: &str) -> PrincipalRow {
    PrincipalRow {
        object_id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        display_name: display_name.to_string(),
        kind: kind.to_string(),
    }
}

/// Creates a user-assigned identity, or updates the tags of the existing one (ARM's PUT).
/// Returns the identity and whether it was created. A different location for an existing
/// identity is a conflict, as in ARM.
pub async fn put_user_assigned(
    store: &dyn Store,
    clock: &dyn Clock,
    new: NewUserAssigned<'_>,
) -> Result<(ManagedIdentity, bool), DomainError> {
    validate_name(new.name)?;
    validate_resource_group(new.resource_group)?;
    let location = normalize_location(new.location)?;
    let tenant_id = tenant_of(store, new.subscription_id).await?;
    let rg = new.resource_group.to_ascii_lowercase();
    let resource_id = user_assigned_id(new.subscription_id, &rg, new.name);
    if let Some(existing) = store
        .get_managed_identity_by_resource(USER_ASSIGNED, &resource_id)
        .await?
    {
        let mut existing = ManagedIdentity::from_pair(existing);
        if existing.identity.location != location {
            return Err(DomainError::Conflict {
                message: format!(
                    "The resource '{}' already exists in location '{}'. A resource with the same name cannot be created in location '{location}'.",
                    new.name, existing.identity.location
                ),
                inner: Some("InvalidResourceLocation"),
            });
        }
        store
            .update_managed_identity_tags(&existing.principal.object_id, new.tags_json.clone())
            .await?;
        existing.identity.tags_json = new.tags_json;
        return Ok((existing, false));
    }
    let principal = new_principal(&tenant_id, new.name, USER_ASSIGNED_PRINCIPAL);
    let identity = ManagedIdentityRow {
        object_id: principal.object_id.clone(),
        kind: USER_ASSIGNED.into(),
        resource_id: resource_id.to_ascii_lowercase(),
        subscription_id: new.subscription_id.to_string(),
        resource_group: rg,
        name: new.name.to_string(),
        location,
        tags_json: new.tags_json,
        created: clock.now(),
    };
    match store
        .insert_managed_identity(principal.clone(), identity.clone())
        .await
    {
        Ok(()) => Ok((
            ManagedIdentity {
                identity,
                principal,
            },
            true,
        )),
        // Another request created it first: the PUT still converges on one identity.
        Err(StoreError::Conflict) => store
            .get_managed_identity_by_resource(USER_ASSIGNED, &resource_id)
            .await?
            .map(|p| (ManagedIdentity::from_pair(p), false))
            .ok_or_else(|| DomainError::Internal("identity vanished after a conflict".into())),
        Err(e) => Err(e.into()),
    }
}

pub async fn get_user_assigned(
    store: &dyn Store,
    subscription_id: &str,
    resource_group: &str,
    name: &str,
) -> Result<Option<ManagedIdentity>, DomainError> {
    let id = user_assigned_id(subscription_id, resource_group, name);
    Ok(store
        .get_managed_identity_by_resource(USER_ASSIGNED, &id)
        .await?
        .map(ManagedIdentity::from_pair))
}

/// User-assigned identities of a subscription, or of one resource group in it.
pub async fn list_user_assigned(
    store: &dyn Store,
    subscription_id: &str,
    resource_group: Option<&str>,
) -> Result<Vec<ManagedIdentity>, DomainError> {
    let rg = resource_group.map(str::to_ascii_lowercase);
    Ok(store
        .list_managed_identities(subscription_id)
        .await?
        .into_iter()
        .map(ManagedIdentity::from_pair)
        .filter(|m| m.is_user_assigned())
        .filter(|m| {
            rg.as_ref()
                .is_none_or(|rg| &m.identity.resource_group == rg)
        })
        .collect())
}

/// Every managed identity (both kinds) of a subscription.
pub async fn list_all(
    store: &dyn Store,
    subscription_id: &str,
) -> Result<Vec<ManagedIdentity>, DomainError> {
    Ok(store
        .list_managed_identities(subscription_id)
        .await?
        .into_iter()
        .map(ManagedIdentity::from_pair)
        .collect())
}

/// Deletes a user-assigned identity (with its credentials, endpoints and role assignments).
/// Returns false if there was none.
pub async fn delete_user_assigned(
    store: &dyn Store,
    subscription_id: &str,
    resource_group: &str,
    name: &str,
) -> Result<bool, DomainError> {
    let Some(m) = get_user_assigned(store, subscription_id, resource_group, name).await? else {
        return Ok(false);
    };
    match store.delete_managed_identity(&m.principal.object_id).await {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates the system-assigned identity of `owner_resource_id` (an ARM resource id), or returns
/// the one it has: a resource has at most one. The owner's subscription must exist; its tenant
/// is the identity's tenant.
pub async fn create_system_assigned(
    store: &dyn Store,
    clock: &dyn Clock,
    owner_resource_id: &str,
) -> Result<ManagedIdentity, DomainError> {
    let scope = Scope::parse(owner_resource_id)?;
    let (Some(rg), Some((_, chain))) = (&scope.resource_group, &scope.resource) else {
        return Err(DomainError::BadParameter(
            "A system-assigned identity belongs to a resource, not to a subscription or resource group."
                .into(),
        ));
    };
    let owner_name = chain.last().map(|(_, n)| n.clone()).unwrap_or_default();
    let key = scope.key();
    if let Some(existing) = store
        .get_managed_identity_by_resource(SYSTEM_ASSIGNED, &key)
        .await?
    {
        return Ok(ManagedIdentity::from_pair(existing));
    }
    let tenant_id = tenant_of(store, &scope.subscription_id).await?;
    let principal = new_principal(&tenant_id, &owner_name, SYSTEM_ASSIGNED_PRINCIPAL);
    let identity = ManagedIdentityRow {
        object_id: principal.object_id.clone(),
        kind: SYSTEM_ASSIGNED.into(),
        resource_id: key.clone(),
        subscription_id: scope.subscription_id.clone(),
        resource_group: rg.clone(),
        name: owner_name,
        location: "local".into(),
        tags_json: None,
        created: clock.now(),
    };
    match store
        .insert_managed_identity(principal.clone(), identity.clone())
        .await
    {
        Ok(()) => Ok(ManagedIdentity {
            identity,
            principal,
        }),
        Err(StoreError::Conflict) => store
            .get_managed_identity_by_resource(SYSTEM_ASSIGNED, &key)
            .await?
            .map(ManagedIdentity::from_pair)
            .ok_or_else(|| DomainError::Internal("identity vanished after a conflict".into())),
        Err(e) => Err(e.into()),
    }
}

/// The system-assigned identity of a resource, if it has one.
pub async fn system_assigned_for(
    store: &dyn Store,
    owner_resource_id: &str,
) -> Result<Option<ManagedIdentity>, DomainError> {
    let key = Scope::parse(owner_resource_id)?.key();
    Ok(store
        .get_managed_identity_by_resource(SYSTEM_ASSIGNED, &key)
        .await?
        .map(ManagedIdentity::from_pair))
}

/// Deletes the system-assigned identity of a resource being deleted. Returns false if it had
/// none.
pub async fn delete_for_resource(
    store: &dyn Store,
    owner_resource_id: &str,
) -> Result<bool, DomainError> {
    let Some(m) = system_assigned_for(store, owner_resource_id).await? else {
        return Ok(false);
    };
    match store.delete_managed_identity(&m.principal.object_id).await {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
