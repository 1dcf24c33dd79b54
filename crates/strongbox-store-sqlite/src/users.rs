//! [`UserStore`](strongbox_store::UserStore) on SQLite: the shared statements with `?n`
//! placeholders.

use crate::{SqliteStore, backend};

fn sql(statement: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(statement.replace('$', "?"))
}

strongbox_store::impl_user_store!(
    SqliteStore,
    sqlx::sqlite::SqliteRow,
    sqlx::Transaction<'static, sqlx::Sqlite>
);
