//! Audit records in the shape of Azure's AuditEvent, and the writer that makes them durable in
//! batches: concurrent requests share one commit, and each waits until its record is on disk
//! (fail closed: no durable record, no response).

use crate::Caller;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use strongbox_store::{AuditEntry, Store, StoreError, StoreResult, VaultRow};
use tokio::sync::{mpsc, oneshot};

/// Data-plane operations, named as Azure's AuditEvent `operationName` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    SecretGet,
    SecretSet,
    SecretList,
    SecretListVersions,
    SecretUpdate,
    SecretDelete,
    SecretGetDeleted,
    SecretListDeleted,
    SecretRecover,
    SecretPurge,
    SecretBackup,
    SecretRestore,
    /// `GET /changes`: following the vault's change feed.
    SecretChangesGet,
    /// A request that matched no operation.
    Unknown,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::SecretGet => "SecretGet",
            Operation::SecretSet => "SecretSet",
            Operation::SecretList => "SecretList",
            Operation::SecretListVersions => "SecretListVersions",
            Operation::SecretUpdate => "SecretUpdate",
            Operation::SecretDelete => "SecretDelete",
            Operation::SecretGetDeleted => "SecretGetDeleted",
            Operation::SecretListDeleted => "SecretListDeleted",
            Operation::SecretRecover => "SecretRecover",
            Operation::SecretPurge => "SecretPurge",
            Operation::SecretBackup => "SecretBackup",
            Operation::SecretRestore => "SecretRestore",
            Operation::SecretChangesGet => "SecretChangesGet",
            Operation::Unknown => "Unknown",
        }
    }
}

/// What the audit record says about the request itself (filled in by the HTTP layer).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub operation: Operation,
    /// `https://{host}`, the base of every id returned.
    pub base_url: String,
    pub api_version: String,
    pub correlation_id: String,
    pub caller_ip: String,
    pub client_info: String,
    /// Path and query, without host.
    pub request_uri: String,
    pub started: Instant,
}

fn result_signature(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "NoContent",
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "PayloadTooLarge",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ if status >= 500 => "InternalServerError",
        _ => "Other",
    }
}

fn rfc3339(time_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(time_ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Builds one AuditEvent record. `object_id` is the id of the secret concerned, never its value.
pub fn entry(
    vault: &VaultRow,
    info: &RequestInfo,
    caller: Option<&Caller>,
    status: u16,
    object_id: Option<&str>,
    now_ms: i64,
) -> AuditEntry {
    let result_type = if status < 400 { "Success" } else { "Failure" };
    let identity = caller
        .map(|c| json!({"claim": {"oid": c.object_id, "tid": c.tenant_id, "appid": c.app_id}}));
    let record = json!({
        "time": rfc3339(now_ms),
        "category": "AuditEvent",
        "resourceId": vault.resource_id,
        "operationName": info.operation.name(),
        "operationVersion": info.api_version,
        "resultType": result_type,
        "resultSignature": result_signature(status),
        "durationMs": info.started.elapsed().as_millis() as u64,
        "callerIpAddress": info.caller_ip,
        "correlationId": info.correlation_id,
        "identity": identity,
        "properties": {
            "id": object_id,
            "requestUri": info.request_uri,
            "httpStatusCode": status,
            "clientInfo": info.client_info,
        },
    });
    AuditEntry {
        vault_id: vault.id.clone(),
        time_ms: now_ms,
        operation: info.operation.name().to_string(),
        result_type: result_type.to_string(),
        caller_oid: caller.map(|c| c.object_id.clone()),
        record_json: record.to_string(),
    }
}

type Pending = (AuditEntry, oneshot::Sender<StoreResult<()>>);

/// Told the size and duration of each group commit of audit records.
pub type CommitObserver = Arc<dyn Fn(usize, std::time::Duration) + Send + Sync>;

/// Appends records in group commits. Cloning shares the one writer task.
#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
}

/// Most records one commit takes.
const MAX_BATCH: usize = 512;

impl AuditWriter {
    /// Starts the writer task; it ends when every `AuditWriter` clone is dropped and the queue drained.
    pub fn start(store: Arc<dyn Store>) -> (AuditWriter, tokio::task::JoinHandle<()>) {
        AuditWriter::start_observed(store, Arc::new(|_: usize, _: std::time::Duration| {}))
    }

    /// Like [`AuditWriter::start`], telling `on_commit` each group commit's size and duration
    /// (the server's metrics).
    pub fn start_observed(
        store: Arc<dyn Store>,
        on_commit: CommitObserver,
    ) -> (AuditWriter, tokio::task::JoinHandle<()>) {
        let (queue, mut rx) = mpsc::channel::<Pending>(8 * MAX_BATCH);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (entries, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let started = std::time::Instant::now();
                let records = entries.len();
                let result = store.append_audit(entries).await;
                on_commit(records, started.elapsed());
                // A full disk is logged once by the store, not once per batch here.
                if let Err(e) = &result
                    && !matches!(e, StoreError::DiskFull)
                {
                    tracing::error!(error = %e, "audit append failed; the requests waiting on it fail closed");
                }
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        (AuditWriter { queue }, task)
    }

    /// Records waiting for their group commit.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Whether the writer task still takes records (requests fail closed once it does not).
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Returns once the record is durable.
    pub async fn append(&self, entry: AuditEntry) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((entry, tx))
            .await
            .map_err(|_| StoreError::Backend("audit writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("audit writer stopped".into()))?
    }
}

/// Builds the AuditEvent record of a management operation (the Azure activity log's kind of
/// event). `chain` is the audit chain it joins: the vault's id for vault-scoped operations,
/// `subscription:{id}` otherwise.
#[allow(clippy::too_many_arguments)]
pub fn management_entry(
    chain: &str,
    resource_id: &str,
    operation: &str,
    caller: Option<&Caller>,
    status: u16,
    correlation_id: &str,
    caller_ip: &str,
    now_ms: i64,
) -> AuditEntry {
    let result_type = if status < 400 { "Success" } else { "Failure" };
    let identity = caller
        .map(|c| json!({"claim": {"oid": c.object_id, "tid": c.tenant_id, "appid": c.app_id}}));
    let record = json!({
        "time": rfc3339(now_ms),
        "category": "Administrative",
        "resourceId": resource_id,
        "operationName": operation,
        "resultType": result_type,
        "resultSignature": result_signature(status),
        "callerIpAddress": caller_ip,
        "correlationId": correlation_id,
        "identity": identity,
        "properties": {"httpStatusCode": status},
    });
    AuditEntry {
        vault_id: chain.to_string(),
        time_ms: now_ms,
        operation: operation.to_string(),
        result_type: result_type.to_string(),
        caller_oid: caller.map(|c| c.object_id.clone()),
        record_json: record.to_string(),
    }
}
