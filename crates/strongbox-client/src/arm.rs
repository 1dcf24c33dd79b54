//! The management API, shaped like Azure Resource Manager: request builders whose paths,
//! api-versions and bodies are the ones the official SDKs send (azure-mgmt-keyvault 14.1 for
//! vaults and access policies, azure-mgmt-resource-locks 1.0 for locks, azure-mgmt-authorization
//! 4.0 for role assignments, azure-mgmt-monitor 6.x for diagnostic settings), plus Strongbox's
//! storage accounts (local directories) and audit query / insights. `base` is the management
//! base URL (the authority, `https://localhost:8443`).

use crate::{Call, Plane, seg};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const VAULTS_API: &str = "2026-05-15";
pub const LOCKS_API: &str = "2020-05-01";
pub const ROLES_API: &str = "2022-04-01";
pub const DIAGNOSTICS_API: &str = "2021-05-01-preview";
pub const STORAGE_API: &str = "2024-01-01";
pub const AUDIT_API: &str = "2024-01-01";

fn call(method: Method, base: &str, path: &str, api: &str) -> Call {
    let sep = if path.contains('?') { '&' } else { '?' };
    Call::new(
        method,
        format!("{}{path}{sep}api-version={api}", base.trim_end_matches('/')),
        Plane::Management,
    )
}

/// Where a resource lives.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a> {
    pub subscription: &'a str,
    pub resource_group: &'a str,
}

impl Group<'_> {
    fn prefix(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            seg(self.subscription),
            seg(self.resource_group)
        )
    }
    /// The ARM id of a vault.
    pub fn vault_id(&self, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.KeyVault/vaults/{}",
            self.prefix(),
            seg(name)
        )
    }
    pub fn storage_id(&self, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.Storage/storageAccounts/{}",
            self.prefix(),
            seg(name)
        )
    }
}

// ---------------------------------------------------------------- vaults

/// What `vault create` sets.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVault {
    pub location: String,
    pub tenant_id: String,
    pub retention_days: i64,
    pub purge_protection: bool,
    pub enable_rbac: bool,
    pub tags: Option<BTreeMap<String, String>>,
}

pub fn vault_create(base: &str, g: &Group, name: &str, v: &NewVault) -> Call {
    let mut properties = json!({
        "tenantId": v.tenant_id,
        "sku": {"family": "A", "name": "standard"},
        "accessPolicies": [],
        "enableSoftDelete": true,
        "softDeleteRetentionInDays": v.retention_days,
        "enableRbacAuthorization": v.enable_rbac,
    });
    // Purge protection cannot be turned off once on; leave it unset unless asked.
    if v.purge_protection {
        properties["enablePurgeProtection"] = json!(true);
    }
    let mut body = json!({"location": v.location, "properties": properties});
    if let Some(t) = &v.tags {
        body["tags"] = json!(t);
    }
    call(Method::PUT, base, &g.vault_id(name), VAULTS_API).body(body)
}

pub fn vault_get(base: &str, g: &Group, name: &str) -> Call {
    call(Method::GET, base, &g.vault_id(name), VAULTS_API)
}

/// Vaults of a resource group, or of the whole subscription when `resource_group` is None.
pub fn vault_list(base: &str, subscription: &str, resource_group: Option<&str>) -> Call {
    let path = match resource_group {
        Some(rg) => format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults",
            seg(subscription),
            seg(rg)
        ),
        None => format!(
            "/subscriptions/{}/providers/Microsoft.KeyVault/vaults",
            seg(subscription)
        ),
    };
    call(Method::GET, base, &path, VAULTS_API)
}

/// A PATCH of the given properties (and tags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VaultPatch {
    pub retention_days: Option<i64>,
    pub purge_protection: Option<bool>,
    pub enable_rbac: Option<bool>,
    pub tags: Option<BTreeMap<String, String>>,
}

