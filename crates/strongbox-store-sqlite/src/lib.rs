//! The embedded default store: SQLite in WAL mode with `synchronous=FULL`, so an acknowledged
//! write survives a crash. Writes go through one connection (SQLite has one writer anyway), with
//! `BEGIN IMMEDIATE` so another process holding the file makes us wait, not fail; reads use a
//! small pool of their own.

mod changes;
mod device_health;
mod devices;
mod identities;
mod insights;
mod keys;
mod users;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;
use strongbox_store::chain;
use strongbox_store::*;

mod vault_lifecycle;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "management",
        include_str!("../migrations/0002_management.sql"),
    ),
    (
        3,
        "vault lifecycle",
        include_str!("../migrations/0003_vault_lifecycle.sql"),
    ),
    (
        4,
        "identities",
        include_str!("../migrations/0004_identities.sql"),
    ),
    (
        5,
        "audit_insights",
        include_str!("../migrations/0005_audit_insights.sql"),
    ),
    (6, "devices", include_str!("../migrations/0006_devices.sql")),
    (7, "changes", include_str!("../migrations/0007_changes.sql")),
    (
        8,
        "device health",
        include_str!("../migrations/0008_device_health.sql"),
    ),
    (9, "users", include_str!("../migrations/0009_users.sql")),
];

