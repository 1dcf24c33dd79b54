//! [`DeviceHealthStore`] on SQLite.

use crate::{SqliteStore, backend, commit};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use strongbox_store::*;

fn alert_row(r: &SqliteRow) -> Result<DeviceAlertRow, sqlx::Error> {
    Ok(DeviceAlertRow {
        device_id: r.try_get("device_id")?,
        alert_type: r.try_get("alert_type")?,
        first_seen: r.try_get("first_seen")?,
        appeared_at: r.try_get("appeared_at")?,
        occurrences: r.try_get("occurrences")?,
        cleared_at: r.try_get("cleared_at")?,
    })
}

#[async_trait]
impl DeviceHealthStore for SqliteStore {
    async fn put_device_report(&self, r: DeviceReportRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO device_reports (device_id, reported_at, secrets_json) VALUES (?1, ?2, ?3) \
             ON CONFLICT (device_id) DO UPDATE SET reported_at = excluded.reported_at, \
             secrets_json = excluded.secrets_json",
        )
        .bind(&r.device_id)
        .bind(r.reported_at)
        .bind(&r.secrets_json)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_device_report(&self, device_id: &str) -> StoreResult<Option<DeviceReportRow>> {
        let row = sqlx::query(
            "SELECT device_id, reported_at, secrets_json FROM device_reports WHERE device_id = ?1",
        )
        .bind(device_id)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(DeviceReportRow {
                device_id: r.try_get("device_id")?,
                reported_at: r.try_get("reported_at")?,
                secrets_json: r.try_get("secrets_json")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn observe_device_alerts(
        &self,
        device_id: &str,
        raised: &[String],
        now: i64,
    ) -> StoreResult<Vec<DeviceAlertRow>> {
        let mut tx = self.begin().await?;
        let open: Vec<String> = sqlx::query_scalar(
            "SELECT alert_type FROM device_alerts WHERE device_id = ?1 AND cleared_at IS NULL",
        )
        .bind(device_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for gone in open.iter().filter(|t| !raised.contains(t)) {
            sqlx::query(
                "UPDATE device_alerts SET cleared_at = ?3 WHERE device_id = ?1 AND alert_type = ?2",
            )
            .bind(device_id)
            .bind(gone)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        for t in raised {
            sqlx::query(
                "INSERT INTO device_alerts (device_id, alert_type, first_seen, appeared_at, \
                 occurrences, cleared_at) VALUES (?1, ?2, ?3, ?3, 1, NULL) \
                 ON CONFLICT (device_id, alert_type) DO UPDATE SET appeared_at = excluded.appeared_at, \
                 occurrences = device_alerts.occurrences + 1, cleared_at = NULL \
                 WHERE device_alerts.cleared_at IS NOT NULL",
            )
            .bind(device_id)
            .bind(t)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let rows = sqlx::query(
            "SELECT device_id, alert_type, first_seen, appeared_at, occurrences, cleared_at \
             FROM device_alerts WHERE device_id = ?1 ORDER BY alert_type",
        )
        .bind(device_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        rows.iter()
            .map(alert_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn set_device_identity(&self, device_id: &str, object_id: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE devices SET identity_object_id = ?2 WHERE id = ?1")
            .bind(device_id)
            .bind(object_id)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_device_health(&self, device_id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM device_reports WHERE device_id = ?1",
            "DELETE FROM device_alerts WHERE device_id = ?1",
        ] {
            sqlx::query(sql)
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        commit(tx).await
    }
}