pub fn vault_update(base: &str, g: &Group, name: &str, p: &VaultPatch) -> Call {
    let mut properties = json!({});
    if let Some(d) = p.retention_days {
        properties["softDeleteRetentionInDays"] = json!(d);
    }
    if let Some(b) = p.purge_protection {
        properties["enablePurgeProtection"] = json!(b);
    }
    if let Some(b) = p.enable_rbac {
        properties["enableRbacAuthorization"] = json!(b);
    }
    let mut body = json!({"properties": properties});
    if let Some(t) = &p.tags {
        body["tags"] = json!(t);
    }
    call(Method::PATCH, base, &g.vault_id(name), VAULTS_API).body(body)
}

pub fn vault_delete(base: &str, g: &Group, name: &str) -> Call {
    call(Method::DELETE, base, &g.vault_id(name), VAULTS_API)
}

/// Recovering a soft-deleted vault is a PUT with `createMode: recover`.
pub fn vault_recover(base: &str, g: &Group, name: &str, location: &str, tenant_id: &str) -> Call {
    let body = json!({"location": location, "properties": {
        "tenantId": tenant_id, "sku": {"family": "A", "name": "standard"}, "createMode": "recover"}});
    call(Method::PUT, base, &g.vault_id(name), VAULTS_API).body(body)
}

pub fn vault_list_deleted(base: &str, subscription: &str) -> Call {
    call(
        Method::GET,
        base,
        &format!(
            "/subscriptions/{}/providers/Microsoft.KeyVault/deletedVaults",
            seg(subscription)
        ),
        VAULTS_API,
    )
}

fn deleted_vault_path(subscription: &str, location: &str, name: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.KeyVault/locations/{}/deletedVaults/{}",
        seg(subscription),
        seg(location),
        seg(name)
    )
}

pub fn vault_get_deleted(base: &str, subscription: &str, location: &str, name: &str) -> Call {
    call(
        Method::GET,
        base,
        &deleted_vault_path(subscription, location, name),
        VAULTS_API,
    )
}

pub fn vault_purge(base: &str, subscription: &str, location: &str, name: &str) -> Call {
    let path = format!("{}/purge", deleted_vault_path(subscription, location, name));
    call(Method::POST, base, &path, VAULTS_API)
}

// ---------------------------------------------------------------- access policies

/// `add` merges permissions, `replace` overwrites them, `remove` takes them away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Add,
    Replace,
    Remove,
}

impl PolicyKind {
    fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Add => "add",
            PolicyKind::Replace => "replace",
            PolicyKind::Remove => "remove",
        }
    }
}

pub fn access_policy(
    base: &str,
    g: &Group,
    vault: &str,
    kind: PolicyKind,
    tenant_id: &str,
    object_id: &str,
    secret_permissions: &[String],
) -> Call {
    let path = format!("{}/accessPolicies/{}", g.vault_id(vault), kind.as_str());
    let body = json!({"properties": {"accessPolicies": [{
        "tenantId": tenant_id, "objectId": object_id,
        "permissions": {"secrets": secret_permissions}}]}});
    call(Method::PUT, base, &path, VAULTS_API).body(body)
}

// ---------------------------------------------------------------- locks

/// Where a lock sits: a resource group, or a vault in it.
#[derive(Debug, Clone, PartialEq)]
pub enum LockScope<'a> {
    Group(Group<'a>),
    Vault(Group<'a>, &'a str),
}

impl LockScope<'_> {
    /// The path the SDK builds: resource-level paths spell `resourcegroups` in lower case and
    /// carry an empty parent-resource segment (`Microsoft.KeyVault//vaults`).
    fn path(&self) -> String {
        match self {
            LockScope::Group(g) => {
                format!("{}/providers/Microsoft.Authorization/locks", g.prefix())
            }
            LockScope::Vault(g, v) => format!(
                "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.KeyVault//vaults/{}/providers/Microsoft.Authorization/locks",
                seg(g.subscription),
                seg(g.resource_group),
                seg(v)
            ),
        }
    }
}