fn backend(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        // SQLITE_FULL (13; extended codes keep it in the low byte): the unix VFS maps ENOSPC to it.
        sqlx::Error::Database(db)
            if db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 13) =>
        {
            disk::full(&e)
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => disk::full(&e),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Commits, and notes that writes work (after a full disk, that is news worth one log line).
async fn commit(tx: Transaction<'_, Sqlite>) -> StoreResult<()> {
    tx.commit().await.map_err(backend)?;
    disk::wrote();
    Ok(())
}

#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite:/path/to/file.db`) and migrates it.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // After SQLITE_FULL (or an I/O error) SQLite may roll the transaction back on its
            // own; sqlx's ROLLBACK then fails and its transaction depth stays at 1, so every
            // later BEGIN fails ("non-zero transaction depth"). A connection returned in that
            // state is closed and the pool opens a fresh one: the write path heals itself.
            .after_release(|conn, _| {
                Box::pin(async move {
                    // A round trip first: the rollback a dropped transaction queued runs before it.
                    sqlx::Connection::ping(conn).await?;
                    Ok(!sqlx::Connection::is_in_transaction(conn))
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    (*d).into(),
                    MigrationType::Simple,
                    sqlx::SqlStr::from_static(sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let migrator = Migrator {
            migrations: migrations.into(),
            ..Migrator::DEFAULT
        };
        migrator
            .run(&write)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        Ok(SqliteStore { write, read })
    }

    /// The write pool, for tests that need to reach under the store (tampering checks).
    pub fn pool(&self) -> &SqlitePool {
        &self.write
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

fn version_row(r: &SqliteRow) -> Result<VersionRow, sqlx::Error> {
    Ok(VersionRow {
        vault_id: r.try_get("vault_id")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        seq: r.try_get("seq")?,
        sealed_value: r.try_get("sealed_value")?,
        content_type: r.try_get("content_type")?,
        tags_json: r.try_get("tags_json")?,
        enabled: r.try_get("enabled")?,
        nbf: r.try_get("nbf")?,
        exp: r.try_get("exp")?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
    })
}

fn deletion(r: &SqliteRow) -> Result<Option<Deletion>, sqlx::Error> {
    let deleted_at: Option<i64> = r.try_get("deleted_at")?;
    let purge_at: Option<i64> = r.try_get("purge_at")?;
    Ok(deleted_at
        .zip(purge_at)
        .map(|(deleted_at, purge_at)| Deletion {
            deleted_at,
            purge_at,
        }))
}

fn secret_row(r: &SqliteRow) -> Result<SecretRow, sqlx::Error> {
    Ok(SecretRow {
        vault_id: r.try_get("vault_id")?,
        name: r.try_get("name")?,
        display_name: r.try_get("display_name")?,
        deleted: deletion(r)?,
    })
}

fn role_assignment_row(r: &SqliteRow) -> Result<RoleAssignmentRow, sqlx::Error> {
    Ok(RoleAssignmentRow {
        id: r.try_get("id")?,
        scope: r.try_get("scope")?,
        role_definition_id: r.try_get("role_definition_id")?,
        principal_id: r.try_get("principal_id")?,
        created: r.try_get("created")?,
    })
}

fn vault_row(r: &SqliteRow) -> Result<VaultRow, sqlx::Error> {
    Ok(VaultRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        tenant_id: r.try_get("tenant_id")?,
        subscription_id: r.try_get("subscription_id")?,
        resource_group: r.try_get("resource_group")?,
        location: r.try_get("location")?,
        resource_id: r.try_get("resource_id")?,
        tags_json: r.try_get("tags_json")?,
        retention_days: r.try_get("retention_days")?,
        purge_protection: r.try_get("purge_protection")?,
        enable_rbac: r.try_get("enable_rbac")?,
        created: r.try_get("created")?,
        deleted: deletion(r)?,
    })
}

fn audit_row(r: &SqliteRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        entry: AuditEntry {
            vault_id: r.try_get("vault_id")?,
            time_ms: r.try_get("time_ms")?,
            operation: r.try_get("operation")?,
            result_type: r.try_get("result_type")?,
            caller_oid: r.try_get("caller_oid")?,
            record_json: r.try_get("record_json")?,
        },
        seq: r.try_get("seq")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

const SECRET_WITH_LATEST: &str = "SELECT s.vault_id, s.name, s.display_name, s.deleted_at, s.purge_at, \
     v.version, v.seq, v.sealed_value, v.content_type, v.tags_json, v.enabled, v.nbf, v.exp, v.created, v.updated \
     FROM secrets s JOIN secret_versions v ON v.vault_id = s.vault_id AND v.name = s.name AND v.seq = s.latest_seq";

async fn insert_version(
    tx: &mut Transaction<'static, Sqlite>,
    v: &VersionRow,
    seq: i64,
) -> Result<(), sqlx::Error> {
    keys::ensure_key_live(tx, &v.sealed_value).await?;
    sqlx::query(
        "INSERT INTO secret_versions (vault_id, name, version, seq, sealed_value, content_type, tags_json, \
         enabled, nbf, exp, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .bind(&v.vault_id)
    .bind(&v.name)
    .bind(&v.version)
    .bind(seq)
    .bind(&v.sealed_value)
    .bind(&v.content_type)
    .bind(&v.tags_json)
    .bind(v.enabled)
    .bind(v.nbf)
    .bind(v.exp)
    .bind(v.created)
    .bind(v.updated)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends one record to its vault's chain inside `tx`; returns its position (seq).
async fn append_chained(
    tx: &mut Transaction<'static, Sqlite>,
    e: &AuditEntry,
) -> Result<i64, sqlx::Error> {
    let head = sqlx::query("SELECT seq, hash FROM audit_heads WHERE vault_id = ?1")
        .bind(&e.vault_id)
        .fetch_optional(&mut **tx)
        .await?;
    let (prev_seq, prev_hash): (i64, Vec<u8>) = match head {
        Some(r) => (r.try_get("seq")?, r.try_get("hash")?),
        None => (0, chain::GENESIS.to_vec()),
    };
    let seq = prev_seq + 1;
    let hash = chain::link(&prev_hash, seq, &e.record_json);
    sqlx::query(
        "INSERT INTO audit_records (vault_id, seq, time_ms, operation, result_type, caller_oid, record_json, \
         prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .bind(&e.vault_id)
    .bind(seq)
    .bind(e.time_ms)
    .bind(&e.operation)
    .bind(&e.result_type)
    .bind(&e.caller_oid)
    .bind(&e.record_json)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO audit_heads (vault_id, seq, hash) VALUES (?1, ?2, ?3) \
         ON CONFLICT (vault_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .bind(&e.vault_id)
    .bind(seq)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// The change a mutation makes, for the feed; `apply` fills in its position and time.
fn change(
    vault_id: &str,
    name: &str,
    display_name: String,
    kind: ChangeKind,
    version: Option<(String, bool)>,
) -> ChangeRow {
    let (version, enabled) = version.unzip();
    ChangeRow {
        vault_id: vault_id.to_string(),
        seq: 0,
        name: name.to_string(),
        display_name,
        version,
        kind,
        enabled,
        time_ms: 0,
    }
}

async fn display_name(
    tx: &mut Transaction<'static, Sqlite>,
    vault_id: &str,
    name: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT display_name FROM secrets WHERE vault_id = ?1 AND name = ?2")
        .bind(vault_id)
        .bind(name)
        .fetch_one(&mut **tx)
        .await
}

async fn apply_mutation(
    tx: &mut Transaction<'static, Sqlite>,
    m: &Mutation,
) -> StoreResult<ChangeRow> {
    match m {
        Mutation::PutVersion {
            display_name,
            version,
        } => {
            // An existing secret keeps its display name; RETURNING gives whichever is stored.
            let row = sqlx::query(
                "INSERT INTO secrets (vault_id, name, display_name, latest_seq) VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (vault_id, name) DO UPDATE SET latest_seq = secrets.latest_seq + 1 \
                 WHERE secrets.deleted_at IS NULL RETURNING latest_seq, display_name",
            )
            .bind(&version.vault_id)
            .bind(&version.name)
            .bind(display_name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?
            .ok_or(StoreError::Conflict)?;
            let seq: i64 = row.try_get("latest_seq").map_err(backend)?;
            let display: String = row.try_get("display_name").map_err(backend)?;
            insert_version(tx, version, seq).await.map_err(backend)?;
            Ok(change(
                &version.vault_id,
                &version.name,
                display,
                ChangeKind::NewVersion,
                Some((version.version.clone(), version.enabled)),
            ))
        }
        Mutation::UpdateVersion { version: v } => {
            let done = sqlx::query(
                "UPDATE secret_versions SET content_type = ?4, tags_json = ?5, enabled = ?6, nbf = ?7, exp = ?8, \
                 updated = ?9 WHERE vault_id = ?1 AND name = ?2 AND version = ?3 AND EXISTS (SELECT 1 FROM secrets s \
                 WHERE s.vault_id = ?1 AND s.name = ?2 AND s.deleted_at IS NULL)",
            )
            .bind(&v.vault_id)
            .bind(&v.name)
            .bind(&v.version)
            .bind(&v.content_type)
            .bind(&v.tags_json)
            .bind(v.enabled)
            .bind(v.nbf)
            .bind(v.exp)
            .bind(v.updated)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            let display = display_name(tx, &v.vault_id, &v.name)
                .await
                .map_err(backend)?;
            Ok(change(
                &v.vault_id,
                &v.name,
                display,
                ChangeKind::Updated,
                Some((v.version.clone(), v.enabled)),
            ))
        }
        Mutation::SoftDelete {
            vault_id,
            name,
            deleted_at,
            purge_at,
        } => {
            let display: Option<String> = sqlx::query_scalar(
                "UPDATE secrets SET deleted_at = ?3, purge_at = ?4 WHERE vault_id = ?1 AND name = ?2 \
                 AND deleted_at IS NULL RETURNING display_name",
            )
            .bind(vault_id)
            .bind(name)
            .bind(deleted_at)
            .bind(purge_at)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
            let display = display.ok_or(StoreError::NotFound)?;
            Ok(change(vault_id, name, display, ChangeKind::Deleted, None))
        }
        Mutation::Recover { vault_id, name } => {
            let done = sqlx::query(
                "UPDATE secrets SET deleted_at = NULL, purge_at = NULL WHERE vault_id = ?1 AND name = ?2 \
                 AND deleted_at IS NOT NULL",
            )
            .bind(vault_id)
            .bind(name)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            let latest = sqlx::query(
                "SELECT s.display_name, v.version, v.enabled FROM secrets s JOIN secret_versions v \
                 ON v.vault_id = s.vault_id AND v.name = s.name AND v.seq = s.latest_seq \
                 WHERE s.vault_id = ?1 AND s.name = ?2",
            )
            .bind(vault_id)
            .bind(name)
            .fetch_one(&mut **tx)
            .await
            .map_err(backend)?;
            let get = |c: &str| latest.try_get::<String, _>(c).map_err(backend);
            let enabled: bool = latest.try_get("enabled").map_err(backend)?;
            Ok(change(
                vault_id,
                name,
                get("display_name")?,
                ChangeKind::Recovered,
                Some((get("version")?, enabled)),
            ))
        }
        Mutation::Purge { vault_id, name } => {
            let display: Option<String> = sqlx::query_scalar(
                "SELECT display_name FROM secrets WHERE vault_id = ?1 AND name = ?2 AND deleted_at IS NOT NULL",
            )
            .bind(vault_id)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
            let display = display.ok_or(StoreError::NotFound)?;
            for sql in [
                "DELETE FROM secret_versions WHERE vault_id = ?1 AND name = ?2",
                "DELETE FROM secrets WHERE vault_id = ?1 AND name = ?2",
            ] {
                sqlx::query(sql)
                    .bind(vault_id)
                    .bind(name)
                    .execute(&mut **tx)
                    .await
                    .map_err(backend)?;
            }
            Ok(change(vault_id, name, display, ChangeKind::Purged, None))
        }
        Mutation::Restore {
            display_name,
            versions,
        } => {
            let (Some(first), Some(last)) = (versions.first(), versions.last()) else {
                return Err(StoreError::NotFound);
            };
            sqlx::query("INSERT INTO secrets (vault_id, name, display_name, latest_seq) VALUES (?1, ?2, ?3, ?4)")
                .bind(&first.vault_id)
                .bind(&first.name)
                .bind(display_name)
                .bind(versions.len() as i64)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            for (i, v) in versions.iter().enumerate() {
                insert_version(tx, v, i as i64 + 1).await.map_err(backend)?;
            }
            Ok(change(
                &first.vault_id,
                &first.name,
                display_name.clone(),
                ChangeKind::Restored,
                Some((last.version.clone(), last.enabled)),
            ))
        }
    }
}

/// Records `c` in the feed (inside the mutation's transaction).
async fn record_change(
    tx: &mut Transaction<'static, Sqlite>,
    c: &ChangeRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO secret_changes (vault_id, seq, name, display_name, version, change, enabled, time_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(&c.vault_id)
    .bind(c.seq)
    .bind(&c.name)
    .bind(&c.display_name)
    .bind(&c.version)
    .bind(c.kind.as_str())
    .bind(c.enabled)
    .bind(c.time_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn pool_usage(&self) -> PoolUsage {
        [&self.write, &self.read]
            .iter()
            .fold(PoolUsage::default(), |u, p| PoolUsage {
                open: u.open + p.size(),
                idle: u.idle + p.num_idle() as u32,
            })
    }

    async fn count_live(&self) -> StoreResult<LiveCounts> {
        let (vaults, secrets): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM vaults WHERE deleted_at IS NULL), \
                    (SELECT COUNT(*) FROM secrets WHERE deleted_at IS NULL)",
        )
        .fetch_one(&self.read)
        .await
        .map_err(backend)?;
        Ok(LiveCounts {
            vaults: vaults.max(0) as u64,
            secrets: secrets.max(0) as u64,
        })
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)
    }

    async fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let stored = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await?;
        Ok(stored)
    }

    async fn list_data_keys(&self) -> StoreResult<Vec<DataKeyRow>> {
        let rows = sqlx::query("SELECT id, wrapped FROM data_keys ORDER BY id")
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(DataKeyRow {
                    id: r.try_get::<i64, _>("id")? as u32,
                    wrapped: r.try_get("wrapped")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn insert_data_key(&self, key: DataKeyRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO data_keys (id, wrapped) VALUES (?1, ?2)")
            .bind(key.id as i64)
            .bind(key.wrapped)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT kid, sealed_private, public_jwk, created FROM signing_keys ORDER BY created",
        )
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRow {
                    kid: r.try_get("kid")?,
                    sealed_private: r.try_get("sealed_private")?,
                    public_jwk: r.try_get("public_jwk")?,
                    created: r.try_get("created")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn insert_signing_key(&self, key: SigningKeyRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO signing_keys (kid, sealed_private, public_jwk, created) VALUES (?1, ?2, ?3, ?4)")
            .bind(key.kid)
            .bind(key.sealed_private)
            .bind(key.public_jwk)
            .bind(key.created)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn insert_tenant(&self, tenant: TenantRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO tenants (id, display_name) VALUES (?1, ?2)")
            .bind(tenant.id)
            .bind(tenant.display_name)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> StoreResult<Option<TenantRow>> {
        let row = sqlx::query("SELECT id, display_name FROM tenants WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(TenantRow {
                id: r.try_get("id")?,
                display_name: r.try_get("display_name")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn insert_principal(&self, p: PrincipalRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO principals (object_id, tenant_id, client_id, display_name, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(p.object_id)
        .bind(p.tenant_id)
        .bind(p.client_id)
        .bind(p.display_name)
        .bind(p.kind)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_principal_by_client_id(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> StoreResult<Option<PrincipalRow>> {
        let row = sqlx::query(
            "SELECT object_id, tenant_id, client_id, display_name, kind FROM principals \
             WHERE tenant_id = ?1 AND client_id = ?2",
        )
        .bind(tenant_id)
        .bind(client_id)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(PrincipalRow {
                object_id: r.try_get("object_id")?,
                tenant_id: r.try_get("tenant_id")?,
                client_id: r.try_get("client_id")?,
                display_name: r.try_get("display_name")?,
                kind: r.try_get("kind")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn insert_client_secret(&self, s: ClientSecretRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO client_secrets (id, principal_id, hash, expires) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(s.id)
        .bind(s.principal_id)
        .bind(s.hash)
        .bind(s.expires)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn list_client_secrets(&self, principal_id: &str) -> StoreResult<Vec<ClientSecretRow>> {
        let rows = sqlx::query(
            "SELECT id, principal_id, hash, expires FROM client_secrets WHERE principal_id = ?1",
        )
        .bind(principal_id)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(ClientSecretRow {
                    id: r.try_get("id")?,
                    principal_id: r.try_get("principal_id")?,
                    hash: r.try_get("hash")?,
                    expires: r.try_get("expires")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn insert_subscription(&self, sub: SubscriptionRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO subscriptions (id, tenant_id, display_name) VALUES (?1, ?2, ?3)")
            .bind(sub.id)
            .bind(sub.tenant_id)
            .bind(sub.display_name)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_subscription(&self, id: &str) -> StoreResult<Option<SubscriptionRow>> {
        let row =
            sqlx::query("SELECT id, tenant_id, display_name FROM subscriptions WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
        row.map(|r| {
            Ok(SubscriptionRow {
                id: r.try_get("id")?,
                tenant_id: r.try_get("tenant_id")?,
                display_name: r.try_get("display_name")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn insert_vault(&self, v: VaultRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO vaults (id, name, tenant_id, subscription_id, resource_group, location, resource_id, tags_json, \
             retention_days, purge_protection, enable_rbac, created, deleted_at, purge_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .bind(v.id)
        .bind(v.name)
        .bind(v.tenant_id)
        .bind(v.subscription_id)
        .bind(v.resource_group)
        .bind(v.location)
        .bind(v.resource_id)
        .bind(v.tags_json)
        .bind(v.retention_days)
        .bind(v.purge_protection)
        .bind(v.enable_rbac)
        .bind(v.created)
        .bind(v.deleted.map(|d| d.deleted_at))
        .bind(v.deleted.map(|d| d.purge_at))
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn update_vault(&self, v: VaultRow, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
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
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn purge_vault(&self, vault_id: &str, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let resource_id: Option<String> = sqlx::query_scalar(
            "SELECT resource_id FROM vaults WHERE id = ?1 AND deleted_at IS NOT NULL",
        )
        .bind(vault_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(resource_id) = resource_id else {
            return Err(StoreError::NotFound);
        };
        for sql in [
            "DELETE FROM secret_versions WHERE vault_id = ?1",
            "DELETE FROM secrets WHERE vault_id = ?1",
            "DELETE FROM access_policies WHERE vault_id = ?1",
            "DELETE FROM diagnostic_settings WHERE vault_id = ?1",
            "DELETE FROM secret_changes WHERE vault_id = ?1",
            "DELETE FROM change_floors WHERE vault_id = ?1",
            "DELETE FROM vaults WHERE id = ?1",
        ] {
            sqlx::query(sql)
                .bind(vault_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let scope = resource_id.to_ascii_lowercase();
        sqlx::query("DELETE FROM role_assignments WHERE scope = ?1 OR scope LIKE ?2")
            .bind(&scope)
            .bind(format!("{scope}/%"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        append_chained(&mut tx, &audit).await.map_err(backend)?;
        commit(tx).await
    }

    async fn delete_access_policy(&self, vault_id: &str, object_id: &str) -> StoreResult<()> {
        let done =
            sqlx::query("DELETE FROM access_policies WHERE vault_id = ?1 AND object_id = ?2")
                .bind(vault_id)
                .bind(object_id)
                .execute(&self.write)
                .await
                .map_err(backend)?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn insert_role_assignment(&self, a: RoleAssignmentRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO role_assignments (id, scope, role_definition_id, principal_id, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(a.id)
        .bind(a.scope.to_ascii_lowercase())
        .bind(a.role_definition_id)
        .bind(a.principal_id)
        .bind(a.created)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn delete_role_assignment(&self, id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM role_assignments WHERE id = ?1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn list_role_assignments_for_principal(
        &self,
        principal_id: &str,
    ) -> StoreResult<Vec<RoleAssignmentRow>> {
        let rows = sqlx::query(
            "SELECT * FROM role_assignments WHERE principal_id = ?1 ORDER BY created, id",
        )
        .bind(principal_id)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(role_assignment_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn list_role_assignments_under(
        &self,
        scope: &str,
    ) -> StoreResult<Vec<RoleAssignmentRow>> {
        let scope = scope.to_ascii_lowercase();
        let rows = sqlx::query(
            "SELECT * FROM role_assignments WHERE scope = ?1 OR scope LIKE ?2 ORDER BY created, id",
        )
        .bind(&scope)
        .bind(format!("{scope}/%"))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(role_assignment_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn get_vault_by_name(&self, name: &str) -> StoreResult<Option<VaultRow>> {
        let row = sqlx::query("SELECT * FROM vaults WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(vault_row).transpose().map_err(backend)
    }

    async fn list_vaults(&self) -> StoreResult<Vec<VaultRow>> {
        let rows = sqlx::query("SELECT * FROM vaults ORDER BY name")
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(vault_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn set_access_policy(&self, p: AccessPolicyRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO access_policies (vault_id, object_id, secret_permissions) VALUES (?1, ?2, ?3) \
             ON CONFLICT (vault_id, object_id) DO UPDATE SET secret_permissions = excluded.secret_permissions",
        )
        .bind(p.vault_id)
        .bind(p.object_id)
        .bind(p.secret_permissions.join(","))
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn list_access_policies(&self, vault_id: &str) -> StoreResult<Vec<AccessPolicyRow>> {
        let rows = sqlx::query(
            "SELECT vault_id, object_id, secret_permissions FROM access_policies WHERE vault_id = ?1 ORDER BY object_id",
        )
        .bind(vault_id)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let perms: String = r.try_get("secret_permissions")?;
                Ok(AccessPolicyRow {
                    vault_id: r.try_get("vault_id")?,
                    object_id: r.try_get("object_id")?,
                    secret_permissions: perms
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(String::from)
                        .collect(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn get_secret(&self, vault_id: &str, name: &str) -> StoreResult<Option<SecretRow>> {
        let row = sqlx::query("SELECT * FROM secrets WHERE vault_id = ?1 AND name = ?2")
            .bind(vault_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(secret_row).transpose().map_err(backend)
    }

    async fn get_latest(
        &self,
        vault_id: &str,
        name: &str,
    ) -> StoreResult<Option<(SecretRow, VersionRow)>> {
        let sql = format!("{SECRET_WITH_LATEST} WHERE s.vault_id = ?1 AND s.name = ?2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(vault_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((secret_row(&r)?, version_row(&r)?)))
            .transpose()
            .map_err(backend)
    }

    async fn get_version(
        &self,
        vault_id: &str,
        name: &str,
        version: &str,
    ) -> StoreResult<Option<VersionRow>> {
        let row = sqlx::query(
            "SELECT * FROM secret_versions WHERE vault_id = ?1 AND name = ?2 AND version = ?3",
        )
        .bind(vault_id)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(version_row).transpose().map_err(backend)
    }

    async fn list_secrets(
        &self,
        vault_id: &str,
        deleted: bool,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(SecretRow, VersionRow)>> {
        let sql = format!(
            "{SECRET_WITH_LATEST} WHERE s.vault_id = ?1 AND (s.deleted_at IS NOT NULL) = ?2 AND s.name > ?3 \
             ORDER BY s.name LIMIT ?4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(vault_id)
            .bind(deleted)
            .bind(after.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| Ok((secret_row(r)?, version_row(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn list_versions(
        &self,
        vault_id: &str,
        name: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<VersionRow>> {
        let rows = sqlx::query(
            "SELECT * FROM secret_versions WHERE vault_id = ?1 AND name = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
        )
        .bind(vault_id)
        .bind(name)
        .bind(after_seq)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(version_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn purge_due(&self, now: i64, limit: u32) -> StoreResult<Vec<SecretRow>> {
        let rows = sqlx::query(
            "SELECT * FROM secrets WHERE deleted_at IS NOT NULL AND purge_at <= ?1 ORDER BY purge_at LIMIT ?2",
        )
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(secret_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn apply(&self, mutation: Mutation, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut change = apply_mutation(&mut tx, &mutation).await?;
        if change.vault_id != audit.vault_id {
            // The feed's positions are the vault's chain positions.
            return Err(StoreError::Backend(
                "a secret mutation must be audited in its own vault's chain".into(),
            ));
        }
        change.seq = append_chained(&mut tx, &audit).await.map_err(backend)?;
        change.time_ms = audit.time_ms;
        record_change(&mut tx, &change).await.map_err(backend)?;
        commit(tx).await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for e in &entries {
            append_chained(&mut tx, e).await.map_err(backend)?;
        }
        commit(tx).await
    }

    async fn read_audit(
        &self,
        vault_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_records WHERE vault_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(vault_id)
        .bind(after_seq)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(audit_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn list_audit_chains(&self) -> StoreResult<Vec<String>> {
        sqlx::query_scalar("SELECT vault_id FROM audit_heads ORDER BY vault_id")
            .fetch_all(&self.read)
            .await
            .map_err(backend)
    }

    async fn audit_head(&self, vault_id: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE vault_id = ?1")
            .bind(vault_id)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((r.try_get("seq")?, r.try_get("hash")?)))
            .transpose()
            .map_err(backend)
    }
}
