//! Authorization as a capability: `authorize` is a pure function of the vault's access policies
//! and the caller; the operations that touch secrets take the `Grant` it returns, so a handler
//! cannot forget the check.

use crate::DomainError;
use crate::rbac;
use std::sync::Arc;
use strongbox_store::{AccessPolicyRow, RoleAssignmentRow, VaultRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Get,
    List,
    Set,
    Delete,
    Recover,
    Backup,
    Restore,
    Purge,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::Get,
        Permission::List,
        Permission::Set,
        Permission::Delete,
        Permission::Recover,
        Permission::Backup,
        Permission::Restore,
        Permission::Purge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Get => "get",
            Permission::List => "list",
            Permission::Set => "set",
            Permission::Delete => "delete",
            Permission::Recover => "recover",
            Permission::Backup => "backup",
            Permission::Restore => "restore",
            Permission::Purge => "purge",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Who is calling, as the verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub object_id: String,
    pub tenant_id: String,
    pub app_id: String,
}

/// A secrets data-plane action: what access policies call a permission and RBAC a data action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAction {
    Get,
    List,
    Set,
    Update,
    Delete,
    GetDeleted,
    ListDeleted,
    Recover,
    Purge,
    Backup,
    Restore,
}

impl SecretAction {
    /// The access-policy permission that allows it.
    pub fn permission(self) -> Permission {
        match self {
            SecretAction::Get | SecretAction::GetDeleted => Permission::Get,
            SecretAction::List | SecretAction::ListDeleted => Permission::List,
            SecretAction::Set | SecretAction::Update => Permission::Set,
            SecretAction::Delete => Permission::Delete,
            SecretAction::Recover => Permission::Recover,
            SecretAction::Purge => Permission::Purge,
            SecretAction::Backup => Permission::Backup,
            SecretAction::Restore => Permission::Restore,
        }
    }

    /// The RBAC data action that allows it. Checked for issue 3 against Microsoft's
    /// access-policy-to-RBAC mapping (Azure/KeyVault-AccessPolicyToRBAC-CompareTool,
    /// AcessPolicyRBACMapping.csv) and the Microsoft.KeyVault provider operations: there is no
    /// deleted-secrets data action, and a deleted secret never carries its value, so getting or
    /// listing deleted secrets needs `readMetadata` (an inference: Azure documents no
    /// per-operation action for them).
    pub fn data_action(self) -> &'static str {
        match self {
            SecretAction::Get => "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            SecretAction::List | SecretAction::GetDeleted | SecretAction::ListDeleted => {
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
            }
            SecretAction::Set => "Microsoft.KeyVault/vaults/secrets/setSecret/action",
            SecretAction::Update => "Microsoft.KeyVault/vaults/secrets/update/action",
            SecretAction::Delete => "Microsoft.KeyVault/vaults/secrets/delete",
            SecretAction::Recover => "Microsoft.KeyVault/vaults/secrets/recover/action",
            SecretAction::Purge => "Microsoft.KeyVault/vaults/secrets/purge/action",
            SecretAction::Backup => "Microsoft.KeyVault/vaults/secrets/backup/action",
            SecretAction::Restore => "Microsoft.KeyVault/vaults/secrets/restore/action",
        }
    }
}

/// What decides access to a vault's data plane: its access policies, or (with
/// `enableRbacAuthorization`) the caller's role assignments.
#[derive(Debug, Clone)]
pub enum VaultAccess {
    Policies(Vec<AccessPolicyRow>),
    /// The caller's role assignments (at any scope).
    Roles(Vec<RoleAssignmentRow>),
}

/// Proof that `caller` may perform an action on `vault`. Only `authorize` makes one.
#[derive(Debug, Clone)]
pub struct Grant {
    vault: Arc<VaultRow>,
    caller: Caller,
    action: SecretAction,
}

impl Grant {
    pub fn vault(&self) -> &VaultRow {
        &self.vault
    }
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
    pub fn action(&self) -> SecretAction {
        self.action
    }
}

