//! Rows as the store keeps them. Secret names are stored canonical (lowercase) in `name`, as
//! typed in `display_name`: AKV names are case-insensitive.

#[derive(Debug, Clone, PartialEq)]
pub struct DataKeyRow {
    pub id: u32,
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRow {
    pub kid: String,
    /// PKCS#8 private key sealed by the keyring.
    pub sealed_private: Vec<u8>,
    /// The public JWK as JSON.
    pub public_jwk: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantRow {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalRow {
    /// The object id (`oid` claim); access policies name it.
    pub object_id: String,
    pub tenant_id: String,
    /// The application (client) id used at the token endpoint.
    pub client_id: String,
    pub display_name: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientSecretRow {
    pub id: String,
    pub principal_id: String,
    /// Keyed hash of the secret; the secret itself is never stored.
    pub hash: Vec<u8>,
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    pub id: String,
    pub tenant_id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VaultRow {
    pub id: String,
    /// Lowercase; unique across the deployment, soft-deleted vaults included.
    pub name: String,
    pub tenant_id: String,
    pub subscription_id: String,
    /// Lowercase resource group name.
    pub resource_group: String,
    pub location: String,
    /// The ARM id: `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}`.
    pub resource_id: String,
    /// Tags as a JSON object, or None.
    pub tags_json: Option<String>,
    pub retention_days: i64,
    pub purge_protection: bool,
    /// Data-plane authorization by role assignments instead of access policies.
    pub enable_rbac: bool,
    pub created: i64,
    /// Present while the vault is soft-deleted.
    pub deleted: Option<Deletion>,
}

/// A role assignment: `principal_id` holds `role_definition_id` at `scope` (an ARM id,
/// stored lowercase) and everything beneath it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleAssignmentRow {
    pub id: String,
    pub scope: String,
    pub role_definition_id: String,
    pub principal_id: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessPolicyRow {
    pub vault_id: String,
    pub object_id: String,
    /// Lowercase permission names: get, list, set, delete, recover, backup, restore, purge.
    pub secret_permissions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecretRow {
    pub vault_id: String,
    pub name: String,
    pub display_name: String,
    /// Present while soft-deleted.
    pub deleted: Option<Deletion>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deletion {
    pub deleted_at: i64,
    pub purge_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    pub vault_id: String,
    pub name: String,
    pub version: String,
    /// Creation order within the secret, assigned by the store.
    pub seq: i64,
    pub sealed_value: Vec<u8>,
    pub content_type: Option<String>,
    /// Tags as a JSON object, or None.
    pub tags_json: Option<String>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

/// An audit record to append: the AuditEvent JSON (never a secret value) plus indexed columns.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub vault_id: String,
    /// Unix milliseconds.
    pub time_ms: i64,
    pub operation: String,
    pub result_type: String,
    pub caller_oid: Option<String>,
    pub record_json: String,
}

/// A stored audit record with its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub entry: AuditEntry,
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}
