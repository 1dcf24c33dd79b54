//! Authorization as a capability: `authorize` is a pure function of the vault's access policies
//! and the caller; the operations that touch secrets take the `Grant` it returns, so a handler
//! cannot forget the check.

use crate::DomainError;
use std::sync::Arc;
use strongbox_store::{AccessPolicyRow, VaultRow};

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

/// Proof that `caller` may perform `permission` on `vault`. Only `authorize` makes one.
#[derive(Debug, Clone)]
pub struct Grant {
    vault: Arc<VaultRow>,
    caller: Caller,
    permission: Permission,
}

impl Grant {
    pub fn vault(&self) -> &VaultRow {
        &self.vault
    }
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
    pub fn permission(&self) -> Permission {
        self.permission
    }
}

pub fn authorize(
    vault: Arc<VaultRow>,
    policies: &[AccessPolicyRow],
    caller: &Caller,
    permission: Permission,
) -> Result<Grant, DomainError> {
    let allowed = caller.tenant_id == vault.tenant_id
        && policies.iter().any(|p| {
            p.vault_id == vault.id
                && p.object_id == caller.object_id
                && p.secret_permissions
                    .iter()
                    .any(|s| Permission::parse(s) == Some(permission))
        });
    if allowed {
        Ok(Grant {
            vault,
            caller: caller.clone(),
            permission,
        })
    } else {
        Err(DomainError::Forbidden {
            message: format!(
                "The user, group or application 'appid={};oid={}' does not have secrets {} permission on key vault '{}'.",
                caller.app_id,
                caller.object_id,
                permission.as_str(),
                vault.name
            ),
            inner: Some("AccessDenied"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_matching_policy_in_the_same_tenant_grants() {
        let vault = Arc::new(VaultRow {
            id: "v".into(),
            name: "dev".into(),
            tenant_id: "t".into(),
            resource_id: "r".into(),
            retention_days: 90,
            purge_protection: false,
            created: 0,
        });
        let policies = vec![AccessPolicyRow {
            vault_id: "v".into(),
            object_id: "o".into(),
            secret_permissions: vec!["get".into()],
        }];
        let caller = Caller {
            object_id: "o".into(),
            tenant_id: "t".into(),
            app_id: "a".into(),
        };
        assert!(authorize(vault.clone(), &policies, &caller, Permission::Get).is_ok());
        assert!(authorize(vault.clone(), &policies, &caller, Permission::Set).is_err());
        let stranger = Caller {
            object_id: "x".into(),
            ..caller.clone()
        };
        assert!(authorize(vault.clone(), &policies, &stranger, Permission::Get).is_err());
        let other_tenant = Caller {
            tenant_id: "t2".into(),
            ..caller
        };
        assert!(authorize(vault, &policies, &other_tenant, Permission::Get).is_err());
    }
}