pub fn lock_create(
    base: &str,
    scope: &LockScope,
    name: &str,
    level: &str,
    notes: Option<&str>,
) -> Call {
    let mut properties = json!({"level": level});
    if let Some(n) = notes {
        properties["notes"] = json!(n);
    }
    let path = format!("{}/{}", scope.path(), seg(name));
    call(Method::PUT, base, &path, LOCKS_API).body(json!({"properties": properties}))
}

pub fn lock_list(base: &str, scope: &LockScope) -> Call {
    call(Method::GET, base, &scope.path(), LOCKS_API)
}

pub fn lock_delete(base: &str, scope: &LockScope, name: &str) -> Call {
    call(
        Method::DELETE,
        base,
        &format!("{}/{}", scope.path(), seg(name)),
        LOCKS_API,
    )
}

// ---------------------------------------------------------------- role assignments

/// Built-in roles by name; any GUID is accepted as well.
pub const ROLES: &[(&str, &str)] = &[
    ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
    ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
    ("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    (
        "Key Vault Administrator",
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    ),
    (
        "Key Vault Contributor",
        "f25e0fa2-a7c8-4377-a976-54943a77a395",
    ),
    ("Key Vault Reader", "21090545-7ca7-4776-b22c-e363652d74d2"),
    (
        "Key Vault Secrets Officer",
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    ),
    (
        "Key Vault Secrets User",
        "4633458b-17de-408a-b874-0445c86b69e6",
    ),
];

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// The role definition GUID for a role name or GUID.
pub fn role_guid(role: &str) -> Option<String> {
    if is_guid(role) {
        return Some(role.to_ascii_lowercase());
    }
    let guid = role.rsplit('/').next().unwrap_or(role);
    if is_guid(guid) {
        return Some(guid.to_ascii_lowercase());
    }
    ROLES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(role.trim()))
        .map(|(_, g)| g.to_string())
}

pub fn role_name(definition_id: &str) -> Option<&'static str> {
    let guid = definition_id.rsplit('/').next().unwrap_or(definition_id);
    ROLES
        .iter()
        .find(|(_, g)| g.eq_ignore_ascii_case(guid))
        .map(|(n, _)| *n)
}

fn scope_path(scope: &str) -> String {
    format!("/{}", scope.trim_matches('/'))
}

pub fn role_assign(
    base: &str,
    scope: &str,
    assignment: &str,
    subscription: &str,
    role_guid: &str,
    principal_id: &str,
    principal_type: Option<&str>,
) -> Call {
    let path = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{}",
        scope_path(scope),
        seg(assignment)
    );
    let mut properties = json!({
        "roleDefinitionId": format!(
            "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"),
        "principalId": principal_id,
    });
    if let Some(t) = principal_type {
        properties["principalType"] = json!(t);
    }
    call(Method::PUT, base, &path, ROLES_API).body(json!({"properties": properties}))
}

/// Assignments that apply at the scope: those at it or above it, and (unless `at_scope`)
/// those beneath it; only one principal's if given. Both filters are joined with `and`, as
/// azure-mgmt-authorization sends them.
pub fn role_list(base: &str, scope: &str, principal_id: Option<&str>, at_scope: bool) -> Call {
    let mut terms = vec![];
    if at_scope {
        terms.push("atScope()".to_string());
    }
    if let Some(p) = principal_id {
        terms.push(format!("principalId eq '{}'", p.replace('\'', "")));
    }
    let mut path = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments",
        scope_path(scope)
    );
    if !terms.is_empty() {
        let query =
            serde_urlencoded::to_string([("$filter", terms.join(" and "))]).unwrap_or_default();
        path = format!("{path}?{query}");
    }
    call(Method::GET, base, &path, ROLES_API)
}

/// The role definitions available at a scope (Strongbox's built-in roles).
pub fn role_definitions(base: &str, scope: &str) -> Call {
    let path = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions",
        scope_path(scope)
    );
    call(Method::GET, base, &path, ROLES_API)
}

