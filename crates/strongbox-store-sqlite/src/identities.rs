//! [`IdentityStore`] on SQLite.

use crate::{SqliteStore, backend, commit, role_assignment_row};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use strongbox_store::*;

const PRINCIPAL_COLUMNS: &str = "p.object_id, p.tenant_id, p.client_id, p.display_name, p.kind";
const IDENTITY_COLUMNS: &str = "m.object_id AS m_object_id, m.kind AS m_kind, m.resource_id, \
     m.subscription_id, m.resource_group, m.name, m.location, m.tags_json, m.created";

fn principal_row(r: &SqliteRow) -> Result<PrincipalRow, sqlx::Error> {
    Ok(PrincipalRow {
        object_id: r.try_get("object_id")?,
        tenant_id: r.try_get("tenant_id")?,
        client_id: r.try_get("client_id")?,
        display_name: r.try_get("display_name")?,
        kind: r.try_get("kind")?,
    })
}

fn identity_pair(r: &SqliteRow) -> Result<(ManagedIdentityRow, PrincipalRow), sqlx::Error> {
    Ok((
        ManagedIdentityRow {
            object_id: r.try_get("m_object_id")?,
            kind: r.try_get("m_kind")?,
            resource_id: r.try_get("resource_id")?,
            subscription_id: r.try_get("subscription_id")?,
            resource_group: r.try_get("resource_group")?,
            name: r.try_get("name")?,
            location: r.try_get("location")?,
            tags_json: r.try_get("tags_json")?,
            created: r.try_get("created")?,
        },
        principal_row(r)?,
    ))
}

fn key_credential_row(r: &SqliteRow) -> Result<KeyCredentialRow, sqlx::Error> {
    Ok(KeyCredentialRow {
        id: r.try_get("id")?,
        principal_id: r.try_get("principal_id")?,
        kind: r.try_get("kind")?,
        key_id: r.try_get("key_id")?,
        sha256: r.try_get("sha256")?,
        der: r.try_get("der")?,
        not_before: r.try_get("not_before")?,
        expires: r.try_get("expires")?,
        created: r.try_get("created")?,
    })
}

fn endpoint_row(r: &SqliteRow) -> Result<IdentityEndpointRow, sqlx::Error> {
    Ok(IdentityEndpointRow {
        id: r.try_get("id")?,
        principal_id: r.try_get("principal_id")?,
        form: r.try_get("form")?,
        secret_hash: r.try_get("secret_hash")?,
        created: r.try_get("created")?,
    })
}

