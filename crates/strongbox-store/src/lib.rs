//! The storage seam: one `Store` trait that the SQLite and PostgreSQL crates implement, the rows
//! it speaks, the audit hash chain (linked inside the store's commit, where the previous link is
//! known), and the conformance suite both implementations must pass.
//!
//! The store only ever sees ciphertext for secret values.

pub mod chain;
mod changes;
pub mod conformance;
mod conformance_vault_arm;
mod device_health;
mod devices;
mod identities;
pub mod insights;
mod keys;
mod locks;
mod rows;
mod users;
mod vault_arm;

pub use changes::*;
pub use device_health::*;
pub use devices::*;
pub use identities::*;
pub use insights::InsightsStore;
pub use keys::*;
pub use locks::*;
pub use rows::*;
pub use users::*;
pub use vault_arm::*;

/// A store's connection pools: connections open, and of those idle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
}

/// How much a store holds that is live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounts {
    pub vaults: u64,
    pub secrets: u64,
}

use async_trait::async_trait;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The row the operation needs does not exist (or not in the needed state).
    #[error("not found")]
    NotFound,
    /// The operation would overwrite or reuse something that exists.
    #[error("conflict")]
    Conflict,
    /// The backend failed; the text is for logs, never for clients.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The store's disk is full (SQLITE_FULL, ENOSPC, PostgreSQL's disk_full): writes fail until
    /// space is freed, then succeed again without a restart. Clients get 503 with Retry-After.
    #[error("the store's disk is full")]
    DiskFull,
}

/// The store's disk state, process-wide, so a full disk is logged once when it fills and once
/// when writes succeed again, not once per failed request.
pub mod disk {
    use std::sync::atomic::{AtomicBool, Ordering};

    static FULL: AtomicBool = AtomicBool::new(false);

