//! Vault ARM properties, guarded vault writes and resource locks (SQLite). Every write runs in
//! one `BEGIN IMMEDIATE` transaction, so a guard's lock check and the write it guards see the
//! same database: no lock can slip in between.

use super::{SqliteStore, append_chained, backend, commit, vault_row};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use strongbox_store::*;

fn lock_row(r: &SqliteRow) -> Result<LockRow, sqlx::Error> {
    Ok(LockRow {
        scope: r.try_get("scope")?,
        name: r.try_get("name")?,
        resource_id: r.try_get("resource_id")?,
        display_name: r.try_get("display_name")?,
        level: r.try_get("level")?,
        notes: r.try_get("notes")?,
        owners_json: r.try_get("owners_json")?,
        vault_id: r.try_get("vault_id")?,
        created: r.try_get("created")?,
    })
}

/// Conflict if a lock the guard names exists.
async fn check_guard(
    tx: &mut Transaction<'static, Sqlite>,
    guard: &Option<LockGuard>,
) -> StoreResult<()> {
    let Some(g) = guard else { return Ok(()) };
    for scope in &g.scopes {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM resource_locks WHERE scope = ?1 AND (?2 = 0 OR level = ?3) LIMIT 1",
        )
        .bind(scope.to_ascii_lowercase())
        .bind(g.read_only_only)
        .bind(LOCK_READ_ONLY)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
        if found.is_some() {
            return Err(StoreError::Conflict);
        }
    }
    Ok(())
}

