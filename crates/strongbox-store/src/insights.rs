//! Audit delivery and analysis: storage targets ("storage accounts" that are local directories),
//! diagnostic settings that route a vault's audit chain to one, and the queries behind the audit
//! query and insights APIs. Filtering and aggregation run in SQL, so a large window never pulls
//! every record into memory.

use crate::{AuditEntry, AuditRow, StoreResult};
use async_trait::async_trait;

/// A storage target: a directory the server appends audit files to.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageAccountRow {
    /// Lowercase, 3-24 of `a-z0-9`, unique across the deployment (as in Azure).
    pub name: String,
    pub subscription_id: String,
    /// Lowercase.
    pub resource_group: String,
    pub location: String,
    /// Absolute directory the files go to.
    pub local_path: String,
    /// A file is closed and a new one started past this size …
    pub max_file_bytes: i64,
    /// … or once it is this old (seconds).
    pub max_file_age_secs: i64,
    /// Tags as a JSON object, or None.
    pub tags_json: Option<String>,
    pub created: i64,
}

/// A diagnostic setting on a vault.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticSettingRow {
    pub vault_id: String,
    /// As the client named it; unique per vault ignoring case.
    pub name: String,
    /// Name of the storage account the AuditEvent records go to, if any.
    pub storage_account: Option<String>,
    /// Whether the AuditEvent category (or a group holding it) is enabled.
    pub audit_enabled: bool,
    /// The `properties` object as it is returned to clients.
    pub properties_json: String,
    pub created: i64,
}

/// Which records of one chain to look at. Times are Unix ms; `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub chain: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub operation: Option<String>,
    pub caller_oid: Option<String>,
    /// `Success` or `Failure`.
    pub result_type: Option<String>,
}

/// A count under one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    pub key: Option<String>,
    pub total: i64,
    pub failures: i64,
}

/// Latency percentiles (nearest rank) over the records that carry `durationMs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub count: i64,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p99: Option<i64>,
    pub max: Option<i64>,
}

/// One time bucket: records and failures whose time falls in `[start_ms, start_ms + bucket)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub total: i64,
    pub failures: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditInsights {
    pub total: i64,
    pub failures: i64,
    /// By count, descending, then key.
    pub by_operation: Vec<Count>,
    pub by_result: Vec<Count>,
    /// The busiest callers (at most [`TOP_CALLERS`]), by count descending.
    pub by_caller: Vec<Count>,
    pub latency: Latency,
    /// Only buckets holding records, in time order.
    pub buckets: Vec<Bucket>,
}

pub const TOP_CALLERS: i64 = 100;

/// The nearest-rank percentile position (1-based) of `p` percent among `n` sorted values.
pub fn nearest_rank(p: i64, n: i64) -> i64 {
    ((p * n + 99) / 100).clamp(1, n.max(1))
}

#[async_trait]
pub trait InsightsStore: Send + Sync {
    // --- storage accounts
    /// Creates or replaces the account named `row.name`, appending `audit` in the same
    /// transaction. Conflict if the name is taken in another subscription or resource group.
    async fn put_storage_account(
        &self,
        row: StorageAccountRow,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    async fn get_storage_account(&self, name: &str) -> StoreResult<Option<StorageAccountRow>>;
    /// Accounts of a subscription (and resource group, if given), by name.
    async fn list_storage_accounts(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> StoreResult<Vec<StorageAccountRow>>;
    /// NotFound if absent; Conflict while a diagnostic setting sends records to it.
    async fn delete_storage_account(&self, name: &str, audit: AuditEntry) -> StoreResult<()>;

    // --- diagnostic settings
    /// Creates or replaces the setting (same vault, same name ignoring case) with `audit`.
    async fn put_diagnostic_setting(
        &self,
        row: DiagnosticSettingRow,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    async fn get_diagnostic_setting(
        &self,
        vault_id: &str,
        name: &str,
    ) -> StoreResult<Option<DiagnosticSettingRow>>;
    async fn list_diagnostic_settings(
        &self,
        vault_id: &str,
    ) -> StoreResult<Vec<DiagnosticSettingRow>>;
    /// Every setting that sends AuditEvent records to a storage account (for the file sink).
    async fn list_delivering_settings(&self) -> StoreResult<Vec<DiagnosticSettingRow>>;
    /// NotFound if absent.
    async fn delete_diagnostic_setting(
        &self,
        vault_id: &str,
        name: &str,
        audit: AuditEntry,
    ) -> StoreResult<()>;

    // --- queries
    /// Records matching `filter` with seq above `after_seq`, in seq order.
    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRow>>;
    /// Aggregates over the records matching `filter`; `bucket_ms` sizes the buckets, counted
    /// from `filter.from_ms` (or 0).
    async fn audit_insights(
        &self,
        filter: &AuditFilter,
        bucket_ms: i64,
    ) -> StoreResult<AuditInsights>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank_matches_the_textbook_definition() {
        use super::nearest_rank;
        assert_eq!(nearest_rank(50, 10), 5);
        assert_eq!(nearest_rank(90, 10), 9);
        assert_eq!(nearest_rank(99, 10), 10);
        assert_eq!(nearest_rank(50, 1), 1);
        assert_eq!(nearest_rank(99, 200), 198);
        assert_eq!(nearest_rank(50, 0), 1);
    }
}
