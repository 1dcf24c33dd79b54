//! [`DeviceStore`] on SQLite.

use crate::{SqliteStore, append_chained, backend, commit};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use strongbox_store::*;

const DEVICE_COLUMNS: &str = "id, resource_id, subscription_id, resource_group, name, location, \
     tags_json, identity_object_id, state_json, created";

fn device_row(r: &SqliteRow) -> Result<DeviceRow, sqlx::Error> {
    Ok(DeviceRow {
        id: r.try_get("id")?,
        resource_id: r.try_get("resource_id")?,
        subscription_id: r.try_get("subscription_id")?,
        resource_group: r.try_get("resource_group")?,
        name: r.try_get("name")?,
        location: r.try_get("location")?,
        tags_json: r.try_get("tags_json")?,
        identity_object_id: r.try_get("identity_object_id")?,
        state_json: r.try_get("state_json")?,
        created: r.try_get("created")?,
    })
}

fn operation_row(r: &SqliteRow) -> Result<DeviceOperationRow, sqlx::Error> {
    Ok(DeviceOperationRow {
        id: r.try_get("id")?,
        device_id: r.try_get("device_id")?,
        status: r.try_get("status")?,
        body_json: r.try_get("body_json")?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
    })
}

fn enrollment_row(r: &SqliteRow) -> Result<EnrollmentRow, sqlx::Error> {
    Ok(EnrollmentRow {
        id: r.try_get("id")?,
        device_id: r.try_get("device_id")?,
        secret_hash: r.try_get("secret_hash")?,
        expires: r.try_get("expires")?,
        used_at: r.try_get("used_at")?,
        created: r.try_get("created")?,
    })
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn insert_device(&self, d: DeviceRow, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO devices (id, resource_id, subscription_id, resource_group, name, location, \
             tags_json, identity_object_id, state_json, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&d.id)
        .bind(d.resource_id.to_ascii_lowercase())
        .bind(&d.subscription_id)
        .bind(d.resource_group.to_ascii_lowercase())
        .bind(&d.name)
        .bind(&d.location)
        .bind(&d.tags_json)
        .bind(&d.identity_object_id)
        .bind(&d.state_json)
        .bind(d.created)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn get_device(&self, resource_id: &str) -> StoreResult<Option<DeviceRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE resource_id = ?1"
        )))
        .bind(resource_id.to_ascii_lowercase())
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(device_row).transpose().map_err(backend)
    }

    async fn get_device_by_id(&self, id: &str) -> StoreResult<Option<DeviceRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(device_row).transpose().map_err(backend)
    }

    async fn list_devices(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> StoreResult<Vec<DeviceRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE subscription_id = ?1 \
             AND (?2 IS NULL OR resource_group = ?2) ORDER BY resource_id"
        )))
        .bind(subscription_id)
        .bind(resource_group.map(str::to_ascii_lowercase))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(device_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn update_device(&self, d: &DeviceRow) -> StoreResult<()> {
        let done = sqlx::query("UPDATE devices SET state_json = ?2, tags_json = ?3 WHERE id = ?1")
            .bind(&d.id)
            .bind(&d.state_json)
            .bind(&d.tags_json)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_device(&self, id: &str, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM devices WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        for sql in [
            "DELETE FROM device_operations WHERE device_id = ?1",
            "DELETE FROM device_enrollments WHERE device_id = ?1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn put_device_operation(&self, op: &DeviceOperationRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO device_operations (id, device_id, status, body_json, created, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
             body_json = excluded.body_json, updated = excluded.updated",
        )
        .bind(&op.id)
        .bind(&op.device_id)
        .bind(&op.status)
        .bind(&op.body_json)
        .bind(op.created)
        .bind(op.updated)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_device_operation(&self, id: &str) -> StoreResult<Option<DeviceOperationRow>> {
        let row = sqlx::query(
            "SELECT id, device_id, status, body_json, created, updated FROM device_operations WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(operation_row).transpose().map_err(backend)
    }

    async fn replace_enrollment(&self, e: EnrollmentRow) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM device_enrollments WHERE device_id = ?1 AND used_at IS NULL")
            .bind(&e.device_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO device_enrollments (id, device_id, secret_hash, expires, used_at, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&e.id)
        .bind(&e.device_id)
        .bind(&e.secret_hash)
        .bind(e.expires)
        .bind(e.used_at)
        .bind(e.created)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn get_enrollment(&self, id: &str) -> StoreResult<Option<EnrollmentRow>> {
        let row = sqlx::query(
            "SELECT id, device_id, secret_hash, expires, used_at, created FROM device_enrollments WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref()
            .map(enrollment_row)
            .transpose()
            .map_err(backend)
    }

    async fn consume_enrollment(&self, id: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE device_enrollments SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL AND expires > ?2",
        )
        .bind(id)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