async fn put_arm(tx: &mut Transaction<'static, Sqlite>, arm: &VaultArmRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO vault_arm (vault_id, sku, properties_json) VALUES (?1, ?2, ?3) \
         ON CONFLICT (vault_id) DO UPDATE SET sku = excluded.sku, properties_json = excluded.properties_json",
    )
    .bind(&arm.vault_id)
    .bind(&arm.sku)
    .bind(&arm.properties_json)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn replace_policies(
    tx: &mut Transaction<'static, Sqlite>,
    vault_id: &str,
    policies: &[AccessPolicyRow],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM access_policies WHERE vault_id = ?1")
        .bind(vault_id)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    for p in policies {
        sqlx::query(
            "INSERT INTO access_policies (vault_id, object_id, secret_permissions) VALUES (?1, ?2, ?3)",
        )
        .bind(vault_id)
        .bind(&p.object_id)
        .bind(p.secret_permissions.join(","))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl VaultArmStore for SqliteStore {
    async fn create_vault_arm(
        &self,
        v: VaultRow,
        arm: VaultArmRow,
        policies: Vec<AccessPolicyRow>,
        guard: Option<LockGuard>,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        check_guard(&mut tx, &guard).await?;
        sqlx::query(
            "INSERT INTO vaults (id, name, tenant_id, subscription_id, resource_group, location, resource_id, tags_json, \
             retention_days, purge_protection, enable_rbac, created, deleted_at, purge_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .bind(&v.id)
        .bind(&v.name)
        .bind(&v.tenant_id)
        .bind(&v.subscription_id)
        .bind(&v.resource_group)
        .bind(&v.location)
        .bind(&v.resource_id)
        .bind(&v.tags_json)
        .bind(v.retention_days)
        .bind(v.purge_protection)
        .bind(v.enable_rbac)
        .bind(v.created)
        .bind(v.deleted.map(|d| d.deleted_at))
        .bind(v.deleted.map(|d| d.purge_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        put_arm(&mut tx, &arm).await?;
        replace_policies(&mut tx, &v.id, &policies).await?;
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn save_vault_arm(
        &self,
        v: VaultRow,
        arm: Option<VaultArmRow>,
        policies: Option<Vec<AccessPolicyRow>>,
        guard: Option<LockGuard>,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        check_guard(&mut tx, &guard).await?;
        let done = sqlx::query(
            "UPDATE vaults SET tags_json = ?2, retention_days = ?3, purge_protection = ?4, enable_rbac = ?5, \
             deleted_at = ?6, purge_at = ?7 WHERE id = ?1",
        )
        .bind(&v.id)
        .bind(&v.tags_json)
        .bind(v.retention_days)
        .bind(v.purge_protection)
        .bind(v.enable_rbac)
        .bind(v.deleted.map(|d| d.deleted_at))
        .bind(v.deleted.map(|d| d.purge_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(arm) = &arm {
            put_arm(&mut tx, arm).await?;
        }
        if let Some(policies) = &policies {
            replace_policies(&mut tx, &v.id, policies).await?;
        }
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn get_vault_arm(&self, vault_id: &str) -> StoreResult<Option<VaultArmRow>> {
        let row =
            sqlx::query("SELECT vault_id, sku, properties_json FROM vault_arm WHERE vault_id = ?1")
                .bind(vault_id)
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
        row.map(|r| {
            Ok(VaultArmRow {
                vault_id: r.try_get("vault_id")?,
                sku: r.try_get("sku")?,
                properties_json: r.try_get("properties_json")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn list_vaults_page(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
        deleted: bool,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<VaultRow>> {
        let rows = sqlx::query(
            "SELECT * FROM vaults WHERE subscription_id = ?1 AND (?2 IS NULL OR resource_group = ?2) \
             AND (deleted_at IS NOT NULL) = ?3 AND name > ?4 ORDER BY name LIMIT ?5",
        )
        .bind(subscription_id)
        .bind(resource_group)
        .bind(deleted)
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(vault_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn vaults_purge_due(&self, now: i64, limit: u32) -> StoreResult<Vec<VaultRow>> {
        let rows = sqlx::query(
            "SELECT * FROM vaults WHERE deleted_at IS NOT NULL AND purge_at <= ?1 ORDER BY purge_at LIMIT ?2",
        )
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(vault_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }
}

#[async_trait]
impl LockStore for SqliteStore {
    async fn put_lock(&self, l: LockRow, audit: AuditEntry) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        if let Some(vault_id) = &l.vault_id {
            let live: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM vaults WHERE id = ?1 AND deleted_at IS NULL")
                    .bind(vault_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            if live.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        let scope = l.scope.to_ascii_lowercase();
        let name = l.name.to_ascii_lowercase();
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM resource_locks WHERE scope = ?1 AND name = ?2")
                .bind(&scope)
                .bind(&name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        sqlx::query(
            "INSERT INTO resource_locks (scope, name, resource_id, display_name, level, notes, owners_json, vault_id, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (scope, name) DO UPDATE SET \
             level = excluded.level, notes = excluded.notes, owners_json = excluded.owners_json",
        )
        .bind(&scope)
        .bind(&name)
        .bind(&l.resource_id)
        .bind(&l.display_name)
        .bind(&l.level)
        .bind(&l.notes)
        .bind(&l.owners_json)
        .bind(&l.vault_id)
        .bind(l.created)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await?;
        Ok(existed.is_none())
    }

    async fn get_lock(&self, scope: &str, name: &str) -> StoreResult<Option<LockRow>> {
        let row = sqlx::query("SELECT * FROM resource_locks WHERE scope = ?1 AND name = ?2")
            .bind(scope.to_ascii_lowercase())
            .bind(name.to_ascii_lowercase())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(lock_row).transpose().map_err(backend)
    }

    async fn list_locks_at(&self, scopes: &[String]) -> StoreResult<Vec<LockRow>> {
        let mut out = Vec::new();
        for scope in scopes {
            let rows = sqlx::query("SELECT * FROM resource_locks WHERE scope = ?1 ORDER BY name")
                .bind(scope.to_ascii_lowercase())
                .fetch_all(&self.read)
                .await
                .map_err(backend)?;
            for r in &rows {
                out.push(lock_row(r).map_err(backend)?);
            }
        }
        out.sort_by(|a, b| (&a.scope, &a.name).cmp(&(&b.scope, &b.name)));
        out.dedup_by(|a, b| a.scope == b.scope && a.name == b.name);
        Ok(out)
    }

    async fn list_locks_under(&self, scope: &str) -> StoreResult<Vec<LockRow>> {
        let scope = scope.trim_end_matches('/').to_ascii_lowercase();
        // A prefix test by substring, not LIKE: `_` is legal in resource group names.
        let rows = sqlx::query(
            "SELECT * FROM resource_locks WHERE scope = ?1 OR substr(scope, 1, length(?2)) = ?2 \
             ORDER BY scope, name",
        )
        .bind(&scope)
        .bind(format!("{scope}/"))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(lock_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn delete_lock(&self, scope: &str, name: &str, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM resource_locks WHERE scope = ?1 AND name = ?2")
            .bind(scope.to_ascii_lowercase())
            .bind(name.to_ascii_lowercase())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }
}
