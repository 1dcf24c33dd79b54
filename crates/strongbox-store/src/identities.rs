//! Identity storage beyond tenants and client secrets: managed identities (user-assigned ARM
//! resources and system-assigned ones owned by a resource), asymmetric key credentials
//! (certificates and public keys for signed client assertions), the replay cache of assertion
//! ids, and the secrets of managed-identity token endpoints (stored hashed).

use crate::{PrincipalRow, RoleAssignmentRow, StoreResult};
use async_trait::async_trait;

/// The ARM side of a managed identity. The identity itself is a [`PrincipalRow`] with the same
/// object id and kind `UserAssignedManagedIdentity` or `SystemAssignedManagedIdentity`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedIdentityRow {
    pub object_id: String,
    /// `UserAssigned` or `SystemAssigned`.
    pub kind: String,
    /// Lowercase ARM id: the identity's own id (user-assigned) or its owning resource's id
    /// (system-assigned). Unique per kind.
    pub resource_id: String,
    pub subscription_id: String,
    /// Lowercase resource group name.
    pub resource_group: String,
    /// The identity's name (user-assigned) or the owning resource's name (system-assigned).
    pub name: String,
    pub location: String,
    /// Tags as a JSON object, or None.
    pub tags_json: Option<String>,
    pub created: i64,
}

/// An asymmetric credential of a principal: a certificate or a bare public key whose private
/// half signs client assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCredentialRow {
    pub id: String,
    pub principal_id: String,
    /// `AsymmetricX509Cert` or `PublicKey`.
    pub kind: String,
    /// Unique per principal: the certificate's SHA-1 thumbprint (uppercase hex, as Azure shows
    /// it) or the key's id (`kid`).
    pub key_id: String,
    /// SHA-256 of `der` (hex): the certificate's `x5t#S256` thumbprint, or the key's fingerprint.
    pub sha256: String,
    /// The certificate (DER) or the SubjectPublicKeyInfo (DER).
    pub der: Vec<u8>,
    pub not_before: i64,
    pub expires: i64,
    pub created: i64,
}

/// How a workload reaches its managed identity's token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityEndpointRow {
    pub id: String,
    pub principal_id: String,
    /// `AppService` (a secret header, stored as its keyed hash) or `AzureArc` (a file challenge;
    /// no secret).
    pub form: String,
    pub secret_hash: Option<Vec<u8>>,
    pub created: i64,
}

#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn get_principal(&self, object_id: &str) -> StoreResult<Option<PrincipalRow>>;

    /// Inserts the principal and its managed-identity row in one transaction. Conflict if the
    /// object id, client id, or (kind, resource id) is taken.
    async fn insert_managed_identity(
        &self,
        principal: PrincipalRow,
        identity: ManagedIdentityRow,
    ) -> StoreResult<()>;
    /// The identity of that kind at that (case-insensitive) resource id.
    async fn get_managed_identity_by_resource(
        &self,
        kind: &str,
        resource_id: &str,
    ) -> StoreResult<Option<(ManagedIdentityRow, PrincipalRow)>>;
    async fn get_managed_identity(
        &self,
        object_id: &str,
    ) -> StoreResult<Option<(ManagedIdentityRow, PrincipalRow)>>;
    /// Managed identities of a subscription (both kinds), by resource id.
    async fn list_managed_identities(
        &self,
        subscription_id: &str,
    ) -> StoreResult<Vec<(ManagedIdentityRow, PrincipalRow)>>;
    /// Replaces tags. NotFound if absent.
    async fn update_managed_identity_tags(
        &self,
        object_id: &str,
        tags_json: Option<String>,
    ) -> StoreResult<()>;
    /// Removes the identity with its principal, key credentials, token-endpoint bindings and
    /// role assignments, in one transaction. NotFound if absent.
    async fn delete_managed_identity(&self, object_id: &str) -> StoreResult<()>;

    /// Conflict if the principal already has a credential with that key id.
    async fn insert_key_credential(&self, credential: KeyCredentialRow) -> StoreResult<()>;
    async fn list_key_credentials(&self, principal_id: &str) -> StoreResult<Vec<KeyCredentialRow>>;
    /// NotFound if absent.
    async fn delete_key_credential(&self, principal_id: &str, key_id: &str) -> StoreResult<()>;

    /// Remembers an assertion id until `expires`; false if it was already seen (a replay).
    /// Entries whose `expires` is before `now` are forgotten first.
    async fn record_assertion_id(
        &self,
        principal_id: &str,
        jti: &str,
        expires: i64,
        now: i64,
    ) -> StoreResult<bool>;

    /// Conflict if the id or the secret hash exists.
    async fn insert_identity_endpoint(&self, endpoint: IdentityEndpointRow) -> StoreResult<()>;
    async fn get_identity_endpoint(&self, id: &str) -> StoreResult<Option<IdentityEndpointRow>>;
    async fn get_identity_endpoint_by_hash(
        &self,
        secret_hash: &[u8],
    ) -> StoreResult<Option<IdentityEndpointRow>>;
    async fn list_identity_endpoints(
        &self,
        principal_id: &str,
    ) -> StoreResult<Vec<IdentityEndpointRow>>;

    async fn get_role_assignment(&self, id: &str) -> StoreResult<Option<RoleAssignmentRow>>;
}
