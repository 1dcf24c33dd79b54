//! The change feed's storage: every committed secret mutation (`Store::apply`) records one row,
//! in the same transaction, at the audit chain position the mutation's record got. That position
//! is handed out under the vault's chain-head lock, so positions follow commit order: a reader
//! that sees position N+1 also sees N.

use crate::StoreResult;
use async_trait::async_trait;
pub use strongbox_types::changes::ChangeKind;

/// One recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub vault_id: String,
    /// The audit chain seq of the mutation's record.
    pub seq: i64,
    /// Lowercase name (the key).
    pub name: String,
    pub display_name: String,
    pub version: Option<String>,
    pub kind: ChangeKind,
    pub enabled: Option<bool>,
    /// The audit record's time.
    pub time_ms: i64,
}

/// What a vault's feed holds: positions in `(floor, head]`. Changes at or below `floor` were
/// pruned; `head` is the last position recorded (`floor` when none is left, 0 when never any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeBounds {
    pub floor: i64,
    pub head: i64,
}

#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// Changes of `vault_id` with a position after `after`, in position order, at most `limit`.
    async fn read_changes(
        &self,
        vault_id: &str,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeRow>>;
    async fn change_bounds(&self, vault_id: &str) -> StoreResult<ChangeBounds>;
    /// The last recorded position of each vault named that has any (one query for many
    /// vaults: a server re-checks all the vaults it has waiters on at once).
    async fn change_heads(&self, vault_ids: &[String]) -> StoreResult<Vec<(String, i64)>>;
    /// Removes changes committed before `before_ms`, raising each vault's floor to the highest
    /// position removed; returns how many went.
    async fn prune_changes(&self, before_ms: i64) -> StoreResult<u64>;
}