    /// A backend reported a full disk: the error to return (logged the first time).
    pub fn full(detail: &dyn std::fmt::Display) -> super::StoreError {
        if !FULL.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %detail, "the store's disk is full: writes answer 503 until space is freed");
        }
        super::StoreError::DiskFull
    }

    /// A write committed: if the disk was full, say that writes work again.
    pub fn wrote() {
        if FULL.load(Ordering::Relaxed) && FULL.swap(false, Ordering::Relaxed) {
            tracing::info!("the store's disk has room again: writes succeed");
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A change to secrets. Each is applied atomically together with its audit record.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Adds a version (its `seq` is assigned by the store) and makes it the latest. Conflict if
    /// the secret is soft-deleted.
    PutVersion {
        display_name: String,
        version: VersionRow,
    },
    /// Replaces the mutable attributes of one version. NotFound if absent or deleted.
    UpdateVersion { version: VersionRow },
    /// NotFound unless the secret exists and is not deleted.
    SoftDelete {
        vault_id: String,
        name: String,
        deleted_at: i64,
        purge_at: i64,
    },
    /// NotFound unless the secret is soft-deleted.
    Recover { vault_id: String, name: String },
    /// Removes a soft-deleted secret and all its versions. NotFound unless soft-deleted.
    Purge { vault_id: String, name: String },
    /// Creates a secret with all its versions. Conflict if the name exists in any state.
    Restore {
        display_name: String,
        versions: Vec<VersionRow>,
    },
}

#[async_trait]
pub trait Store:
    LockStore
    + VaultArmStore
    + IdentityStore
    + InsightsStore
    + DeviceStore
    + DeviceHealthStore
    + ChangeStore
    + KeyStore
    + UserStore
    + Send
    + Sync
    + 'static
{
    /// Which backend this is, for logs and `/health`.
    fn backend(&self) -> &'static str;

    /// Connections of the store's pools, open and idle, for the server's metrics.
    fn pool_usage(&self) -> PoolUsage;

    /// Live (not soft-deleted) vaults and secrets, for the server's metrics.
    async fn count_live(&self) -> StoreResult<LiveCounts>;

    // --- deployment metadata and keys
    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Inserts unless present; returns the value that is stored afterwards (first writer wins).
    async fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> StoreResult<Vec<u8>>;
    async fn list_data_keys(&self) -> StoreResult<Vec<DataKeyRow>>;
    /// Conflict if the id is taken (another node created it first).
    async fn insert_data_key(&self, key: DataKeyRow) -> StoreResult<()>;
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>>;
    async fn insert_signing_key(&self, key: SigningKeyRow) -> StoreResult<()>;

    // --- identities
    async fn insert_tenant(&self, tenant: TenantRow) -> StoreResult<()>;
    async fn get_tenant(&self, id: &str) -> StoreResult<Option<TenantRow>>;
    async fn insert_principal(&self, principal: PrincipalRow) -> StoreResult<()>;
    async fn get_principal_by_client_id(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> StoreResult<Option<PrincipalRow>>;
    async fn insert_client_secret(&self, secret: ClientSecretRow) -> StoreResult<()>;
    async fn list_client_secrets(&self, principal_id: &str) -> StoreResult<Vec<ClientSecretRow>>;

    async fn insert_subscription(&self, subscription: SubscriptionRow) -> StoreResult<()>;
    async fn get_subscription(&self, id: &str) -> StoreResult<Option<SubscriptionRow>>;

    // --- vaults and their access policies
    /// Conflict if the name is taken (by a live or soft-deleted vault).
    async fn insert_vault(&self, vault: VaultRow) -> StoreResult<()>;
    /// The vault of that name, live or soft-deleted.
    async fn get_vault_by_name(&self, name: &str) -> StoreResult<Option<VaultRow>>;
    /// Every vault, live and soft-deleted, by name.
    async fn list_vaults(&self) -> StoreResult<Vec<VaultRow>>;
    /// Replaces the mutable properties (tags, retention, purge protection, RBAC, deletion state)
    /// and appends `audit` in the same transaction. NotFound if the id does not exist.
    async fn update_vault(&self, vault: VaultRow, audit: AuditEntry) -> StoreResult<()>;
    /// Removes a soft-deleted vault with its secrets, policies and role assignments (its audit
    /// records stay). NotFound unless it is soft-deleted.
    async fn purge_vault(&self, vault_id: &str, audit: AuditEntry) -> StoreResult<()>;
    async fn set_access_policy(&self, policy: AccessPolicyRow) -> StoreResult<()>;
    /// NotFound if there was no such policy.
    async fn delete_access_policy(&self, vault_id: &str, object_id: &str) -> StoreResult<()>;
    async fn list_access_policies(&self, vault_id: &str) -> StoreResult<Vec<AccessPolicyRow>>;

    // --- role assignments
    /// Conflict if the id exists.
    async fn insert_role_assignment(&self, assignment: RoleAssignmentRow) -> StoreResult<()>;
    /// NotFound if absent.
    async fn delete_role_assignment(&self, id: &str) -> StoreResult<()>;
    async fn list_role_assignments_for_principal(
        &self,
        principal_id: &str,
    ) -> StoreResult<Vec<RoleAssignmentRow>>;
    /// Assignments whose scope is `scope` or beneath it (prefix match on the lowercase id).
    async fn list_role_assignments_under(&self, scope: &str)
    -> StoreResult<Vec<RoleAssignmentRow>>;

    // --- secrets
    async fn get_secret(&self, vault_id: &str, name: &str) -> StoreResult<Option<SecretRow>>;
    /// The secret (deleted or not) with its latest version.
    async fn get_latest(
        &self,
        vault_id: &str,
        name: &str,
    ) -> StoreResult<Option<(SecretRow, VersionRow)>>;
    async fn get_version(
        &self,
        vault_id: &str,
        name: &str,
        version: &str,
    ) -> StoreResult<Option<VersionRow>>;
    /// Secrets (deleted or not, as asked) in name order after `after`, each with its latest version.
    async fn list_secrets(
        &self,
        vault_id: &str,
        deleted: bool,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(SecretRow, VersionRow)>>;
    /// Versions of one secret in creation order after `after_seq`.
    async fn list_versions(
        &self,
        vault_id: &str,
        name: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<VersionRow>>;
    /// Soft-deleted secrets whose purge date is at or before `now`.
    async fn purge_due(&self, now: i64, limit: u32) -> StoreResult<Vec<SecretRow>>;
    /// Applies `mutation`, appends `audit` to its vault's chain and records the change (at the
    /// audit record's position and time) in one transaction.
    async fn apply(&self, mutation: Mutation, audit: AuditEntry) -> StoreResult<()>;

    // --- audit
    /// Appends records (each to its vault's chain) in one durable transaction.
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()>;
    async fn read_audit(
        &self,
        vault_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRow>>;
    /// Every audit chain that has records: vault ids, and `subscription:{id}` chains.
    async fn list_audit_chains(&self) -> StoreResult<Vec<String>>;
    /// The chain head (last seq and hash) kept beside the records, so a cut tail shows.
    async fn audit_head(&self, vault_id: &str) -> StoreResult<Option<(i64, Vec<u8>)>>;
}