fn identity_query(condition: &str) -> String {
    format!(
        "SELECT {PRINCIPAL_COLUMNS}, {IDENTITY_COLUMNS} FROM managed_identities m \
         JOIN principals p ON p.object_id = m.object_id WHERE {condition}"
    )
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn get_principal(&self, object_id: &str) -> StoreResult<Option<PrincipalRow>> {
        let row = sqlx::query(
            "SELECT object_id, tenant_id, client_id, display_name, kind FROM principals WHERE object_id = ?1",
        )
        .bind(object_id)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(principal_row).transpose().map_err(backend)
    }

    async fn insert_managed_identity(
        &self,
        p: PrincipalRow,
        m: ManagedIdentityRow,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO principals (object_id, tenant_id, client_id, display_name, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&p.object_id)
        .bind(&p.tenant_id)
        .bind(&p.client_id)
        .bind(&p.display_name)
        .bind(&p.kind)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO managed_identities (object_id, kind, resource_id, subscription_id, resource_group, name, \
             location, tags_json, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(&m.object_id)
        .bind(&m.kind)
        .bind(m.resource_id.to_ascii_lowercase())
        .bind(&m.subscription_id)
        .bind(m.resource_group.to_ascii_lowercase())
        .bind(&m.name)
        .bind(&m.location)
        .bind(&m.tags_json)
        .bind(m.created)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn get_managed_identity_by_resource(
        &self,
        kind: &str,
        resource_id: &str,
    ) -> StoreResult<Option<(ManagedIdentityRow, PrincipalRow)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(identity_query(
            "m.kind = ?1 AND m.resource_id = ?2",
        )))
        .bind(kind)
        .bind(resource_id.to_ascii_lowercase())
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(identity_pair).transpose().map_err(backend)
    }

    async fn get_managed_identity(
        &self,
        object_id: &str,
    ) -> StoreResult<Option<(ManagedIdentityRow, PrincipalRow)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(identity_query("m.object_id = ?1")))
            .bind(object_id)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(identity_pair).transpose().map_err(backend)
    }

    async fn list_managed_identities(
        &self,
        subscription_id: &str,
    ) -> StoreResult<Vec<(ManagedIdentityRow, PrincipalRow)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} ORDER BY m.resource_id, m.kind",
            identity_query("m.subscription_id = ?1")
        )))
        .bind(subscription_id)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(identity_pair)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn update_managed_identity_tags(
        &self,
        object_id: &str,
        tags_json: Option<String>,
    ) -> StoreResult<()> {
        let done = sqlx::query("UPDATE managed_identities SET tags_json = ?2 WHERE object_id = ?1")
            .bind(object_id)
            .bind(tags_json)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_managed_identity(&self, object_id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM managed_identities WHERE object_id = ?1")
            .bind(object_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        for sql in [
            "DELETE FROM identity_endpoints WHERE principal_id = ?1",
            "DELETE FROM key_credentials WHERE principal_id = ?1",
            "DELETE FROM assertion_ids WHERE principal_id = ?1",
            "DELETE FROM client_secrets WHERE principal_id = ?1",
            "DELETE FROM role_assignments WHERE principal_id = ?1",
            "DELETE FROM principals WHERE object_id = ?1",
        ] {
            sqlx::query(sql)
                .bind(object_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        commit(tx).await
    }

    async fn insert_key_credential(&self, c: KeyCredentialRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO key_credentials (id, principal_id, kind, key_id, sha256, der, not_before, expires, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(c.id)
        .bind(c.principal_id)
        .bind(c.kind)
        .bind(c.key_id)
        .bind(c.sha256)
        .bind(c.der)
        .bind(c.not_before)
        .bind(c.expires)
        .bind(c.created)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn list_key_credentials(&self, principal_id: &str) -> StoreResult<Vec<KeyCredentialRow>> {
        let rows = sqlx::query(
            "SELECT * FROM key_credentials WHERE principal_id = ?1 ORDER BY created, key_id",
        )
        .bind(principal_id)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(key_credential_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn delete_key_credential(&self, principal_id: &str, key_id: &str) -> StoreResult<()> {
        let done =
            sqlx::query("DELETE FROM key_credentials WHERE principal_id = ?1 AND key_id = ?2")
                .bind(principal_id)
                .bind(key_id)
                .execute(&self.write)
                .await
                .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn record_assertion_id(
        &self,
        principal_id: &str,
        jti: &str,
        expires: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM assertion_ids WHERE expires < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query(
            "INSERT INTO assertion_ids (principal_id, jti, expires) VALUES (?1, ?2, ?3) \
             ON CONFLICT (principal_id, jti) DO NOTHING",
        )
        .bind(principal_id)
        .bind(jti)
        .bind(expires)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_identity_endpoint(&self, e: IdentityEndpointRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO identity_endpoints (id, principal_id, form, secret_hash, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(e.id)
        .bind(e.principal_id)
        .bind(e.form)
        .bind(e.secret_hash)
        .bind(e.created)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_identity_endpoint(&self, id: &str) -> StoreResult<Option<IdentityEndpointRow>> {
        let row = sqlx::query("SELECT * FROM identity_endpoints WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(endpoint_row).transpose().map_err(backend)
    }

    async fn get_identity_endpoint_by_hash(
        &self,
        secret_hash: &[u8],
    ) -> StoreResult<Option<IdentityEndpointRow>> {
        let row = sqlx::query("SELECT * FROM identity_endpoints WHERE secret_hash = ?1")
            .bind(secret_hash)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(endpoint_row).transpose().map_err(backend)
    }

    async fn list_identity_endpoints(
        &self,
        principal_id: &str,
    ) -> StoreResult<Vec<IdentityEndpointRow>> {
        let rows = sqlx::query(
            "SELECT * FROM identity_endpoints WHERE principal_id = ?1 ORDER BY created, id",
        )
        .bind(principal_id)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(endpoint_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn get_role_assignment(&self, id: &str) -> StoreResult<Option<RoleAssignmentRow>> {
        let row = sqlx::query("SELECT * FROM role_assignments WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref()
            .map(role_assignment_row)
            .transpose()
            .map_err(backend)
    }
}
