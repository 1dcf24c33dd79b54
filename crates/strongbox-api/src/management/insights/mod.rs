//! Audit delivery and analysis on the management plane:
//! - `Microsoft.Storage/storageAccounts`: storage targets, each a local directory (ours: no blob
//!   service, the "account" is where the file sink writes);
//! - `Microsoft.Insights/diagnosticSettings` on a vault: route its AuditEvent records to one;
//! - `Microsoft.Insights/auditEvents` and `auditInsights` on a vault (Strongbox extensions, in
//!   ARM's shape): filter the audit chain, and aggregate it for charts.
//!
//! Every request, allowed or refused, leaves an audit record (vault-scoped ones in the vault's
//! chain, storage accounts in the subscription's).

mod common;
mod diagnostics;
mod logs;
mod storage;

use crate::AppState;
use axum::Router;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(storage::routes())
        .merge(diagnostics::routes())
        .merge(logs::routes())
}