/// Decides a data-plane action. `secret` names the secret concerned, if any: a role assignment
/// at that secret's scope counts (RBAC mode).
pub fn authorize(
    vault: Arc<VaultRow>,
    access: &VaultAccess,
    caller: &Caller,
    action: SecretAction,
    secret: Option<&str>,
) -> Result<Grant, DomainError> {
    let same_tenant = caller.tenant_id == vault.tenant_id;
    let allowed = same_tenant
        && match access {
            VaultAccess::Policies(policies) => policies.iter().any(|p| {
                p.vault_id == vault.id
                    && p.object_id == caller.object_id
                    && p.secret_permissions
                        .iter()
                        .any(|s| Permission::parse(s) == Some(action.permission()))
            }),
            VaultAccess::Roles(assignments) => {
                let mine: Vec<_> = assignments
                    .iter()
                    .filter(|a| a.principal_id == caller.object_id)
                    .cloned()
                    .collect();
                let target = match secret {
                    Some(name) => format!(
                        "{}/secrets/{}",
                        vault.resource_id,
                        name.to_ascii_lowercase()
                    ),
                    None => vault.resource_id.clone(),
                };
                rbac::permits(&mine, &target, action.data_action(), true)
            }
        };
    if allowed {
        return Ok(Grant {
            vault,
            caller: caller.clone(),
            action,
        });
    }
    let message = match access {
        VaultAccess::Policies(_) => format!(
            "The user, group or application 'appid={};oid={}' does not have secrets {} permission on key vault '{}'.",
            caller.app_id,
            caller.object_id,
            action.permission().as_str(),
            vault.name
        ),
        VaultAccess::Roles(_) => format!(
            "Caller is not authorized to perform action on resource. Caller: appid={};oid={}. Action: '{}'. \
             Resource: '{}'.",
            caller.app_id,
            caller.object_id,
            action.data_action(),
            vault.resource_id.to_ascii_lowercase()
        ),
    };
    let inner = match access {
        VaultAccess::Policies(_) => "AccessDenied",
        VaultAccess::Roles(_) => "ForbiddenByRbac",
    };
    Err(DomainError::Forbidden {
        message,
        inner: Some(inner),
    })
}

/// Proof that `caller` may follow `vault`'s change feed, and which secrets' changes it may see:
/// every secret's when it may get any (a `get` access policy, or a role with the read data
/// action at the vault or above), else those its secret-scoped roles let it get.
#[derive(Debug, Clone)]
pub struct FeedGrant {
    grant: Grant,
    /// The caller's role assignments, when only some secrets are visible.
    only: Option<Vec<RoleAssignmentRow>>,
    /// A vault-wide get without list: the names of all secrets are not the caller's to learn,
    /// so it must name the secrets it follows.
    needs_names: bool,
    /// The secrets the caller asked to follow (lowercase), if it named any.
    names: Option<std::collections::BTreeSet<String>>,
}

/// The most secret names one feed request may name.
pub const MAX_FEED_NAMES: usize = 256;

impl FeedGrant {
    /// The underlying grant (action `Get`), for auditing the request.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// Restricts the feed to `names` (lowercase). Without names, a caller whose get is not
    /// paired with list is refused: the feed would tell it every secret's name.
    pub fn with_names(
        mut self,
        names: Option<std::collections::BTreeSet<String>>,
    ) -> Result<FeedGrant, DomainError> {
        if names.is_none() && self.needs_names {
            return Err(DomainError::Forbidden {
                message: format!(
                    "The user, group or application 'appid={};oid={}' does not have secrets list permission on key vault '{}': \
                     name the secrets to follow with names=a,b,c (at most {MAX_FEED_NAMES}).",
                    self.grant.caller.app_id, self.grant.caller.object_id, self.grant.vault.name
                ),
                inner: Some("AccessDenied"),
            });
        }
        self.names = names;
        Ok(self)
    }

    /// Whether the caller sees every secret's changes.
    pub fn sees_all(&self) -> bool {
        self.only.is_none() && self.names.is_none()
    }

