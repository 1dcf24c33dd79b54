//! Role-based access: the built-in role definitions Strongbox knows, wildcard matching of
//! actions, and scope inheritance (an assignment at a scope covers everything beneath it).
//! Pure functions; the store only lists assignments.

use strongbox_store::RoleAssignmentRow;

/// A role definition as Azure describes one: control-plane `actions` and data-plane
/// `data_actions`, each with exclusions.
#[derive(Debug)]
pub struct RoleDefinition {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
    pub not_data_actions: &'static [&'static str],
}

pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
pub const KEY_VAULT_CONTRIBUTOR: &str = "f25e0fa2-a7c8-4377-a976-54943a77a395";
pub const KEY_VAULT_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
pub const KEY_VAULT_SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
pub const KEY_VAULT_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
pub const KEY_VAULT_READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

/// The control-plane actions every Key Vault data role except Secrets User carries.
const KEY_VAULT_MANAGEMENT_READ: &[&str] = &[
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
];

/// The built-in roles, as published in Microsoft's built-in-roles documentation (security.md
/// and privileged.md of MicrosoftDocs/azure-docs; GUIDs, actions, notActions and dataActions
/// copied from the role JSON there, descriptions from the same pages). Checked for issue 3:
/// `Microsoft.Support/*` was missing from the Key Vault roles and Contributor's notActions were
/// incomplete.
pub const BUILTIN_ROLES: &[RoleDefinition] = &[
    RoleDefinition {
        id: OWNER,
        name: "Owner",
        description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        actions: &["*"],
        not_actions: &[],
        data_actions: &[],
        not_data_actions: &[],
    },
    RoleDefinition {
        id: CONTRIBUTOR,
        name: "Contributor",
        description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
        data_actions: &[],
        not_data_actions: &[],
    },
    RoleDefinition {
        id: READER,
        name: "Reader",
        description: "View all resources, but does not allow you to make any changes.",
        actions: &["*/read"],
        not_actions: &[],
        data_actions: &[],
        not_data_actions: &[],
    },
    RoleDefinition {
        id: KEY_VAULT_CONTRIBUTOR,
        name: "Key Vault Contributor",
        description: "Manage key vaults, but does not allow you to assign roles in Azure RBAC, and does not allow you to access secrets, keys, or certificates.",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.KeyVault/*",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
        ],
        not_actions: &[
            "Microsoft.KeyVault/locations/deletedVaults/purge/action",
            "Microsoft.KeyVault/hsmPools/*",
            "Microsoft.KeyVault/managedHsms/*",
        ],
        data_actions: &[],
        not_data_actions: &[],
    },
    RoleDefinition {
        id: KEY_VAULT_ADMINISTRATOR,
        name: "Key Vault Administrator",
        description: "Perform all data plane operations on a key vault and all objects in it, including certificates, keys, and secrets. Cannot manage key vault resources or manage role assignments. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: KEY_VAULT_MANAGEMENT_READ,
        not_actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/*"],
        not_data_actions: &[],
    },
    RoleDefinition {
        id: KEY_VAULT_SECRETS_OFFICER,
        name: "Key Vault Secrets Officer",
        description: "Perform any action on the secrets of a key vault, except manage permissions. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: KEY_VAULT_MANAGEMENT_READ,
        not_actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/secrets/*"],
        not_data_actions: &[],
    },
    RoleDefinition {
        id: KEY_VAULT_SECRETS_USER,
        name: "Key Vault Secrets User",
        description: "Read secret contents. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
        not_data_actions: &[],
    },
    RoleDefinition {
        id: KEY_VAULT_READER,
        name: "Key Vault Reader",
        description: "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive values such as secret contents or key material. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: KEY_VAULT_MANAGEMENT_READ,
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
        not_data_actions: &[],
    },
];

/// Finds a built-in role by its GUID or by a full role definition id ending in it.
pub fn role_definition(id: &str) -> Option<&'static RoleDefinition> {
    let guid = id.rsplit('/').next().unwrap_or(id);
    BUILTIN_ROLES
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(guid))
}

/// Finds a built-in role by its display name (case-insensitive).
pub fn role_by_name(name: &str) -> Option<&'static RoleDefinition> {
    BUILTIN_ROLES
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name.trim()))
}

/// Azure action matching: segments separated by '/', `*` matches any run of characters.
/// Case-insensitive.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], a) || (!a.is_empty() && glob(p, &a[1..])),
            (Some(pc), Some(ac)) if pc.eq_ignore_ascii_case(ac) => glob(&p[1..], &a[1..]),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), action.as_bytes())
}

/// Whether an assignment at `assignment_scope` covers `target` (the same scope or beneath it).
pub fn scope_covers(assignment_scope: &str, target: &str) -> bool {
    let s = assignment_scope.trim_end_matches('/').to_ascii_lowercase();
    let t = target.trim_end_matches('/').to_ascii_lowercase();
    s == "/" || t == s || t.starts_with(&format!("{s}/"))
}

impl RoleDefinition {
    pub fn allows_action(&self, action: &str) -> bool {
        self.actions.iter().any(|p| action_matches(p, action))
            && !self.not_actions.iter().any(|p| action_matches(p, action))
    }

    pub fn allows_data_action(&self, action: &str) -> bool {
        self.data_actions.iter().any(|p| action_matches(p, action))
            && !self
                .not_data_actions
                .iter()
                .any(|p| action_matches(p, action))
    }
}

/// Whether any of `assignments` grants `action` at `target`. `data` picks data actions.
pub fn permits(assignments: &[RoleAssignmentRow], target: &str, action: &str, data: bool) -> bool {
    assignments.iter().any(|a| {
        scope_covers(&a.scope, target)
            && role_definition(&a.role_definition_id).is_some_and(|r| {
                if data {
                    r.allows_data_action(action)
                } else {
                    r.allows_action(action)
                }
            })
    })
}

/// The subscriptions a principal sees in ARM's subscription list: those in which it holds a role
/// at any scope (the subscription, a group, a resource), as in Azure. Lowercase ids.
pub fn subscriptions_in_reach(
    assignments: &[RoleAssignmentRow],
) -> std::collections::BTreeSet<String> {
    assignments
        .iter()
        .filter_map(|a| {
            let mut parts = a.scope.split('/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(""), Some(kind), Some(id))
                    if kind.eq_ignore_ascii_case("subscriptions") && !id.is_empty() =>
                {
                    Some(id.to_ascii_lowercase())
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_in_reach_are_those_of_any_assignment_scope() {
        let a = [
            assignment("/subscriptions/S1", READER),
            assignment("/subscriptions/s2/resourceGroups/rg", READER),
            assignment(
                "/subscriptions/s2/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
                OWNER,
            ),
            assignment("/", READER),
            assignment("/providers/Microsoft.Management/managementGroups/m", READER),
        ];
        let got: Vec<String> = subscriptions_in_reach(&a).into_iter().collect();
        assert_eq!(got, ["s1", "s2"]);
    }

    fn assignment(scope: &str, role: &str) -> RoleAssignmentRow {
        RoleAssignmentRow {
            id: "a".into(),
            scope: scope.into(),
            role_definition_id: role.into(),
            principal_id: "p".into(),
            created: 0,
        }
    }

    #[test]
    fn wildcards_match_like_azure() {
        assert!(action_matches(
            "Microsoft.KeyVault/vaults/secrets/*",
            "Microsoft.KeyVault/vaults/secrets/getSecret/action"
        ));
        assert!(action_matches("*/read", "Microsoft.KeyVault/vaults/read"));
        assert!(!action_matches("*/read", "Microsoft.KeyVault/vaults/write"));
        assert!(action_matches(
            "Microsoft.Authorization/*/Delete",
            "microsoft.authorization/locks/delete"
        ));
        assert!(!action_matches(
            "Microsoft.KeyVault/vaults/secrets/*",
            "Microsoft.KeyVault/vaults/keys/read"
        ));
        // Key Vault Reader lists readMetadata separately because `vaults/*/read` does not
        // match it.
        assert!(!action_matches(
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
        ));
    }

    #[test]
    fn builtin_roles_are_unique_and_found_by_id_or_name() {
        for r in BUILTIN_ROLES {
            assert!(crate::arm::is_guid(r.id), "{}", r.name);
            assert_eq!(role_definition(r.id).unwrap().name, r.name);
            assert_eq!(
                role_definition(&format!(
                    "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/{}",
                    r.id.to_uppercase()
                ))
                .unwrap()
                .id,
                r.id
            );
            assert_eq!(role_by_name(&r.name.to_lowercase()).unwrap().id, r.id);
            assert_eq!(BUILTIN_ROLES.iter().filter(|o| o.id == r.id).count(), 1);
        }
    }

    #[test]
    fn scopes_inherit_downwards_only() {
        let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v";
        assert!(scope_covers("/subscriptions/s", vault));
        assert!(scope_covers(vault, &format!("{vault}/secrets/x")));
        assert!(!scope_covers(&format!("{vault}/secrets/x"), vault));
        assert!(!scope_covers(vault, &format!("{vault}2")));
    }

    #[test]
    fn contributor_cannot_write_authorization_but_owner_can() {
        let sub = "/subscriptions/s";
        let lock = "Microsoft.Authorization/locks/write";
        assert!(!permits(&[assignment(sub, CONTRIBUTOR)], sub, lock, false));
        assert!(permits(&[assignment(sub, OWNER)], sub, lock, false));
        assert!(permits(
            &[assignment(sub, CONTRIBUTOR)],
            sub,
            "Microsoft.KeyVault/vaults/write",
            false
        ));
        // Owner holds no data actions: management rights do not read secrets.
        assert!(!permits(
            &[assignment(sub, OWNER)],
            sub,
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            true
        ));
    }
}