/// Deletes by full id (`{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`).
pub fn role_delete(base: &str, assignment_id: &str) -> Call {
    call(Method::DELETE, base, &scope_path(assignment_id), ROLES_API)
}

pub fn role_assignment_id(scope: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{}",
        scope_path(scope),
        seg(name)
    )
}

// ---------------------------------------------------------------- storage accounts

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageOptions {
    pub location: String,
    pub local_path: Option<String>,
    pub max_file_bytes: Option<i64>,
    pub max_file_age_secs: Option<i64>,
    pub tags: Option<BTreeMap<String, String>>,
}

pub fn storage_create(base: &str, g: &Group, name: &str, o: &StorageOptions) -> Call {
    let mut properties = json!({});
    if let Some(p) = &o.local_path {
        properties["localPath"] = json!(p);
    }
    if let Some(b) = o.max_file_bytes {
        properties["maxFileBytes"] = json!(b);
    }
    if let Some(s) = o.max_file_age_secs {
        properties["maxFileAgeSeconds"] = json!(s);
    }
    let mut body = json!({"location": o.location, "kind": "StorageV2",
        "sku": {"name": "Standard_LRS"}, "properties": properties});
    if let Some(t) = &o.tags {
        body["tags"] = json!(t);
    }
    call(Method::PUT, base, &g.storage_id(name), STORAGE_API).body(body)
}

pub fn storage_get(base: &str, g: &Group, name: &str) -> Call {
    call(Method::GET, base, &g.storage_id(name), STORAGE_API)
}

pub fn storage_list(base: &str, subscription: &str, resource_group: Option<&str>) -> Call {
    let path = match resource_group {
        Some(rg) => format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts",
            seg(subscription),
            seg(rg)
        ),
        None => format!(
            "/subscriptions/{}/providers/Microsoft.Storage/storageAccounts",
            seg(subscription)
        ),
    };
    call(Method::GET, base, &path, STORAGE_API)
}

pub fn storage_delete(base: &str, g: &Group, name: &str) -> Call {
    call(Method::DELETE, base, &g.storage_id(name), STORAGE_API)
}

// ---------------------------------------------------------------- diagnostic settings

fn diagnostics_path(vault_id: &str) -> String {
    format!("{vault_id}/providers/Microsoft.Insights/diagnosticSettings")
}

/// A setting that sends the vault's audit logs (category group `audit`, or the named
/// categories) to a storage account, or only keeps them in the store (`storage_account_id`
/// None).
pub fn diagnostic_set(
    base: &str,
    vault_id: &str,
    name: &str,
    storage_account_id: Option<&str>,
    categories: &[String],
) -> Call {
    let logs: Vec<Value> = if categories.is_empty() {
        vec![json!({"categoryGroup": "audit", "enabled": true})]
    } else {
        categories
            .iter()
            .map(|c| json!({"category": c, "enabled": true}))
            .collect()
    };
    let mut properties = json!({"logs": logs, "metrics": []});
    if let Some(id) = storage_account_id {
        properties["storageAccountId"] = json!(id);
    }
    let path = format!("{}/{}", diagnostics_path(vault_id), seg(name));
    call(Method::PUT, base, &path, DIAGNOSTICS_API).body(json!({"properties": properties}))
}

pub fn diagnostic_get(base: &str, vault_id: &str, name: &str) -> Call {
    let path = format!("{}/{}", diagnostics_path(vault_id), seg(name));
    call(Method::GET, base, &path, DIAGNOSTICS_API)
}

pub fn diagnostic_list(base: &str, vault_id: &str) -> Call {
    call(
        Method::GET,
        base,
        &diagnostics_path(vault_id),
        DIAGNOSTICS_API,
    )
}

pub fn diagnostic_delete(base: &str, vault_id: &str, name: &str) -> Call {
    let path = format!("{}/{}", diagnostics_path(vault_id), seg(name));
    call(Method::DELETE, base, &path, DIAGNOSTICS_API)
}

// ---------------------------------------------------------------- audit query and insights

