//! [`ChangeStore`] on SQLite. Rows are written by `apply` (lib.rs) in the mutation's
//! transaction; the single writer connection makes positions commit-ordered.

use crate::{SqliteStore, backend, commit};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use strongbox_store::*;

fn change_row(r: &SqliteRow) -> Result<ChangeRow, sqlx::Error> {
    let kind: String = r.try_get("change")?;
    Ok(ChangeRow {
        vault_id: r.try_get("vault_id")?,
        seq: r.try_get("seq")?,
        name: r.try_get("name")?,
        display_name: r.try_get("display_name")?,
        version: r.try_get("version")?,
        kind: ChangeKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown change kind {kind:?}").into()))?,
        enabled: r.try_get("enabled")?,
        time_ms: r.try_get("time_ms")?,
    })
}

#[async_trait]
impl ChangeStore for SqliteStore {
    async fn read_changes(
        &self,
        vault_id: &str,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<ChangeRow>> {
        let rows = sqlx::query(
            "SELECT * FROM secret_changes WHERE vault_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(vault_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(change_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn change_bounds(&self, vault_id: &str) -> StoreResult<ChangeBounds> {
        // One statement, one snapshot.
        let r = sqlx::query(
            "SELECT COALESCE((SELECT floor FROM change_floors WHERE vault_id = ?1), 0) AS floor, \
             COALESCE((SELECT MAX(seq) FROM secret_changes WHERE vault_id = ?1), 0) AS head",
        )
        .bind(vault_id)
        .fetch_one(&self.read)
        .await
        .map_err(backend)?;
        let floor: i64 = r.try_get("floor").map_err(backend)?;
        let head: i64 = r.try_get("head").map_err(backend)?;
        Ok(ChangeBounds {
            floor,
            head: head.max(floor),
        })
    }

    async fn change_heads(&self, vault_ids: &[String]) -> StoreResult<Vec<(String, i64)>> {
        // A correlated MAX per vault reads one index entry each.
        let mut out = Vec::new();
        for chunk in vault_ids.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new("WITH ids(v) AS (");
            q.push_values(chunk, |mut b, id| {
                b.push_bind(id);
            });
            q.push(
                ") SELECT v AS vault_id, (SELECT MAX(seq) FROM secret_changes c WHERE c.vault_id = ids.v) \
                 AS head FROM ids",
            );
            for r in q.build().fetch_all(&self.read).await.map_err(backend)? {
                let head: Option<i64> = r.try_get("head").map_err(backend)?;
                if let Some(head) = head {
                    out.push((r.try_get("vault_id").map_err(backend)?, head));
                }
            }
        }
        Ok(out)
    }

    async fn prune_changes(&self, before_ms: i64) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        // The time index finds the old rows; each vault's floor is then a range delete.
        let floors = sqlx::query(
            "SELECT vault_id, MAX(seq) AS floor FROM secret_changes WHERE time_ms < ?1 GROUP BY vault_id",
        )
        .bind(before_ms)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut removed = 0;
        for r in &floors {
            let vault_id: String = r.try_get("vault_id").map_err(backend)?;
            let floor: i64 = r.try_get("floor").map_err(backend)?;
            sqlx::query(
                "INSERT INTO change_floors (vault_id, floor) VALUES (?1, ?2) \
                 ON CONFLICT (vault_id) DO UPDATE SET floor = MAX(change_floors.floor, excluded.floor)",
            )
            .bind(&vault_id)
            .bind(floor)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            removed += sqlx::query("DELETE FROM secret_changes WHERE vault_id = ?1 AND seq <= ?2")
                .bind(&vault_id)
                .bind(floor)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        commit(tx).await?;
        Ok(removed)
    }
}