    /// Whether the caller may see changes of `secret` (its lowercase name).
    pub fn may_see(&self, secret: &str) -> bool {
        if let Some(names) = &self.names
            && !names.contains(&secret.to_ascii_lowercase())
        {
            return false;
        }
        match &self.only {
            None => true,
            Some(mine) => rbac::permits(
                mine,
                &format!(
                    "{}/secrets/{}",
                    self.grant.vault.resource_id,
                    secret.to_ascii_lowercase()
                ),
                SecretAction::Get.data_action(),
                true,
            ),
        }
    }
}

/// Decides `GET /changes`. A caller that may get no secret at all is refused as a vault-wide
/// get would be.
pub fn authorize_feed(
    vault: Arc<VaultRow>,
    access: &VaultAccess,
    caller: &Caller,
) -> Result<FeedGrant, DomainError> {
    let refused = match authorize(vault.clone(), access, caller, SecretAction::Get, None) {
        Ok(grant) => {
            let can_list =
                authorize(vault.clone(), access, caller, SecretAction::List, None).is_ok();
            return Ok(FeedGrant {
                grant,
                only: None,
                needs_names: !can_list,
                names: None,
            });
        }
        Err(e) => e,
    };
    let VaultAccess::Roles(assignments) = access else {
        return Err(refused);
    };
    if caller.tenant_id != vault.tenant_id {
        return Err(refused);
    }
    let mine: Vec<RoleAssignmentRow> = assignments
        .iter()
        .filter(|a| a.principal_id == caller.object_id)
        .cloned()
        .collect();
    let secrets = format!("{}/secrets", vault.resource_id);
    let some_secret = mine.iter().any(|a| {
        rbac::scope_covers(&secrets, &a.scope)
            && rbac::role_definition(&a.role_definition_id)
                .is_some_and(|r| r.allows_data_action(SecretAction::Get.data_action()))
    });
    if !some_secret {
        return Err(refused);
    }
    Ok(FeedGrant {
        grant: Grant {
            vault,
            caller: caller.clone(),
            action: SecretAction::Get,
        },
        only: Some(mine),
        needs_names: false,
        names: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(rbac: bool) -> Arc<VaultRow> {
        Arc::new(VaultRow {
            id: "v".into(),
            name: "dev".into(),
            tenant_id: "t".into(),
            subscription_id: "s".into(),
            resource_group: "rg".into(),
            location: "local".into(),
            resource_id:
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/dev".into(),
            tags_json: None,
            retention_days: 90,
            purge_protection: false,
            enable_rbac: rbac,
            created: 0,
            deleted: None,
        })
    }

    #[test]
    fn only_a_matching_policy_in_the_same_tenant_grants() {
        let vault = vault(false);
        let access = VaultAccess::Policies(vec![AccessPolicyRow {
            vault_id: "v".into(),
            object_id: "o".into(),
            secret_permissions: vec!["get".into()],
        }]);
        let caller = Caller {
            object_id: "o".into(),
            tenant_id: "t".into(),
            app_id: "a".into(),
        };
        assert!(
            authorize(
                vault.clone(),
                &access,
                &caller,
                SecretAction::Get,
                Some("x")
            )
            .is_ok()
        );
        assert!(authorize(vault.clone(), &access, &caller, SecretAction::Set, None).is_err());
        let stranger = Caller {
            object_id: "x".into(),
            ..caller.clone()
        };
        assert!(authorize(vault.clone(), &access, &stranger, SecretAction::Get, None).is_err());
        let other_tenant = Caller {
            tenant_id: "t2".into(),
            ..caller
        };
        assert!(authorize(vault, &access, &other_tenant, SecretAction::Get, None).is_err());
    }

    #[test]
    fn roles_grant_at_vault_or_secret_scope() {
        let vault = vault(true);
        let caller = Caller {
            object_id: "o".into(),
            tenant_id: "t".into(),
            app_id: "a".into(),
        };
        let at = |scope: String, role: &str| RoleAssignmentRow {
            id: "r".into(),
            scope: scope.to_ascii_lowercase(),
            role_definition_id: role.into(),
            principal_id: "o".into(),
            created: 0,
        };
        let user_on_secret = VaultAccess::Roles(vec![at(
            format!("{}/secrets/one", vault.resource_id),
            rbac::KEY_VAULT_SECRETS_USER,
        )]);
        assert!(
            authorize(
                vault.clone(),
                &user_on_secret,
                &caller,
                SecretAction::Get,
                Some("One")
            )
            .is_ok()
        );
        assert!(
            authorize(
                vault.clone(),
                &user_on_secret,
                &caller,
                SecretAction::Get,
                Some("two")
            )
            .is_err()
        );
        assert!(
            authorize(
                vault.clone(),
                &user_on_secret,
                &caller,
                SecretAction::Set,
                Some("one")
            )
            .is_err()
        );
        let reader =
            VaultAccess::Roles(vec![at(vault.resource_id.clone(), rbac::KEY_VAULT_READER)]);
        assert!(authorize(vault.clone(), &reader, &caller, SecretAction::List, None).is_ok());
        assert!(
            authorize(
                vault.clone(),
                &reader,
                &caller,
                SecretAction::Get,
                Some("one")
            )
            .is_err()
        );
        let owner = VaultAccess::Roles(vec![at("/subscriptions/s".into(), rbac::OWNER)]);
        assert!(
            authorize(vault, &owner, &caller, SecretAction::Get, Some("one")).is_err(),
            "Owner has no data actions"
        );
    }

    #[test]
    fn the_feed_shows_each_caller_what_it_may_get() {
        let caller = Caller {
            object_id: "o".into(),
            tenant_id: "t".into(),
            app_id: "a".into(),
        };
        let get_policy = |perms: &[&str]| {
            VaultAccess::Policies(vec![AccessPolicyRow {
                vault_id: "v".into(),
                object_id: "o".into(),
                secret_permissions: perms.iter().map(|p| p.to_string()).collect(),
            }])
        };
        let all = authorize_feed(vault(false), &get_policy(&["get", "list"]), &caller).unwrap();
        let all = all.with_names(None).unwrap();
        assert!(all.sees_all() && all.may_see("anything"));
        // Get without list: only the secrets it names.
        let get_only = authorize_feed(vault(false), &get_policy(&["get"]), &caller).unwrap();
        assert!(get_only.clone().with_names(None).is_err());
        let named = get_only.with_names(Some(["a".to_string()].into())).unwrap();
        assert!(!named.sees_all() && named.may_see("A") && !named.may_see("b"));
        assert!(authorize_feed(vault(false), &get_policy(&["list", "set"]), &caller).is_err());

        let v = vault(true);
        let at = |scope: String, role: &str| RoleAssignmentRow {
            id: "r".into(),
            scope: scope.to_ascii_lowercase(),
            role_definition_id: role.into(),
            principal_id: "o".into(),
            created: 0,
        };
        let one = VaultAccess::Roles(vec![at(
            format!("{}/secrets/One", v.resource_id),
            rbac::KEY_VAULT_SECRETS_USER,
        )]);
        let some = authorize_feed(v.clone(), &one, &caller).unwrap();
        assert!(!some.sees_all());
        assert!(some.may_see("one") && some.may_see("ONE") && !some.may_see("two"));
        let vault_wide = VaultAccess::Roles(vec![at(
            "/subscriptions/s".into(),
            rbac::KEY_VAULT_SECRETS_USER,
        )]);
        assert!(
            authorize_feed(v.clone(), &vault_wide, &caller)
                .unwrap()
                .sees_all()
        );
        // Metadata readers and roles of others see nothing: refused like a get.
        let reader = VaultAccess::Roles(vec![at(
            format!("{}/secrets/one", v.resource_id),
            rbac::KEY_VAULT_READER,
        )]);
        let e = authorize_feed(v.clone(), &reader, &caller).unwrap_err();
        assert_eq!(e.inner(), Some("ForbiddenByRbac"));
        let stranger = Caller {
            object_id: "x".into(),
            ..caller.clone()
        };
        assert!(authorize_feed(v.clone(), &one, &stranger).is_err());
        let other_tenant = Caller {
            tenant_id: "t2".into(),
            ..caller
        };
        assert!(authorize_feed(v, &one, &other_tenant).is_err());
    }
}
