//! Storage accounts, diagnostic settings and audit queries on PostgreSQL.

use crate::{PostgresStore, append_chained, audit_row, backend, commit};
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};
use strongbox_store::insights::*;
use strongbox_store::*;

fn account_row(r: &PgRow) -> Result<StorageAccountRow, sqlx::Error> {
    Ok(StorageAccountRow {
        name: r.try_get("name")?,
        subscription_id: r.try_get("subscription_id")?,
        resource_group: r.try_get("resource_group")?,
        location: r.try_get("location")?,
        local_path: r.try_get("local_path")?,
        max_file_bytes: r.try_get("max_file_bytes")?,
        max_file_age_secs: r.try_get("max_file_age_secs")?,
        tags_json: r.try_get("tags_json")?,
        created: r.try_get("created")?,
    })
}

fn setting_row(r: &PgRow) -> Result<DiagnosticSettingRow, sqlx::Error> {
    Ok(DiagnosticSettingRow {
        vault_id: r.try_get("vault_id")?,
        name: r.try_get("name")?,
        storage_account: r.try_get("storage_account")?,
        audit_enabled: r.try_get("audit_enabled")?,
        properties_json: r.try_get("properties_json")?,
        created: r.try_get("created")?,
    })
}

enum Arg {
    Int(i64),
    Text(String),
}

/// The WHERE clause of a filter (only the conditions given, so the planner can use the indexes)
/// and its arguments, numbered from 1.
fn where_clause(f: &AuditFilter) -> (String, Vec<Arg>) {
    let mut sql = String::from("vault_id = $1");
    let mut args = vec![Arg::Text(f.chain.clone())];
    let mut add = |cond: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&format!(" AND {cond} ${}", args.len()));
    };
    if let Some(t) = f.from_ms {
        add("time_ms >=", Arg::Int(t));
    }
    if let Some(t) = f.to_ms {
        add("time_ms <", Arg::Int(t));
    }
    if let Some(o) = &f.operation {
        add("operation =", Arg::Text(o.clone()));
    }
    if let Some(c) = &f.caller_oid {
        add("caller_oid =", Arg::Text(c.clone()));
    }
    if let Some(r) = &f.result_type {
        add("result_type =", Arg::Text(r.clone()));
    }
    (sql, args)
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Arg::Int(i) => q.bind(*i),
            Arg::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

const FAILURES: &str = "SUM(CASE WHEN result_type = 'Failure' THEN 1 ELSE 0 END)";

fn counts(rows: &[PgRow]) -> Result<Vec<Count>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok(Count {
                key: r.try_get(0)?,
                total: r.try_get(1)?,
                failures: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
            })
        })
        .collect()
}

