//! [`KeyStore`] on SQLite. Writes take the one writer connection (`BEGIN IMMEDIATE`), so a
//! retirement's "nothing left under this key" check and its delete are one step against every
//! write; the snapshot is `VACUUM INTO` on a reader, one read transaction in WAL mode.

use crate::{SqliteStore, backend};
use async_trait::async_trait;
use sqlx::Row;
use std::path::Path;
use strongbox_store::*;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn values_not_under(
        &self,
        key_id: u32,
        after: Option<(String, String, String)>,
        limit: u32,
    ) -> StoreResult<Vec<SealedValueRow>> {
        let (v, n, ver) = after.unwrap_or_default();
        let rows = sqlx::query(
            "SELECT vault_id, name, version, sealed_value FROM secret_versions \
             WHERE substr(sealed_value, 2, 4) <> ?1 AND (vault_id, name, version) > (?2, ?3, ?4) \
             ORDER BY vault_id, name, version LIMIT ?5",
        )
        .bind(key_id_bytes(key_id))
        .bind(v)
        .bind(n)
        .bind(ver)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(SealedValueRow {
                    vault_id: r.try_get("vault_id")?,
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    sealed: r.try_get("sealed_value")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn count_not_under(&self, key_id: u32) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM secret_versions WHERE substr(sealed_value, 2, 4) <> ?1) \
             + (SELECT count(*) FROM signing_keys WHERE substr(sealed_private, 2, 4) <> ?1)",
        )
        .bind(key_id_bytes(key_id))
        .fetch_one(&self.read)
        .await
        .map_err(backend)?;
        Ok(n.max(0) as u64)
    }

    async fn replace_sealed_value(&self, row: &SealedValueRow, new: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE secret_versions SET sealed_value = ?5 \
             WHERE vault_id = ?1 AND name = ?2 AND version = ?3 AND sealed_value = ?4",
        )
        .bind(&row.vault_id)
        .bind(&row.name)
        .bind(&row.version)
        .bind(&row.sealed)
        .bind(new)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_sealed_signing_key(
        &self,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE signing_keys SET sealed_private = ?3 WHERE kid = ?1 AND sealed_private = ?2",
        )
        .bind(kid)
        .bind(old)
        .bind(new)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_data_key(&self, id: u32) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM secret_versions WHERE substr(sealed_value, 2, 4) = ?1) \
             + (SELECT count(*) FROM signing_keys WHERE substr(sealed_private, 2, 4) = ?1)",
        )
        .bind(key_id_bytes(id))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if used > 0 {
            return Err(StoreError::Conflict);
        }
        let deleted = sqlx::query("DELETE FROM data_keys WHERE id = ?1")
            .bind(i64::from(id))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(backend)
    }

    async fn replace_meta(&self, entries: &[(&str, Option<&[u8]>)]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for (key, value) in entries {
            match value {
                Some(v) => sqlx::query(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(v),
                None => sqlx::query("DELETE FROM meta WHERE key = ?1").bind(key),
            }
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn snapshot_into(&self, path: &Path) -> StoreResult<()> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Backend("the snapshot path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO ?1")
            .bind(target)
            .execute(&self.read)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// Refuses a value sealed under a data key that is no longer stored (retired by a rotation
/// this writer had not yet heard of): it could never be opened again.
pub(crate) async fn ensure_key_live(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    sealed: &[u8],
) -> Result<(), sqlx::Error> {
    let Some(id) = sealed_key(sealed) else {
        return Ok(());
    };
    let live: Option<i64> = sqlx::query_scalar("SELECT id FROM data_keys WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    if live.is_some() {
        return Ok(());
    }
    // Gone while a newer key exists: retired. (A key never stored at all, as with the keyrings
    // of tests that run without one, is no business of this check.)
    let superseded: Option<i64> =
        sqlx::query_scalar("SELECT id FROM data_keys WHERE id > ?1 LIMIT 1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    match superseded {
        None => Ok(()),
        Some(_) => Err(sqlx::Error::Protocol(format!(
            "value sealed under retired data key {id}; retry"
        ))),
    }
}
