//! [`UserStore`](strongbox_store::UserStore) on PostgreSQL: the shared statements as written.

use crate::{PostgresStore, backend};

fn sql(statement: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(statement.to_string())
}

strongbox_store::impl_user_store!(
    PostgresStore,
    sqlx::postgres::PgRow,
    sqlx::Transaction<'static, sqlx::Postgres>
);