#[async_trait]
impl InsightsStore for PostgresStore {
    async fn put_storage_account(
        &self,
        a: StorageAccountRow,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let placed: Option<String> = sqlx::query_scalar(
            "INSERT INTO storage_accounts (name, subscription_id, resource_group, location, local_path, \
             max_file_bytes, max_file_age_secs, tags_json, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (name) DO UPDATE SET location = excluded.location, local_path = excluded.local_path, \
             max_file_bytes = excluded.max_file_bytes, max_file_age_secs = excluded.max_file_age_secs, \
             tags_json = excluded.tags_json \
             WHERE storage_accounts.subscription_id = excluded.subscription_id \
             AND storage_accounts.resource_group = excluded.resource_group RETURNING name",
        )
        .bind(&a.name)
        .bind(&a.subscription_id)
        .bind(&a.resource_group)
        .bind(&a.location)
        .bind(&a.local_path)
        .bind(a.max_file_bytes)
        .bind(a.max_file_age_secs)
        .bind(&a.tags_json)
        .bind(a.created)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if placed.is_none() {
            return Err(StoreError::Conflict);
        }
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn get_storage_account(&self, name: &str) -> StoreResult<Option<StorageAccountRow>> {
        let row = sqlx::query("SELECT * FROM storage_accounts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(account_row).transpose().map_err(backend)
    }

    async fn list_storage_accounts(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> StoreResult<Vec<StorageAccountRow>> {
        let rows = sqlx::query(
            "SELECT * FROM storage_accounts WHERE subscription_id = $1 \
             AND ($2::TEXT IS NULL OR resource_group = $2) ORDER BY name",
        )
        .bind(subscription_id)
        .bind(resource_group)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(account_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn delete_storage_account(&self, name: &str, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM diagnostic_settings WHERE storage_account = $1",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if used > 0 {
            return Err(StoreError::Conflict);
        }
        let done = sqlx::query("DELETE FROM storage_accounts WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn put_diagnostic_setting(
        &self,
        s: DiagnosticSettingRow,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO diagnostic_settings (vault_id, name_key, name, storage_account, audit_enabled, \
             properties_json, created) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (vault_id, name_key) DO UPDATE SET storage_account = excluded.storage_account, \
             audit_enabled = excluded.audit_enabled, properties_json = excluded.properties_json",
        )
        .bind(&s.vault_id)
        .bind(s.name.to_lowercase())
        .bind(&s.name)
        .bind(&s.storage_account)
        .bind(s.audit_enabled)
        .bind(&s.properties_json)
        .bind(s.created)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn get_diagnostic_setting(
        &self,
        vault_id: &str,
        name: &str,
    ) -> StoreResult<Option<DiagnosticSettingRow>> {
        let row =
            sqlx::query("SELECT * FROM diagnostic_settings WHERE vault_id = $1 AND name_key = $2")
                .bind(vault_id)
                .bind(name.to_lowercase())
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
        row.as_ref().map(setting_row).transpose().map_err(backend)
    }

    async fn list_diagnostic_settings(
        &self,
        vault_id: &str,
    ) -> StoreResult<Vec<DiagnosticSettingRow>> {
        let rows =
            sqlx::query("SELECT * FROM diagnostic_settings WHERE vault_id = $1 ORDER BY name_key")
                .bind(vault_id)
                .fetch_all(&self.read)
                .await
                .map_err(backend)?;
        rows.iter()
            .map(setting_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn list_delivering_settings(&self) -> StoreResult<Vec<DiagnosticSettingRow>> {
        let rows = sqlx::query(
            "SELECT * FROM diagnostic_settings WHERE audit_enabled AND storage_account IS NOT NULL \
             ORDER BY vault_id, name_key",
        )
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(setting_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn delete_diagnostic_setting(
        &self,
        vault_id: &str,
        name: &str,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done =
            sqlx::query("DELETE FROM diagnostic_settings WHERE vault_id = $1 AND name_key = $2")
                .bind(vault_id)
                .bind(name.to_lowercase())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRow>> {
        let (cond, mut args) = where_clause(filter);
        args.push(Arg::Int(after_seq));
        let after = args.len();
        args.push(Arg::Int(limit as i64));
        let sql = format!(
            "SELECT * FROM audit_records WHERE {cond} AND seq > ${after} ORDER BY seq LIMIT ${}",
            args.len()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &args)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(audit_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn audit_insights(
        &self,
        filter: &AuditFilter,
        bucket_ms: i64,
    ) -> StoreResult<AuditInsights> {
        let (cond, args) = where_clause(filter);
        // One read transaction: every number describes the same snapshot.
        let mut tx = self.read.begin().await.map_err(backend)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let grouped = |key: &str, extra: &str| {
            format!(
                "SELECT {key}, COUNT(*), {FAILURES} FROM audit_records WHERE {cond} \
                 GROUP BY {key} ORDER BY 2 DESC, 1 {extra}"
            )
        };
        let mut out = AuditInsights::default();
        for (key, extra, slot) in [
            ("operation", String::new(), 0),
            ("result_type", String::new(), 1),
            ("caller_oid", format!("LIMIT {TOP_CALLERS}"), 2),
        ] {
            let rows = bind_all(
                sqlx::query(sqlx::AssertSqlSafe(grouped(key, &extra))),
                &args,
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let c = counts(&rows).map_err(backend)?;
            match slot {
                0 => out.by_operation = c,
                1 => out.by_result = c,
                _ => out.by_caller = c,
            }
        }
        out.total = out.by_result.iter().map(|c| c.total).sum();
        out.failures = out.by_result.iter().map(|c| c.failures).sum();

        let sql =
            format!("SELECT COUNT(duration_ms), MAX(duration_ms) FROM audit_records WHERE {cond}");
        let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &args)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        out.latency.count = row.try_get(0).map_err(backend)?;
        out.latency.max = row.try_get(1).map_err(backend)?;
        if out.latency.count > 0 {
            let sql = format!(
                "SELECT duration_ms FROM audit_records WHERE {cond} AND duration_ms IS NOT NULL \
                 ORDER BY duration_ms LIMIT 1 OFFSET ${}",
                args.len() + 1
            );
            let mut pct = Vec::new();
            for p in [50, 90, 99] {
                let offset = nearest_rank(p, out.latency.count) - 1;
                let v: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.clone())), &args)
                    .bind(offset)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?
                    .try_get(0)
                    .map_err(backend)?;
                pct.push(v);
            }
            (out.latency.p50, out.latency.p90, out.latency.p99) =
                (Some(pct[0]), Some(pct[1]), Some(pct[2]));
        }

        let origin = filter.from_ms.unwrap_or(0);
        let sql = format!(
            "SELECT (time_ms - ${o}) / ${b} AS bucket, COUNT(*), {FAILURES} FROM audit_records \
             WHERE {cond} GROUP BY bucket ORDER BY bucket",
            o = args.len() + 1,
            b = args.len() + 2,
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &args)
            .bind(origin)
            .bind(bucket_ms.max(1))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        out.buckets = rows
            .iter()
            .map(|r| {
                Ok(Bucket {
                    start_ms: origin + r.try_get::<i64, _>(0)? * bucket_ms.max(1),
                    total: r.try_get(1)?,
                    failures: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)?;
        commit(tx).await?;
        Ok(out)
    }
}
