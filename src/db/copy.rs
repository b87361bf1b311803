//! Copying an SQLite database into an empty PostgreSQL one (`latchkey
//! migrate`): every row of `users`, `api_keys`, `todos` and `access_changes`,
//! column for column, so that keys, passwords, ids and the revocations in
//! force all mean on PostgreSQL what they meant on SQLite.
//!
//! The source is read in one read transaction, so the copy is of one moment
//! even if a server still writes to the file; the target is written in one
//! transaction, so a copy that fails leaves it as empty as it was. Between
//! the rows and the commit the caller may do what must succeed with them
//! (`latchkey migrate` copies the signing keyring there). Rows are
//! read a page at a time in primary-key order and written a page per
//! statement (one array per column, unnested), which keeps memory bounded and
//! round trips few whatever the size of the database.
//!
//! Values are carried in the types the rest of `db/` reads them as (ids as
//! `Uuid`, times as `DateTime<Utc>`), so what does not decode stops the copy
//! rather than being copied wrong. PostgreSQL keeps times to the microsecond:
//! every time latchkey writes itself is to the millisecond and survives
//! exactly; a finer `expires_at` a client once sent loses its sub-microsecond
//! digits, as it would had it been sent to PostgreSQL directly.

use chrono::{DateTime, Utc};
use sqlx::{
    sqlite::SqliteRow, FromRow, PgConnection, Postgres, Sqlite, SqliteConnection, Transaction,
};
use uuid::Uuid;

use super::{Db, Pools};

/// Rows per read and per insert: large enough that a million keys take a
/// thousand round trips, small enough that a page is a few hundred kilobytes.
const PAGE: i64 = 1000;

/// How many rows of each table were copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub users: u64,
    pub keys: u64,
    pub todos: u64,
    pub changes: u64,
}

/// What a target already holds, when it is not empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub users: i64,
    pub keys: i64,
    pub todos: i64,
    /// A signing keyring: an instance has started on the database, or a
    /// copy has been made into it.
    pub keyring: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the database to copy from is not an SQLite database")]
    SourceNotSqlite,
    #[error("the database to copy into is not a PostgreSQL database")]
    TargetNotPostgres,
    #[error(
        "the PostgreSQL database is not empty (accounts: {}, API keys: {}, todos: {}, \
         signing keyring: {}): latchkey migrate copies only into an empty database, and wrote \
         nothing",
        .0.users, .0.keys, .0.todos, if .0.keyring { "present" } else { "none" }
    )]
    NotEmpty(Held),
    #[error("copying the {table}")]
    Table {
        table: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A copy under way: the source's read transaction and the target's write
/// transaction. Nothing of it is visible on the target before [`Copy::commit`];
/// dropped, it is rolled back.
pub struct Copy {
    from: Transaction<'static, Sqlite>,
    to: Transaction<'static, Postgres>,
}

impl Copy {
    /// Begins a copy of `source` (SQLite) into `target` (PostgreSQL), whose
    /// schema must be current, as [`Db::open`] leaves it, and which must hold
    /// no account, key, todo or signing keyring.
    pub async fn begin(source: &Db, target: &Db) -> Result<Copy, CopyError> {
        let Pools::Sqlite(source) = &source.pools else {
            return Err(CopyError::SourceNotSqlite);
        };
        let Pools::Postgres(target) = &target.pools else {
            return Err(CopyError::TargetNotPostgres);
        };

        let mut to = target.begin().await?;
        // Held to the commit: a server started on the target meanwhile
        // waits, instead of writing rows between the check and the copy.
        sqlx::query("LOCK TABLE users, api_keys, todos, access_changes IN EXCLUSIVE MODE")
            .execute(&mut *to)
            .await?;
        let (users, keys, todos, keyring): (i64, i64, i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM api_keys),
                    (SELECT count(*) FROM todos),
                    EXISTS (SELECT 1 FROM signing_keyring WHERE sealed IS NOT NULL)",
        )
        .fetch_one(&mut *to)
        .await?;
        if users + keys + todos > 0 || keyring {
            to.rollback().await?;
            return Err(CopyError::NotEmpty(Held {
                users,
                keys,
                todos,
                keyring,
            }));
        }
        // SQLite takes the snapshot at the first read; every later read of
        // this transaction sees the file as it was then.
        let from = source.reader.begin().await?;
        Ok(Copy { from, to })
    }

    /// Copies every row of the source's tables.
    pub async fn rows(&mut self) -> Result<Copied, CopyError> {
        let (from, to) = (&mut *self.from, &mut *self.to);
        Ok(Copied {
            // Parents before children: the foreign keys are checked row by row.
            users: copy_users(from, to).await.map_err(table("accounts"))?,
            keys: copy_keys(from, to).await.map_err(table("API keys"))?,
            todos: copy_todos(from, to).await.map_err(table("todos"))?,
            changes: copy_changes(from, to)
                .await
                .map_err(table("revocation feed"))?,
        })
    }

    /// Makes the copied rows the target's.
    pub async fn commit(self) -> Result<(), CopyError> {
        self.from.rollback().await?;
        self.to.commit().await?;
        Ok(())
    }
}

