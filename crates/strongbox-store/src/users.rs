//! People who sign in: users (principals of kind `User` with a password hash and an optional
//! sealed TOTP secret), their recovery codes (keyed hashes), the short-lived grants of the
//! interactive OAuth flows (device codes, authorization codes, pending sign-ins, web sessions),
//! refresh tokens in rotation families, sign-in failure counters, the sign-in log, and the tenant
//! setting that requires a second factor.
//!
//! Both SQL backends implement [`UserStore`] with [`impl_user_store!`]: the statements are the
//! same text on SQLite and PostgreSQL (written with `$n` placeholders, which each backend's
//! `sql()` turns into its own), so the two cannot drift apart.

use crate::{PrincipalRow, StoreResult};
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// Also the principal's object id (and its client id, which users never use).
    pub object_id: String,
    pub tenant_id: String,
    /// Lowercase user principal name (`alice@contoso.example`); unique across the deployment.
    pub upn: String,
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub enabled: bool,
    /// The TOTP secret sealed under the root key, once enrolled.
    pub totp_sealed: Option<Vec<u8>>,
    /// The last TOTP time step accepted (a code is good once).
    pub totp_last_step: i64,
    pub created: i64,
}

/// A short-lived record of an interactive flow, found by the keyed hash of its handle (the
/// handle itself is only ever in the client's hands).
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRow {
    pub id: String,
    /// `device`, `code`, `signin` or `session`.
    pub kind: String,
    /// The code a person types (device flow only); unique.
    pub user_code: Option<String>,
    pub user_id: Option<String>,
    /// Where the flow stands, e.g. `pending`, `approved`, `denied`, `redeemed`.
    pub state: String,
    /// Flow data as JSON (client, scopes, redirect URI, PKCE challenge…), never a secret.
    pub payload: String,
    pub expires: i64,
    /// Last change or use (sessions: last activity, for the idle timeout).
    pub touched: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshTokenRow {
    /// Keyed hash of the token.
    pub id: String,
    /// Every token rotated from one sign-in shares the family; a reuse revokes all of it.
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    /// JSON: what the sign-in established (authentication methods, time).
    pub payload: String,
    pub created: i64,
    pub expires: i64,
    pub used: Option<i64>,
    pub revoked: bool,
}

/// What redeeming a refresh token did.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// It was good: it is now used and the new token is in its family. Carries the old row.
    Rotated(RefreshTokenRow),
    /// It had been used (or revoked) before: the whole family is now revoked.
    Reused(RefreshTokenRow),
    Expired,
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SigninRow {
    pub time_ms: i64,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    /// The UPN, only when it names a user (a typed name that matches nobody might be a password).
    pub upn: Option<String>,
    pub client_id: Option<String>,
    /// `device_code`, `authorization_code`, `refresh_token`, `session`…
    pub flow: String,
    /// `Success` or `Failure`.
    pub result: String,
    /// Why (for failures), e.g. `InvalidPassword`, `LockedOut`.
    pub reason: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Failures counted under one key (`user:{upn}` or `ip:{address}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureCount {
    pub failures: i64,
    pub first: i64,
    pub last: i64,
}

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Inserts the principal and the user in one transaction. Conflict if the object id or the
    /// UPN is taken.
    async fn insert_user(&self, principal: PrincipalRow, user: UserRow) -> StoreResult<()>;
    async fn get_user(&self, object_id: &str) -> StoreResult<Option<UserRow>>;
    async fn get_user_by_upn(&self, upn: &str) -> StoreResult<Option<UserRow>>;
    /// Users of a tenant, by UPN.
    async fn list_users(&self, tenant_id: &str) -> StoreResult<Vec<UserRow>>;
    /// Replaces password hash, enabled flag, display name and TOTP secret. NotFound if absent.
    async fn update_user(&self, user: &UserRow) -> StoreResult<()>;
    /// Records `step` as the last accepted TOTP step if it is newer; false if it is not (a
    /// replayed code).
    async fn advance_totp_step(&self, object_id: &str, step: i64) -> StoreResult<bool>;
    /// Removes the user with its principal, recovery codes, grants, refresh tokens and role
    /// assignments. NotFound if absent.
    async fn delete_user(&self, object_id: &str) -> StoreResult<()>;

    /// Replaces the user's recovery codes (keyed hashes).
    async fn replace_recovery_codes(&self, user_id: &str, hashes: Vec<Vec<u8>>) -> StoreResult<()>;
    /// Marks the code used; false if it is unknown or was used.
    async fn consume_recovery_code(
        &self,
        user_id: &str,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<bool>;
    async fn count_recovery_codes(&self, user_id: &str) -> StoreResult<i64>;

    /// Conflict if the id or the user code exists. Expired grants are forgotten first.
    async fn insert_grant(&self, grant: GrantRow, now: i64) -> StoreResult<()>;
    async fn get_grant(&self, id: &str) -> StoreResult<Option<GrantRow>>;
    async fn get_grant_by_user_code(&self, user_code: &str) -> StoreResult<Option<GrantRow>>;
    /// Replaces state, user, payload, expiry and touched of the grant if its state is still
    /// `from_state`; false otherwise (someone else moved it first).
    async fn update_grant(&self, grant: &GrantRow, from_state: &str) -> StoreResult<bool>;
    async fn delete_grant(&self, id: &str) -> StoreResult<()>;
    /// Removes every grant of the user (sessions, pending codes); returns how many.
    async fn delete_user_grants(&self, user_id: &str) -> StoreResult<u64>;

    /// Starts a family (or continues one: the family must not be revoked, else Conflict).
    async fn insert_refresh_token(&self, token: RefreshTokenRow) -> StoreResult<()>;
    async fn get_refresh_token(&self, id: &str) -> StoreResult<Option<RefreshTokenRow>>;
    /// Redeems `id` once: marks it used and adds `next` (same family) in one transaction.
    async fn rotate_refresh_token(
        &self,
        id: &str,
        next: RefreshTokenRow,
        now: i64,
    ) -> StoreResult<RefreshOutcome>;
    /// Revokes every refresh token of the user; returns how many were live.
    async fn revoke_user_refresh_tokens(&self, user_id: &str) -> StoreResult<u64>;

    /// Counts a failure under `key`; a count whose first failure is older than `window` starts
    /// over. Returns the count after this failure.
    async fn note_signin_failure(
        &self,
        key: &str,
        now: i64,
        window: i64,
    ) -> StoreResult<FailureCount>;
    async fn signin_failures(&self, key: &str) -> StoreResult<Option<FailureCount>>;
    async fn clear_signin_failures(&self, key: &str) -> StoreResult<()>;

    async fn append_signin(&self, row: SigninRow) -> StoreResult<()>;
    /// Sign-ins at or after `since_ms`, oldest first, at most `limit`.
    async fn list_signins(&self, since_ms: i64, limit: i64) -> StoreResult<Vec<SigninRow>>;

    async fn require_mfa(&self, tenant_id: &str) -> StoreResult<bool>;
    async fn set_require_mfa(&self, tenant_id: &str, required: bool) -> StoreResult<()>;
}

/// Implements [`UserStore`] for a SQL backend. The backend crate provides `crate::sql(&str)`
/// (placeholder dialect), `crate::backend(sqlx::Error)`, and `self.begin()`, `self.read`,
/// `self.write`.
#[macro_export]
macro_rules! impl_user_store {
    ($store:ty, $row:ty, $tx:ty) => {
        const USER_COLUMNS: &str = "u.object_id, p.tenant_id, u.upn, p.display_name, \
             u.password_hash, u.enabled, u.totp_sealed, u.totp_last_step, u.created";
        const GRANT_COLUMNS: &str =
            "id, kind, user_code, user_id, state, payload, expires, touched";
        const REFRESH_COLUMNS: &str =
            "id, family_id, user_id, client_id, payload, created, expires, used, revoked";
        const SIGNIN_COLUMNS: &str =
            "time_ms, tenant_id, user_id, upn, client_id, flow, result, reason, ip, user_agent";

        fn user_row(r: &$row) -> Result<$crate::UserRow, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::UserRow {
                object_id: r.try_get("object_id")?,
                tenant_id: r.try_get("tenant_id")?,
                upn: r.try_get("upn")?,
                display_name: r.try_get("display_name")?,
                password_hash: r.try_get("password_hash")?,
                enabled: r.try_get::<i64, _>("enabled")? != 0,
                totp_sealed: r.try_get("totp_sealed")?,
                totp_last_step: r.try_get("totp_last_step")?,
                created: r.try_get("created")?,
            })
        }

        fn grant_row(r: &$row) -> Result<$crate::GrantRow, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::GrantRow {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                user_code: r.try_get("user_code")?,
                user_id: r.try_get("user_id")?,
                state: r.try_get("state")?,
                payload: r.try_get("payload")?,
                expires: r.try_get("expires")?,
                touched: r.try_get("touched")?,
            })
        }

        fn refresh_row(r: &$row) -> Result<$crate::RefreshTokenRow, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::RefreshTokenRow {
                id: r.try_get("id")?,
                family_id: r.try_get("family_id")?,
                user_id: r.try_get("user_id")?,
                client_id: r.try_get("client_id")?,
                payload: r.try_get("payload")?,
                created: r.try_get("created")?,
                expires: r.try_get("expires")?,
                used: r.try_get("used")?,
                revoked: r.try_get::<i64, _>("revoked")? != 0,
            })
        }

        fn signin_row(r: &$row) -> Result<$crate::SigninRow, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::SigninRow {
                time_ms: r.try_get("time_ms")?,
                tenant_id: r.try_get("tenant_id")?,
                user_id: r.try_get("user_id")?,
                upn: r.try_get("upn")?,
                client_id: r.try_get("client_id")?,
                flow: r.try_get("flow")?,
                result: r.try_get("result")?,
                reason: r.try_get("reason")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        }

        fn failure_row(r: &$row) -> Result<$crate::FailureCount, sqlx::Error> {
            use sqlx::Row as _;
            Ok($crate::FailureCount {
                failures: r.try_get("failures")?,
                first: r.try_get("first_failure")?,
                last: r.try_get("last_failure")?,
            })
        }

        async fn insert_refresh(
            tx: &mut $tx,
            t: &$crate::RefreshTokenRow,
        ) -> $crate::StoreResult<()> {
            // A revoked family takes no new members (a rotation racing a revocation loses).
            let done = sqlx::query(sql(&format!(
                "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
                 WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $2 AND revoked = 1)"
            )))
            .bind(&t.id)
            .bind(&t.family_id)
            .bind(&t.user_id)
            .bind(&t.client_id)
            .bind(&t.payload)
            .bind(t.created)
            .bind(t.expires)
            .bind(t.used)
            .bind(i64::from(t.revoked))
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err($crate::StoreError::Conflict);
            }
            Ok(())
        }

        fn user_query(condition: &str) -> sqlx::AssertSqlSafe<String> {
            sql(&format!(
                "SELECT {USER_COLUMNS} FROM users u JOIN principals p ON p.object_id = u.object_id \
                 WHERE {condition}"
            ))
        }

        #[async_trait::async_trait]
        impl $crate::UserStore for $store {
            async fn insert_user(
                &self,
                p: $crate::PrincipalRow,
                u: $crate::UserRow,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(sql(
                    "INSERT INTO principals (object_id, tenant_id, client_id, display_name, kind) \
                     VALUES ($1, $2, $3, $4, $5)",
                ))
                .bind(&p.object_id)
                .bind(&p.tenant_id)
                .bind(&p.client_id)
                .bind(&p.display_name)
                .bind(&p.kind)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                sqlx::query(sql(
                    "INSERT INTO users (object_id, upn, password_hash, enabled, totp_sealed, \
                     totp_last_step, created) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                ))
                .bind(&u.object_id)
                .bind(u.upn.to_lowercase())
                .bind(&u.password_hash)
                .bind(i64::from(u.enabled))
                .bind(&u.totp_sealed)
                .bind(u.totp_last_step)
                .bind(u.created)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                tx.commit().await.map_err(backend)
            }

            async fn get_user(
                &self,
                object_id: &str,
            ) -> $crate::StoreResult<Option<$crate::UserRow>> {
                let row = sqlx::query(user_query("u.object_id = $1"))
                    .bind(object_id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(backend)?;
                row.as_ref().map(user_row).transpose().map_err(backend)
            }

            async fn get_user_by_upn(
                &self,
                upn: &str,
            ) -> $crate::StoreResult<Option<$crate::UserRow>> {
                let row = sqlx::query(user_query("u.upn = $1"))
                    .bind(upn.to_lowercase())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(backend)?;
                row.as_ref().map(user_row).transpose().map_err(backend)
            }

            async fn list_users(
                &self,
                tenant_id: &str,
            ) -> $crate::StoreResult<Vec<$crate::UserRow>> {
                let rows = sqlx::query(user_query("p.tenant_id = $1 ORDER BY u.upn"))
                    .bind(tenant_id)
                    .fetch_all(&self.read)
                    .await
                    .map_err(backend)?;
                rows.iter()
                    .map(user_row)
                    .collect::<Result<_, _>>()
                    .map_err(backend)
            }

            async fn update_user(&self, u: &$crate::UserRow) -> $crate::StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(sql(
                    "UPDATE users SET password_hash = $2, enabled = $3, totp_sealed = $4 \
                     WHERE object_id = $1",
                ))
                .bind(&u.object_id)
                .bind(&u.password_hash)
                .bind(i64::from(u.enabled))
                .bind(&u.totp_sealed)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query(sql(
                    "UPDATE principals SET display_name = $2 WHERE object_id = $1",
                ))
                .bind(&u.object_id)
                .bind(&u.display_name)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                tx.commit().await.map_err(backend)
            }

            async fn advance_totp_step(
                &self,
                object_id: &str,
                step: i64,
            ) -> $crate::StoreResult<bool> {
                let done = sqlx::query(sql(
                    "UPDATE users SET totp_last_step = $2 WHERE object_id = $1 AND totp_last_step < $2",
                ))
                .bind(object_id)
                .bind(step)
                .execute(&self.write)
                .await
                .map_err(backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_user(&self, object_id: &str) -> $crate::StoreResult<()> {
                let mut tx = self.begin().await?;
                for statement in [
                    "DELETE FROM recovery_codes WHERE user_id = $1",
                    "DELETE FROM auth_grants WHERE user_id = $1",
                    "DELETE FROM refresh_tokens WHERE user_id = $1",
                    "DELETE FROM role_assignments WHERE principal_id = $1",
                ] {
                    sqlx::query(sql(statement))
                        .bind(object_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                let done = sqlx::query(sql("DELETE FROM users WHERE object_id = $1"))
                    .bind(object_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query(sql("DELETE FROM principals WHERE object_id = $1"))
                    .bind(object_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)
            }

            async fn replace_recovery_codes(
                &self,
                user_id: &str,
                hashes: Vec<Vec<u8>>,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(sql("DELETE FROM recovery_codes WHERE user_id = $1"))
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                for hash in hashes {
                    sqlx::query(sql(
                        "INSERT INTO recovery_codes (user_id, hash, used) VALUES ($1, $2, NULL)",
                    ))
                    .bind(user_id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                }
                tx.commit().await.map_err(backend)
            }

            async fn consume_recovery_code(
                &self,
                user_id: &str,
                hash: &[u8],
                now: i64,
            ) -> $crate::StoreResult<bool> {
                let done = sqlx::query(sql(
                    "UPDATE recovery_codes SET used = $3 WHERE user_id = $1 AND hash = $2 AND used IS NULL",
                ))
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn count_recovery_codes(&self, user_id: &str) -> $crate::StoreResult<i64> {
                sqlx::query_scalar(sql(
                    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used IS NULL",
                ))
                .bind(user_id)
                .fetch_one(&self.read)
                .await
                .map_err(backend)
            }

            async fn insert_grant(
                &self,
                g: $crate::GrantRow,
                now: i64,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(sql("DELETE FROM auth_grants WHERE expires < $1"))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                sqlx::query(sql(&format!(
                    "INSERT INTO auth_grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                )))
                .bind(&g.id)
                .bind(&g.kind)
                .bind(&g.user_code)
                .bind(&g.user_id)
                .bind(&g.state)
                .bind(&g.payload)
                .bind(g.expires)
                .bind(g.touched)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                tx.commit().await.map_err(backend)
            }

            async fn get_grant(&self, id: &str) -> $crate::StoreResult<Option<$crate::GrantRow>> {
                let row = sqlx::query(sql(&format!(
                    "SELECT {GRANT_COLUMNS} FROM auth_grants WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
                row.as_ref().map(grant_row).transpose().map_err(backend)
            }

            async fn get_grant_by_user_code(
                &self,
                user_code: &str,
            ) -> $crate::StoreResult<Option<$crate::GrantRow>> {
                let row = sqlx::query(sql(&format!(
                    "SELECT {GRANT_COLUMNS} FROM auth_grants WHERE user_code = $1"
                )))
                .bind(user_code)
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
                row.as_ref().map(grant_row).transpose().map_err(backend)
            }

            async fn update_grant(
                &self,
                g: &$crate::GrantRow,
                from_state: &str,
            ) -> $crate::StoreResult<bool> {
                let done = sqlx::query(sql(
                    "UPDATE auth_grants SET state = $2, user_id = $3, payload = $4, expires = $5, \
                     touched = $6 WHERE id = $1 AND state = $7",
                ))
                .bind(&g.id)
                .bind(&g.state)
                .bind(&g.user_id)
                .bind(&g.payload)
                .bind(g.expires)
                .bind(g.touched)
                .bind(from_state)
                .execute(&self.write)
                .await
                .map_err(backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_grant(&self, id: &str) -> $crate::StoreResult<()> {
                sqlx::query(sql("DELETE FROM auth_grants WHERE id = $1"))
                    .bind(id)
                    .execute(&self.write)
                    .await
                    .map_err(backend)?;
                Ok(())
            }

            async fn delete_user_grants(&self, user_id: &str) -> $crate::StoreResult<u64> {
                let done = sqlx::query(sql("DELETE FROM auth_grants WHERE user_id = $1"))
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(backend)?;
                Ok(done.rows_affected())
            }

            async fn insert_refresh_token(
                &self,
                t: $crate::RefreshTokenRow,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin().await?;
                insert_refresh(&mut tx, &t).await?;
                tx.commit().await.map_err(backend)
            }

            async fn get_refresh_token(
                &self,
                id: &str,
            ) -> $crate::StoreResult<Option<$crate::RefreshTokenRow>> {
                let row = sqlx::query(sql(&format!(
                    "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
                row.as_ref().map(refresh_row).transpose().map_err(backend)
            }

            async fn rotate_refresh_token(
                &self,
                id: &str,
                next: $crate::RefreshTokenRow,
                now: i64,
            ) -> $crate::StoreResult<$crate::RefreshOutcome> {
                let mut tx = self.begin().await?;
                // The conditional update is the one place two redemptions race: one wins.
                let won = sqlx::query(sql(
                    "UPDATE refresh_tokens SET used = $2 WHERE id = $1 AND used IS NULL \
                     AND revoked = 0 AND expires > $2",
                ))
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected()
                    == 1;
                let row = sqlx::query(sql(&format!(
                    "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                let Some(old) = row.as_ref().map(refresh_row).transpose().map_err(backend)? else {
                    return Ok($crate::RefreshOutcome::Unknown);
                };
                if won {
                    let next = $crate::RefreshTokenRow {
                        family_id: old.family_id.clone(),
                        user_id: old.user_id.clone(),
                        client_id: old.client_id.clone(),
                        ..next
                    };
                    insert_refresh(&mut tx, &next).await?;
                    tx.commit().await.map_err(backend)?;
                    return Ok($crate::RefreshOutcome::Rotated(old));
                }
                if old.used.is_none() && !old.revoked {
                    return Ok($crate::RefreshOutcome::Expired);
                }
                sqlx::query(sql("UPDATE refresh_tokens SET revoked = 1 WHERE family_id = $1"))
                    .bind(&old.family_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                Ok($crate::RefreshOutcome::Reused(old))
            }

            async fn revoke_user_refresh_tokens(&self, user_id: &str) -> $crate::StoreResult<u64> {
                let done = sqlx::query(sql(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = $1 AND revoked = 0",
                ))
                .bind(user_id)
                .execute(&self.write)
                .await
                .map_err(backend)?;
                Ok(done.rows_affected())
            }

            async fn note_signin_failure(
                &self,
                key: &str,
                now: i64,
                window: i64,
            ) -> $crate::StoreResult<$crate::FailureCount> {
                // One statement, so concurrent failures are all counted.
                let row = sqlx::query(sql(
                    "INSERT INTO signin_failures (key, failures, first_failure, last_failure) \
                     VALUES ($1, 1, $2, $2) ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN signin_failures.first_failure + $3 < $2 THEN 1 \
                                ELSE signin_failures.failures + 1 END, \
                     first_failure = CASE WHEN signin_failures.first_failure + $3 < $2 THEN $2 \
                                ELSE signin_failures.first_failure END, \
                     last_failure = $2 \
                     RETURNING failures, first_failure, last_failure",
                ))
                .bind(key)
                .bind(now)
                .bind(window)
                .fetch_one(&self.write)
                .await
                .map_err(backend)?;
                failure_row(&row).map_err(backend)
            }

            async fn signin_failures(
                &self,
                key: &str,
            ) -> $crate::StoreResult<Option<$crate::FailureCount>> {
                let row = sqlx::query(sql(
                    "SELECT failures, first_failure, last_failure FROM signin_failures WHERE key = $1",
                ))
                .bind(key)
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
                row.as_ref().map(failure_row).transpose().map_err(backend)
            }

            async fn clear_signin_failures(&self, key: &str) -> $crate::StoreResult<()> {
                sqlx::query(sql("DELETE FROM signin_failures WHERE key = $1"))
                    .bind(key)
                    .execute(&self.write)
                    .await
                    .map_err(backend)?;
                Ok(())
            }

            async fn append_signin(&self, s: $crate::SigninRow) -> $crate::StoreResult<()> {
                sqlx::query(sql(&format!(
                    "INSERT INTO signin_log ({SIGNIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                )))
                .bind(s.time_ms)
                .bind(&s.tenant_id)
                .bind(&s.user_id)
                .bind(&s.upn)
                .bind(&s.client_id)
                .bind(&s.flow)
                .bind(&s.result)
                .bind(&s.reason)
                .bind(&s.ip)
                .bind(&s.user_agent)
                .execute(&self.write)
                .await
                .map_err(backend)?;
                Ok(())
            }

            async fn list_signins(
                &self,
                since_ms: i64,
                limit: i64,
            ) -> $crate::StoreResult<Vec<$crate::SigninRow>> {
                let rows = sqlx::query(sql(&format!(
                    "SELECT {SIGNIN_COLUMNS} FROM signin_log WHERE time_ms >= $1 ORDER BY seq LIMIT $2"
                )))
                .bind(since_ms)
                .bind(limit)
                .fetch_all(&self.read)
                .await
                .map_err(backend)?;
                rows.iter()
                    .map(signin_row)
                    .collect::<Result<_, _>>()
                    .map_err(backend)
            }

            async fn require_mfa(&self, tenant_id: &str) -> $crate::StoreResult<bool> {
                let v: Option<i64> = sqlx::query_scalar(sql(
                    "SELECT require_mfa FROM tenant_settings WHERE tenant_id = $1",
                ))
                .bind(tenant_id)
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?;
                Ok(v.unwrap_or(0) != 0)
            }

            async fn set_require_mfa(
                &self,
                tenant_id: &str,
                required: bool,
            ) -> $crate::StoreResult<()> {
                sqlx::query(sql(
                    "INSERT INTO tenant_settings (tenant_id, require_mfa) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET require_mfa = $2",
                ))
                .bind(tenant_id)
                .bind(i64::from(required))
                .execute(&self.write)
                .await
                .map_err(backend)?;
                Ok(())
            }
        }
    };
}
