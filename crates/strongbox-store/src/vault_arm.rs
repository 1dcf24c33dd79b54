//! The vault lifecycle through the management API: a vault's ARM properties that the data plane
//! does not use, and the transactional writes that change a vault together with its access
//! policies, its ARM properties and its audit record.

use crate::{AccessPolicyRow, AuditEntry, LockGuard, StoreResult, VaultRow};
use async_trait::async_trait;

/// ARM properties kept beside a vault. Vaults made offline (dev bootstrap, CLI) have none and
/// read as defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultArmRow {
    pub vault_id: String,
    /// `standard` or `premium`.
    pub sku: String,
    /// The domain's JSON of the remaining properties (flags, network rules, and per-policy
    /// key/certificate/storage permissions).
    pub properties_json: String,
}

#[async_trait]
pub trait VaultArmStore {
    /// Inserts the vault, its ARM properties and access policies and appends `audit`, in one
    /// transaction. Conflict if the name is taken (live or soft-deleted), or if `guard` finds a
    /// lock.
    async fn create_vault_arm(
        &self,
        vault: VaultRow,
        arm: VaultArmRow,
        policies: Vec<AccessPolicyRow>,
        guard: Option<LockGuard>,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    /// Saves the vault's mutable columns (as `update_vault`), its ARM properties when given, and
    /// when given replaces its whole set of access policies; appends `audit`; one transaction.
    /// NotFound if the vault does not exist; Conflict if `guard` finds a lock.
    async fn save_vault_arm(
        &self,
        vault: VaultRow,
        arm: Option<VaultArmRow>,
        policies: Option<Vec<AccessPolicyRow>>,
        guard: Option<LockGuard>,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    async fn get_vault_arm(&self, vault_id: &str) -> StoreResult<Option<VaultArmRow>>;
    /// Vaults of a subscription (and, if given, of one lowercase resource group), soft-deleted
    /// or live as asked, in name order after `after`.
    async fn list_vaults_page(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
        deleted: bool,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<VaultRow>>;
    /// Soft-deleted vaults whose purge date is at or before `now`.
    async fn vaults_purge_due(&self, now: i64, limit: u32) -> StoreResult<Vec<VaultRow>>;
}
