//! ARM scopes: `/subscriptions/{s}[/resourceGroups/{rg}[/providers/{ns}/{type}/{name}[/{type}/{name}]…]]`.
//! Role assignments live at a scope and cover everything beneath it; ids are compared
//! case-insensitively (stored lowercase) and shown in ARM's casing.

use crate::DomainError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub subscription_id: String,
    /// Lowercase.
    pub resource_group: Option<String>,
    /// The provider namespace and the (type, name) chain beneath the resource group, lowercase:
    /// `("microsoft.keyvault", [("vaults", "v"), ("secrets", "s")])`.
    pub resource: Option<(String, Vec<(String, String)>)>,
}

/// Longest scope accepted (ARM ids are far shorter in practice).
const MAX_SCOPE_LEN: usize = 1024;

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 260
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'(' | b')'))
}

/// ARM's casing of the segments Strongbox knows; anything else is shown lowercase.
fn display_segment(lower: &str) -> &str {
    const KNOWN: &[&str] = &[
        "resourceGroups",
        "providers",
        "Microsoft.KeyVault",
        "Microsoft.ManagedIdentity",
        "Microsoft.Authorization",
        "userAssignedIdentities",
        "roleAssignments",
        "roleDefinitions",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(lower))
        .copied()
        .unwrap_or(lower)
}

impl Scope {
    pub fn subscription(subscription_id: &str) -> Scope {
        Scope {
            subscription_id: subscription_id.to_ascii_lowercase(),
            resource_group: None,
            resource: None,
        }
    }

    /// Parses a scope; refuses anything that is not a subscription, a resource group or a
    /// resource beneath one (never the tenant root, never a path with empty or odd segments).
    pub fn parse(scope: &str) -> Result<Scope, DomainError> {
        let bad = || {
            DomainError::BadParameter(format!(
                "The scope '{}' is not valid: use /subscriptions/{{id}}[/resourceGroups/{{name}}[/providers/{{namespace}}/{{type}}/{{name}}…]].",
                scope.chars().take(200).collect::<String>()
            ))
        };
        if scope.len() > MAX_SCOPE_LEN {
            return Err(bad());
        }
        let trimmed = scope.strip_prefix('/').ok_or_else(bad)?;
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let segments: Vec<&str> = trimmed.split('/').collect();
        if segments.iter().any(|s| !valid_segment(s)) {
            return Err(bad());
        }
        let lower = |s: &str| s.to_ascii_lowercase();
        match segments.as_slice() {
            [subs, sub] if subs.eq_ignore_ascii_case("subscriptions") => Ok(Scope {
                subscription_id: lower(sub),
                resource_group: None,
                resource: None,
            }),
            [subs, sub, rgs, rg]
                if subs.eq_ignore_ascii_case("subscriptions")
                    && rgs.eq_ignore_ascii_case("resourceGroups") =>
            {
                Ok(Scope {
                    subscription_id: lower(sub),
                    resource_group: Some(lower(rg)),
                    resource: None,
                })
            }
            [subs, sub, rgs, rg, providers, ns, rest @ ..]
                if subs.eq_ignore_ascii_case("subscriptions")
                    && rgs.eq_ignore_ascii_case("resourceGroups")
                    && providers.eq_ignore_ascii_case("providers")
                    && !rest.is_empty()
                    && rest.len() % 2 == 0
                    && !rest.iter().any(|s| s.eq_ignore_ascii_case("providers")) =>
            {
                Ok(Scope {
                    subscription_id: lower(sub),
                    resource_group: Some(lower(rg)),
                    resource: Some((
                        lower(ns),
                        rest.chunks(2).map(|c| (lower(c[0]), lower(c[1]))).collect(),
                    )),
                })
            }
            _ => Err(bad()),
        }
    }

    /// The id in ARM's casing (names lowercase, as Strongbox keeps them).
    pub fn id(&self) -> String {
        let mut id = format!("/subscriptions/{}", self.subscription_id);
        if let Some(rg) = &self.resource_group {
            id.push_str(&format!("/resourceGroups/{rg}"));
        }
        if let Some((ns, chain)) = &self.resource {
            id.push_str(&format!("/providers/{}", display_segment(ns)));
            for (t, n) in chain {
                id.push_str(&format!("/{}/{n}", display_segment(t)));
            }
        }
        id
    }

    /// The lowercase form stored and compared.
    pub fn key(&self) -> String {
        self.id().to_ascii_lowercase()
    }

    /// The vault this scope names or lies in, if any: `(vault name, secret name)`.
    pub fn vault(&self) -> Option<(&str, Option<&str>)> {
        let (ns, chain) = self.resource.as_ref()?;
        if ns != "microsoft.keyvault" {
            return None;
        }
        match chain.as_slice() {
            [(t, v)] if t == "vaults" => Some((v, None)),
            [(t, v), (s, n)] if t == "vaults" && s == "secrets" => Some((v, Some(n))),
            _ => None,
        }
    }
}

/// Shows a stored (lowercase) scope in ARM's casing; unparsable input is returned as is.
pub fn display_scope(stored: &str) -> String {
    Scope::parse(stored)
        .map(|s| s.id())
        .unwrap_or_else(|_| stored.to_string())
}

/// Whether `s` is a GUID in its 8-4-4-4-12 hex form.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_at_every_level_and_show_in_arm_casing() {
        let s = Scope::parse("/subscriptions/ABC").unwrap();
        assert_eq!(s.id(), "/subscriptions/abc");
        let rg = Scope::parse("/subscriptions/s/resourcegroups/RG/").unwrap();
        assert_eq!(rg.id(), "/subscriptions/s/resourceGroups/rg");
        let secret = Scope::parse(
            "/subscriptions/s/resourceGroups/rg/providers/microsoft.keyvault/vaults/V/secrets/One",
        )
        .unwrap();
        assert_eq!(
            secret.id(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v/secrets/one"
        );
        assert_eq!(secret.vault(), Some(("v", Some("one"))));
        assert_eq!(
            display_scope(
                "/subscriptions/s/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/x"
            ),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x"
        );
    }

    #[test]
    fn odd_scopes_are_refused() {
        for bad in [
            "",
            "/",
            "subscriptions/s",
            "/subscriptions",
            "/subscriptions//resourceGroups/rg",
            "/subscriptions/s/resourceGroups",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v/providers/x/y/z",
            "/subscriptions/s/resourceGroups/r g",
            "/subscriptions/s/resourceGroups/rg/../x",
            "/subscriptions/s/resourceGroups/..",
            "/tenants/t",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Scope::parse(&format!("/subscriptions/{}", "a".repeat(2000))).is_err());
    }

    #[test]
    fn guids() {
        assert!(is_guid("8e3af657-a8ff-443c-a75c-2fe8c4bcb635"));
        assert!(!is_guid("8e3af657a8ff443ca75c2fe8c4bcb635"));
        assert!(!is_guid("8e3af657-a8ff-443c-a75c-2fe8c4bcb63z"));
    }
}
