//! A consistent copy of the whole PostgreSQL store, made while servers write, and its restore
//! into a new, empty database: every table copied (`COPY … (FORMAT binary)`) inside one
//! `REPEATABLE READ READ ONLY` transaction, which sees the database as of one moment, as
//! pg_dump does. Restored in one transaction, parents before children.
//!
//! File: `SBPGSNP1`, the schema's migration version (i64), the table count (u32), then per
//! table its name (u16 length, bytes) and its COPY data as frames (u32 length, bytes) ended by
//! an empty frame.

use crate::{PostgresStore, backend};
use futures_util::TryStreamExt as _;
use sqlx::{Connection as _, PgConnection};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use strongbox_store::{StoreError, StoreResult};

const MAGIC: &[u8; 8] = b"SBPGSNP1";

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("snapshot file: {e}"))
}

/// The schema's tables, every table after those its foreign keys point at.
async fn tables_in_order(conn: &mut PgConnection) -> StoreResult<Vec<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename <> '_sqlx_migrations' ORDER BY tablename",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (child, parent) in &edges {
        if child != parent {
            parents.entry(child).or_default().push(parent);
        }
    }
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < names.len() {
        let before = ordered.len();
        for n in &names {
            let ready = parents
                .get(n.as_str())
                .is_none_or(|ps| ps.iter().all(|p| ordered.iter().any(|o| o == p)));
            if !ordered.contains(n) && ready {
                ordered.push(n.clone());
            }
        }
        if ordered.len() == before {
            return Err(StoreError::Backend("foreign keys form a cycle".into()));
        }
    }
    for n in &ordered {
        if !n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Backend(format!("unexpected table name {n:?}")));
        }
    }
    Ok(ordered)
}

async fn schema_version(conn: &mut PgConnection) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations")
        .fetch_one(conn)
        .await
        .map_err(backend)
}

impl PostgresStore {
    pub(crate) async fn snapshot(&self, path: &Path) -> StoreResult<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = std::io::BufWriter::new(options.open(path).map_err(io)?);
        let mut conn = self.write.acquire().await.map_err(backend)?;
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(backend)?;
        let version = schema_version(&mut tx).await?;
        let tables = tables_in_order(&mut tx).await?;
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&version.to_be_bytes()).map_err(io)?;
        out.write_all(&(tables.len() as u32).to_be_bytes())
            .map_err(io)?;
        for t in &tables {
            out.write_all(&(t.len() as u16).to_be_bytes()).map_err(io)?;
            out.write_all(t.as_bytes()).map_err(io)?;
            let mut stream = tx
                .copy_out_raw(&format!("COPY {t} TO STDOUT (FORMAT binary)"))
                .await
                .map_err(backend)?;
            while let Some(chunk) = stream.try_next().await.map_err(backend)? {
                out.write_all(&(chunk.len() as u32).to_be_bytes())
                    .map_err(io)?;
                out.write_all(&chunk).map_err(io)?;
            }
            drop(stream);
            out.write_all(&0u32.to_be_bytes()).map_err(io)?;
        }
        tx.commit().await.map_err(backend)?;
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)
    }

    /// Loads a snapshot into this store, which must be new (migrated, every table empty) and
    /// at the snapshot's schema version. All or nothing.
    pub async fn restore_snapshot(&self, path: &Path) -> StoreResult<()> {
        let damaged = || StoreError::Backend("the snapshot is damaged".into());
        let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic).map_err(|_| damaged())?;
        if &magic != MAGIC {
            return Err(StoreError::Backend("not a PostgreSQL snapshot".into()));
        }
        let mut conn = self.write.acquire().await.map_err(backend)?;
        let mut tx = conn.begin().await.map_err(backend)?;
        let version = i64::from_be_bytes(read_array(&mut file)?);
        if version != schema_version(&mut tx).await? {
            return Err(StoreError::Backend(format!(
                "the snapshot has schema version {version}; this binary's store has another"
            )));
        }
        let known = tables_in_order(&mut tx).await?;
        for t in &known {
            let used: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM {t})"
            )))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            if used {
                return Err(StoreError::Conflict);
            }
        }
        let count = u32::from_be_bytes(read_array(&mut file)?);
        for _ in 0..count {
            let len = u16::from_be_bytes(read_array(&mut file)?);
            let mut name = vec![0u8; len as usize];
            file.read_exact(&mut name).map_err(|_| damaged())?;
            let name = String::from_utf8(name).map_err(|_| damaged())?;
            if !known.contains(&name) {
                return Err(StoreError::Backend(format!("unknown table {name:?}")));
            }
            let mut copy = tx
                .copy_in_raw(&format!("COPY {name} FROM STDIN (FORMAT binary)"))
                .await
                .map_err(backend)?;
            loop {
                let len = u32::from_be_bytes(read_array(&mut file)?);
                if len == 0 {
                    break;
                }
                let mut chunk = vec![0u8; len as usize];
                file.read_exact(&mut chunk).map_err(|_| damaged())?;
                copy.send(chunk).await.map_err(backend)?;
            }
            copy.finish().await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }
}

fn read_array<const N: usize>(r: &mut impl Read) -> StoreResult<[u8; N]> {
    let mut a = [0u8; N];
    r.read_exact(&mut a)
        .map_err(|_| StoreError::Backend("the snapshot is damaged".into()))?;
    Ok(a)
}