fn table(table: &'static str) -> impl FnOnce(sqlx::Error) -> CopyError {
    move |source| CopyError::Table { table, source }
}

/// One page of `table` in the order of `key`, after the row whose key is
/// `after` (from the start without one). The first page has a statement of
/// its own: `$1 IS NULL OR key > $1` would keep SQLite from seeking the
/// primary key, and every page would scan the table.
async fn page<R, K>(
    from: &mut SqliteConnection,
    table: &str,
    columns: &str,
    key: &str,
    after: Option<K>,
) -> Result<Vec<R>, sqlx::Error>
where
    R: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    K: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
{
    match after {
        None => {
            let sql = format!("SELECT {columns} FROM {table} ORDER BY {key} LIMIT $1");
            sqlx::query_as(&sql).bind(PAGE).fetch_all(from).await
        }
        Some(after) => {
            let sql =
                format!("SELECT {columns} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2");
            sqlx::query_as(&sql)
                .bind(after)
                .bind(PAGE)
                .fetch_all(from)
                .await
        }
    }
}

#[derive(FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    password_hash: String,
    role: String,
    disabled: bool,
    created_at: DateTime<Utc>,
}

async fn copy_users(
    from: &mut SqliteConnection,
    to: &mut PgConnection,
) -> Result<u64, sqlx::Error> {
    let mut copied = 0;
    let mut after = None;
    loop {
        let rows: Vec<UserRow> = page(
            from,
            "users",
            "id, email, password_hash, role, disabled, created_at",
            "id",
            after,
        )
        .await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = Some(last.id);
        copied += rows.len() as u64;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, disabled, created_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[],
                                  $5::boolean[], $6::timestamptz[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.email.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.password_hash.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.role.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.disabled).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .execute(&mut *to)
        .await?;
    }
}

#[derive(FromRow)]
struct KeyRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    key_hash: Vec<u8>,
    hint: String,
    scopes: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

async fn copy_keys(from: &mut SqliteConnection, to: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut copied = 0;
    let mut after = None;
    loop {
        let rows: Vec<KeyRow> = page(
            from,
            "api_keys",
            "id, user_id, name, key_hash, hint, scopes, created_at, expires_at, last_used_at, \
             revoked_at",
            "id",
            after,
        )
        .await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = Some(last.id);
        copied += rows.len() as u64;
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, hint, scopes, created_at,
                                   expires_at, last_used_at, revoked_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::text[],
                                  $6::text[], $7::timestamptz[], $8::timestamptz[],
                                  $9::timestamptz[], $10::timestamptz[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.key_hash.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.hint.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.scopes.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.expires_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.last_used_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.revoked_at).collect::<Vec<_>>())
        .execute(&mut *to)
        .await?;
    }
}

#[derive(FromRow)]
struct TodoRow {
    id: Uuid,
    user_id: Uuid,
    title: String,
    completed: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn copy_todos(
    from: &mut SqliteConnection,
    to: &mut PgConnection,
) -> Result<u64, sqlx::Error> {
    let mut copied = 0;
    let mut after = None;
    loop {
        let rows: Vec<TodoRow> = page(
            from,
            "todos",
            "id, user_id, title, completed, created_at, updated_at",
            "id",
            after,
        )
        .await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = Some(last.id);
        copied += rows.len() as u64;
        sqlx::query(
            "INSERT INTO todos (id, user_id, title, completed, created_at, updated_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::boolean[],
                                  $5::timestamptz[], $6::timestamptz[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.title.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.completed).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .execute(&mut *to)
        .await?;
    }
}

#[derive(FromRow)]
struct ChangeRow {
    seq: i64,
    kind: String,
    user_id: Uuid,
    subject: Option<Uuid>,
    at_ms: i64,
    until_ms: i64,
}

/// The feed, with its numbers: they order it, and an instance that has seen
/// a number must not see it again for another change. So the target's
/// sequence continues after the highest number SQLite ever gave, pruned rows
/// included, not only after the rows copied.
async fn copy_changes(
    from: &mut SqliteConnection,
    to: &mut PgConnection,
) -> Result<u64, sqlx::Error> {
    let mut copied = 0;
    let mut after = None;
    let mut highest = 0;
    loop {
        let rows: Vec<ChangeRow> = page(
            from,
            "access_changes",
            "seq, kind, user_id, subject, at_ms, until_ms",
            "seq",
            after,
        )
        .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(last.seq);
        highest = last.seq;
        copied += rows.len() as u64;
        sqlx::query(
            "INSERT INTO access_changes (seq, kind, user_id, subject, at_ms, until_ms)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::uuid[], $4::uuid[],
                                  $5::bigint[], $6::bigint[])",
        )
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.subject).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at_ms).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.until_ms).collect::<Vec<_>>())
        .execute(&mut *to)
        .await?;
    }
    // AUTOINCREMENT keeps the highest number given in `sqlite_sequence`.
    let given: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'access_changes'")
            .fetch_optional(&mut *from)
            .await?;
    let highest = highest.max(given.unwrap_or(0));
    if highest > 0 {
        sqlx::query("SELECT setval(pg_get_serial_sequence('access_changes', 'seq'), $1)")
            .bind(highest)
            .execute(&mut *to)
            .await?;
    }
    Ok(copied)
}