/// Filters of the audit query and insights (times in RFC 3339).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub operation: Option<String>,
    pub caller: Option<String>,
    pub result: Option<String>,
}

impl AuditQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("operation", &self.operation),
            ("caller", &self.caller),
            ("result", &self.result),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

pub fn audit_query(base: &str, vault_id: &str, q: &AuditQuery, top: Option<u32>) -> Call {
    let mut pairs = q.pairs();
    if let Some(t) = top {
        pairs.push(("$top", t.to_string()));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let sep = if query.is_empty() { "" } else { "?" };
    let path = format!("{vault_id}/providers/Microsoft.Insights/auditEvents{sep}{query}");
    call(Method::GET, base, &path, AUDIT_API)
}

pub fn audit_insights(base: &str, vault_id: &str, q: &AuditQuery, interval: Option<&str>) -> Call {
    let mut pairs = q.pairs();
    if let Some(i) = interval {
        pairs.push(("interval", i.to_string()));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let sep = if query.is_empty() { "" } else { "?" };
    let path = format!("{vault_id}/providers/Microsoft.Insights/auditInsights{sep}{query}");
    call(Method::GET, base, &path, AUDIT_API)
}

// ---------------------------------------------------------------- edge devices

pub const DEVICES_API: &str = "2023-07-01";

fn device_path(g: &Group, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/{}",
        g.prefix(),
        seg(name)
    )
}

pub fn device_create(base: &str, g: &Group, name: &str, location: &str) -> Call {
    call(Method::PUT, base, &device_path(g, name), DEVICES_API).body(json!({
        "location": location,
        "sku": {"name": "Edge", "tier": "Standard"},
        "identity": {"type": "SystemAssigned"},
    }))
}

pub fn device_get(base: &str, g: &Group, name: &str) -> Call {
    call(Method::GET, base, &device_path(g, name), DEVICES_API)
}

pub fn device_list(base: &str, subscription: &str, resource_group: Option<&str>) -> Call {
    let path = match resource_group {
        Some(rg) => format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices",
            seg(subscription),
            seg(rg)
        ),
        None => format!(
            "/subscriptions/{}/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices",
            seg(subscription)
        ),
    };
    call(Method::GET, base, &path, DEVICES_API)
}

/// Deletes a device; its vault goes too only with `delete_vault`.
pub fn device_delete(base: &str, g: &Group, name: &str, delete_vault: bool) -> Call {
    let path = format!("{}?deleteVault={delete_vault}", device_path(g, name));
    call(Method::DELETE, base, &path, DEVICES_API)
}

/// Starts generating an activation key (a long-running operation; the answer names it).
pub fn device_generate_key(base: &str, g: &Group, name: &str, vault_name: Option<&str>) -> Call {
    let body = match vault_name {
        Some(v) => json!({"vaultName": v}),
        None => json!({}),
    };
    let path = format!("{}/generateActivationKey", device_path(g, name));
    call(Method::POST, base, &path, DEVICES_API).body(body)
}

/// Starts recovering a device's vault or its identity's access (a long-running operation).
pub fn device_recover_vault(base: &str, g: &Group, name: &str, new_vault: Option<&str>) -> Call {
    let body = match new_vault {
        Some(v) => json!({"vaultName": v}),
        None => json!({}),
    };
    let path = format!("{}/recoverKeyVault", device_path(g, name));
    call(Method::POST, base, &path, DEVICES_API).body(body)
}

/// Asks the device to push its secrets again (a long-running operation the device completes).
pub fn device_sync_secrets(base: &str, g: &Group, name: &str) -> Call {
    let path = format!("{}/syncSecrets", device_path(g, name));
    call(Method::POST, base, &path, DEVICES_API).body(json!({}))
}

/// Sends a customer secret to the device, sealed under its CIK: text, or (with a content type)
/// the base64 of any bytes.
pub fn device_send_secret(
    base: &str,
    g: &Group,
    name: &str,
    secret: &str,
    value: &str,
    content_type: Option<&str>,
) -> Call {
    let path = format!("{}/sendSecret", device_path(g, name));
    let mut body = json!({"secretName": secret, "value": value});
    if let Some(ct) = content_type {
        body["contentType"] = json!(ct);
    }
    call(Method::POST, base, &path, DEVICES_API).body(body)
}

