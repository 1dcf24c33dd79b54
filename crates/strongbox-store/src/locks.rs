//! Resource locks (Microsoft.Authorization/locks): rows and the store operations on them. A lock
//! sits at a scope (an ARM id, stored lowercase) and protects that scope and everything beneath
//! it. Guarded vault writes re-check locks inside their own transaction, so a lock created a
//! moment earlier by another request (or another node) is never missed.

use crate::{AuditEntry, StoreResult};
use async_trait::async_trait;

pub const LOCK_CAN_NOT_DELETE: &str = "CanNotDelete";
pub const LOCK_READ_ONLY: &str = "ReadOnly";

#[derive(Debug, Clone, PartialEq)]
pub struct LockRow {
    /// Lowercase ARM id of the locked scope (a vault, a resource group, a subscription).
    pub scope: String,
    /// Lowercase lock name: lock names are case-insensitive.
    pub name: String,
    /// The locked scope's ARM id as first written, for ids shown to clients.
    pub resource_id: String,
    /// The lock name as first written.
    pub display_name: String,
    /// `CanNotDelete` or `ReadOnly`.
    pub level: String,
    pub notes: Option<String>,
    /// Owners as a JSON array, or None.
    pub owners_json: Option<String>,
    /// Set when the scope is a vault: the lock goes with the vault when it is purged.
    pub vault_id: Option<String>,
    pub created: i64,
}

/// Locks that must be absent for a guarded write to go ahead: any lock at one of `scopes`
/// (lowercased by the store), or only `ReadOnly` ones when `read_only_only`.
#[derive(Debug, Clone, PartialEq)]
pub struct LockGuard {
    pub scopes: Vec<String>,
    pub read_only_only: bool,
}

#[async_trait]
pub trait LockStore {
    /// Creates or replaces the lock (scope, name) and appends `audit`, in one transaction;
    /// returns whether it was created. With `vault_id` set, NotFound unless that vault exists
    /// and is not soft-deleted.
    async fn put_lock(&self, lock: LockRow, audit: AuditEntry) -> StoreResult<bool>;
    async fn get_lock(&self, scope: &str, name: &str) -> StoreResult<Option<LockRow>>;
    /// Locks directly at any of `scopes`, by scope then name.
    async fn list_locks_at(&self, scopes: &[String]) -> StoreResult<Vec<LockRow>>;
    /// Locks at `scope` or anywhere beneath it, by scope then name.
    async fn list_locks_under(&self, scope: &str) -> StoreResult<Vec<LockRow>>;
    /// Removes the lock and appends `audit`, in one transaction. NotFound if absent.
    async fn delete_lock(&self, scope: &str, name: &str, audit: AuditEntry) -> StoreResult<()>;
}