/// The alerts a device raises now.
pub fn device_alerts(base: &str, g: &Group, name: &str) -> Call {
    let path = format!("{}/alerts", device_path(g, name));
    call(Method::GET, base, &path, DEVICES_API)
}

pub fn device_operation(base: &str, g: &Group, name: &str, operation_id: &str) -> Call {
    let path = format!(
        "{}/operationsStatus/{}",
        device_path(g, name),
        seg(operation_id)
    );
    call(Method::GET, base, &path, DEVICES_API)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "https://localhost:8443";
    const G: Group = Group {
        subscription: "sub",
        resource_group: "rg",
    };

    fn path(c: &Call) -> &str {
        c.url.strip_prefix(B).unwrap()
    }

    #[test]
    fn vault_requests_match_azure_mgmt_keyvault() {
        let c = vault_create(
            B,
            &G,
            "v1",
            &NewVault {
                location: "local".into(),
                tenant_id: "t".into(),
                retention_days: 7,
                purge_protection: true,
                enable_rbac: false,
                tags: None,
            },
        );
        assert_eq!(c.method, Method::PUT);
        assert_eq!(
            path(&c),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v1?api-version=2026-05-15"
        );
        assert_eq!(
            c.body.unwrap(),
            json!({"location": "local", "properties": {"tenantId": "t",
                "sku": {"family": "A", "name": "standard"}, "accessPolicies": [],
                "enableSoftDelete": true, "softDeleteRetentionInDays": 7,
                "enableRbacAuthorization": false, "enablePurgeProtection": true}})
        );
        assert_eq!(
            path(&vault_list(B, "sub", None)),
            "/subscriptions/sub/providers/Microsoft.KeyVault/vaults?api-version=2026-05-15"
        );
        let u = vault_update(
            B,
            &G,
            "v1",
            &VaultPatch {
                enable_rbac: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(u.method, Method::PATCH);
        assert_eq!(
            u.body.unwrap(),
            json!({"properties": {"enableRbacAuthorization": true}})
        );
        let r = vault_recover(B, &G, "v1", "local", "t");
        assert_eq!(r.body.unwrap()["properties"]["createMode"], "recover");
        assert_eq!(
            path(&vault_purge(B, "sub", "local", "v1")),
            "/subscriptions/sub/providers/Microsoft.KeyVault/locations/local/deletedVaults/v1/purge?api-version=2026-05-15"
        );
        assert_eq!(vault_purge(B, "sub", "local", "v1").method, Method::POST);
        assert_eq!(
            path(&vault_list_deleted(B, "sub")),
            "/subscriptions/sub/providers/Microsoft.KeyVault/deletedVaults?api-version=2026-05-15"
        );
        let p = access_policy(
            B,
            &G,
            "v1",
            PolicyKind::Replace,
            "t",
            "o",
            &["get".into(), "list".into()],
        );
        assert_eq!(
            path(&p),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v1/accessPolicies/replace?api-version=2026-05-15"
        );
        assert_eq!(
            p.body.unwrap(),
            json!({"properties": {"accessPolicies": [{"tenantId": "t", "objectId": "o",
                "permissions": {"secrets": ["get", "list"]}}]}})
        );
    }

    #[test]
    fn lock_requests_match_the_locks_sdk_wire_format() {
        let c = lock_create(
            B,
            &LockScope::Vault(G, "v1"),
            "nodelete",
            "CanNotDelete",
            Some("n"),
        );
        assert_eq!(
            path(&c),
            "/subscriptions/sub/resourcegroups/rg/providers/Microsoft.KeyVault//vaults/v1/providers/Microsoft.Authorization/locks/nodelete?api-version=2020-05-01"
        );
        assert_eq!(
            c.body.unwrap(),
            json!({"properties": {"level": "CanNotDelete", "notes": "n"}})
        );
        assert_eq!(
            path(&lock_list(B, &LockScope::Group(G))),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Authorization/locks?api-version=2020-05-01"
        );
        assert_eq!(
            lock_delete(B, &LockScope::Group(G), "l").method,
            Method::DELETE
        );
    }

    #[test]
    fn role_requests_match_azure_mgmt_authorization() {
        let scope = G.vault_id("v1");
        let c = role_assign(
            B,
            &scope,
            "1111",
            "sub",
            "4633458b-17de-408a-b874-0445c86b69e6",
            "oid",
            Some("ServicePrincipal"),
        );
        assert_eq!(
            path(&c),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v1/providers/Microsoft.Authorization/roleAssignments/1111?api-version=2022-04-01"
        );
        assert_eq!(
            c.body.unwrap(),
            json!({"properties": {"roleDefinitionId": "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
                "principalId": "oid", "principalType": "ServicePrincipal"}})
        );
        assert_eq!(
            path(&role_list(B, "/subscriptions/sub", None, true)),
            "/subscriptions/sub/providers/Microsoft.Authorization/roleAssignments?%24filter=atScope%28%29&api-version=2022-04-01"
        );
        assert_eq!(
            path(&role_list(B, "/subscriptions/sub", None, false)),
            "/subscriptions/sub/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
        );
        assert!(
            path(&role_list(B, "/subscriptions/sub", Some("o'1"), true))
                .contains("%24filter=atScope%28%29+and+principalId+eq+%27o1%27&")
        );
        assert_eq!(
            path(&role_definitions(B, "/subscriptions/sub")),
            "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01"
        );
        assert_eq!(
            role_guid("key vault secrets user").unwrap(),
            "4633458b-17de-408a-b874-0445c86b69e6"
        );
        assert_eq!(
            role_guid("/x/roleDefinitions/ACDD72A7-3385-48EF-BD42-F606FBA81AE7").unwrap(),
            "acdd72a7-3385-48ef-bd42-f606fba81ae7"
        );
        assert_eq!(role_guid("Nonsense"), None);
        assert_eq!(
            role_name("/p/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
            Some("Owner")
        );
        let id = role_assignment_id("/subscriptions/sub", "1111");
        assert_eq!(
            path(&role_delete(B, &id)),
            "/subscriptions/sub/providers/Microsoft.Authorization/roleAssignments/1111?api-version=2022-04-01"
        );
    }

    #[test]
    fn diagnostics_storage_and_audit_requests() {
        let vault = G.vault_id("v1");
        let c = diagnostic_set(B, &vault, "to files", Some(&G.storage_id("logs")), &[]);
        assert_eq!(
            path(&c),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v1/providers/Microsoft.Insights/diagnosticSettings/to%20files?api-version=2021-05-01-preview"
        );
        assert_eq!(
            c.body.unwrap(),
            json!({"properties": {"storageAccountId": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/logs",
                "logs": [{"categoryGroup": "audit", "enabled": true}], "metrics": []}})
        );
        let s = storage_create(
            B,
            &G,
            "logs",
            &StorageOptions {
                location: "local".into(),
                max_file_bytes: Some(4096),
                ..Default::default()
            },
        );
        assert_eq!(s.body.unwrap()["properties"], json!({"maxFileBytes": 4096}));
        let q = audit_query(
            B,
            &vault,
            &AuditQuery {
                operation: Some("SecretGet".into()),
                result: Some("Failure".into()),
                ..Default::default()
            },
            Some(50),
        );
        assert_eq!(
            path(&q),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v1/providers/Microsoft.Insights/auditEvents?operation=SecretGet&result=Failure&%24top=50&api-version=2024-01-01"
        );
        let i = audit_insights(B, &vault, &AuditQuery::default(), Some("PT5M"));
        assert!(path(&i).ends_with("/auditInsights?interval=PT5M&api-version=2024-01-01"));
    }
}
