//! Copying an SQLite database into an empty PostgreSQL one (`latchkey
//! migrate`): every row of `users`, `api_keys`, `todos`, `access_changes`
//! and `audit_events`, column for column, so that keys, passwords, ids, the
//! revocations in force and the audit log all mean on PostgreSQL what they
//! meant on SQLite.
//!
//! The target is opened with [`open_target`], which looks at it before
//! creating latchkey's schema there: a database that holds anything else is
//! refused untouched, so a mistyped URL leaves another application's
//! database as it was.
//!
//! The source is read in one read transaction, so the copy is of one moment
//! even if a server still writes to the file; the target is written in one
//! transaction, so a copy that fails leaves it as empty as it was. Between
//! the rows and the commit the caller may write the target's signing keyring
//! in the same transaction (`latchkey migrate` copies the data directory's
//! there), so that it commits or rolls back with them. Rows are read a page
//! at a time in primary-key order and written a page per statement (one
//! array per column, unnested), which keeps memory bounded and round trips
//! few whatever the size of the database.
//!
//! Values are carried in the types the rest of `db/` reads them as (ids as
//! `Uuid`, times as `DateTime<Utc>`), so what does not decode stops the copy
//! rather than being copied wrong. PostgreSQL keeps times to the microsecond:
//! every time latchkey writes itself is to the millisecond and survives
//! exactly; a finer `expires_at` a client once sent loses its sub-microsecond
//! digits, as it would had it been sent to PostgreSQL directly.

use chrono::{DateTime, Utc};
use sqlx::{
    postgres::PgArguments, query::Query, sqlite::SqliteRow, FromRow, PgConnection, PgPool,
    Postgres, Sqlite, SqliteConnection, Transaction,
};
use uuid::Uuid;

use super::{
    audit::Row as EventRow, changes::Row as ChangeRow, postgres, Db, DbError, Location, Pools,
};

/// The tables latchkey's PostgreSQL migrations make, and sqlx's record of
/// them.
const SCHEMA: [&str; 7] = [
    "users",
    "api_keys",
    "todos",
    "access_changes",
    "audit_events",
    "signing_keyring",
    "_sqlx_migrations",
];

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
    pub events: u64,
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
    #[error(
        "the PostgreSQL database holds tables that are not latchkey's ({}): latchkey migrate \
         copies only into an empty database, and wrote nothing, not even latchkey's schema: \
         check that the URL names the database meant",
        listed(.0)
    )]
    NotLatchkeys(Vec<String>),
    #[error("copying the {table}")]
    Table {
        table: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Open(#[from] DbError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The first few of `names`, and how many more there are.
fn listed(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut listed = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        listed.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    listed
}

/// Opens the PostgreSQL database `target` names, for a copy into it, and
/// brings its schema up to date as [`Db::open`] does; but first refuses a
/// database that holds a table or view that is not latchkey's, since the
/// migrations would otherwise put latchkey's tables into whichever database
/// a mistyped URL names. A database with latchkey's schema (an instance, or
/// an earlier copy, has migrated it) is for [`CopyUnderWay::begin`] to find
/// empty or not.
pub async fn open_target(target: &Location, connections: u32) -> Result<Db, CopyError> {
    let Location::Postgres(url) = target else {
        return Err(CopyError::TargetNotPostgres);
    };
    let pool = postgres::connect(url, connections).await?;
    let checked = async {
        let foreign = foreign_tables(&pool).await?;
        if !foreign.is_empty() {
            return Err(CopyError::NotLatchkeys(foreign));
        }
        postgres::migrate(&pool).await?;
        Ok(())
    }
    .await;
    match checked {
        Ok(()) => Ok(Db {
            pools: Pools::Postgres(pool),
        }),
        Err(e) => {
            pool.close().await;
            Err(e)
        }
    }
}

/// The tables and views of the database, outside PostgreSQL's own schemas,
/// that are not latchkey's, as `schema.name`. A table of one of latchkey's
/// names is latchkey's only in the schema its migrations use, and only if
/// the record of migrations there holds latchkey's first: another
/// application's `users` is not.
async fn foreign_tables(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let relations: Vec<(String, bool)> = sqlx::query_as(
        r"SELECT n.nspname || '.' || c.relname,
                 (n.nspname = current_schema() AND c.relname::text = ANY($1)) IS TRUE
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
          ORDER BY 1",
    )
    .bind(&SCHEMA[..])
    .fetch_all(pool)
    .await?;
    let latchkeys = relations.iter().any(|(_, named)| *named) && migrated(pool).await?;
    Ok(relations
        .into_iter()
        .filter(|(_, named)| !(*named && latchkeys))
        .map(|(name, _)| name)
        .collect())
}

/// Whether latchkey's first migration is recorded in the current schema.
async fn migrated(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let recorded: bool = sqlx::query_scalar(
        "SELECT to_regclass(quote_ident(current_schema()) || '._sqlx_migrations') IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    if !recorded {
        return Ok(false);
    }
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = $1 AND success)",
    )
    .bind(postgres::first_migration())
    .fetch_one(pool)
    .await
}

/// A copy under way: the source's read transaction and the target's write
/// transaction. Nothing of it is visible on the target before
/// [`CopyUnderWay::commit`]; dropped, it is rolled back.
pub struct CopyUnderWay {
    from: Transaction<'static, Sqlite>,
    to: Transaction<'static, Postgres>,
}

impl CopyUnderWay {
    /// Begins a copy of `source` (SQLite) into `target` (PostgreSQL), whose
    /// schema must be current, as [`open_target`] leaves it, and which must
    /// hold no account, key, todo or signing keyring.
    pub async fn begin(source: &Db, target: &Db) -> Result<CopyUnderWay, CopyError> {
        let Pools::Sqlite(source) = &source.pools else {
            return Err(CopyError::SourceNotSqlite);
        };
        let Pools::Postgres(target) = &target.pools else {
            return Err(CopyError::TargetNotPostgres);
        };

        let mut to = target.begin().await?;
        // Held to the commit: a server started on the target meanwhile
        // waits, instead of writing rows between the check and the copy.
        sqlx::query(
            "LOCK TABLE users, api_keys, todos, access_changes, audit_events IN EXCLUSIVE MODE",
        )
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
        Ok(CopyUnderWay { from, to })
    }

    /// Copies every row of the source's tables.
    pub async fn rows(&mut self) -> Result<Copied, CopyError> {
        let (from, to) = (&mut *self.from, &mut *self.to);
        Ok(Copied {
            // Parents before children: the foreign keys are checked row by row.
            users: count(copy_table::<UserRow>(from, to).await).map_err(table("accounts"))?,
            keys: count(copy_table::<KeyRow>(from, to).await).map_err(table("API keys"))?,
            todos: count(copy_table::<TodoRow>(from, to).await).map_err(table("todos"))?,
            changes: copy_changes(from, to)
                .await
                .map_err(table("revocation feed"))?,
            events: count(copy_table::<EventRow>(from, to).await).map_err(table("audit log"))?,
        })
    }

    /// Writes the target's signing keyring as [`super::keyring::update`]
    /// does, but in the copy's transaction: the keyring becomes the target's
    /// with the rows or not at all, so a copy that fails after it leaves the
    /// target as empty as the rows do, and can be made again.
    pub async fn keyring<T, E>(
        &mut self,
        change: impl FnOnce(Option<&[u8]>) -> Result<(Vec<u8>, T), E>,
    ) -> Result<T, E>
    where
        E: From<sqlx::Error>,
    {
        let written = super::keyring::update_in(&mut self.to, |stored| {
            change(stored).map(|(sealed, outcome)| super::keyring::Written {
                sealed,
                events: Vec::new(),
                outcome,
            })
        });
        Ok(written.await?.0)
    }

    /// Makes the copied rows, and the keyring if one was written, the
    /// target's.
    pub async fn commit(self) -> Result<(), CopyError> {
        self.from.rollback().await?;
        self.to.commit().await?;
        Ok(())
    }
}

fn count<K>(copied: Result<(u64, K), sqlx::Error>) -> Result<u64, sqlx::Error> {
    copied.map(|(rows, _)| rows)
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

/// One table as a copy moves it: read from SQLite a page at a time in the
/// order of its key, written to PostgreSQL a page per statement.
trait Table: for<'r> FromRow<'r, SqliteRow> + Send + Unpin + Sized {
    const NAME: &'static str;
    const COLUMNS: &'static str;
    const KEY: &'static str;
    type Key: for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite> + Send + Copy;

    fn key(&self) -> Self::Key;

    /// The statement that inserts `rows`, one array per column.
    fn insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments>;
}

/// Copies every row of `T`'s table; tells how many, and the last key.
async fn copy_table<T: Table>(
    from: &mut SqliteConnection,
    to: &mut PgConnection,
) -> Result<(u64, Option<T::Key>), sqlx::Error> {
    let mut copied = 0;
    let mut after = None;
    loop {
        let rows: Vec<T> = page(from, T::NAME, T::COLUMNS, T::KEY, after).await?;
        let Some(last) = rows.last() else {
            return Ok((copied, after));
        };
        after = Some(last.key());
        copied += rows.len() as u64;
        T::insert(&rows).execute(&mut *to).await?;
    }
}

/// A column of a page, as one array bind.
fn column<'a, R, V>(rows: &'a [R], value: impl Fn(&'a R) -> V) -> Vec<V> {
    rows.iter().map(value).collect()
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

impl Table for UserRow {
    const NAME: &'static str = "users";
    const COLUMNS: &'static str = "id, email, password_hash, role, disabled, created_at";
    const KEY: &'static str = "id";
    type Key = Uuid;

    fn key(&self) -> Uuid {
        self.id
    }

    fn insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, disabled, created_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[],
                                  $5::boolean[], $6::timestamptz[])",
        )
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| r.email.as_str()))
        .bind(column(rows, |r| r.password_hash.as_str()))
        .bind(column(rows, |r| r.role.as_str()))
        .bind(column(rows, |r| r.disabled))
        .bind(column(rows, |r| r.created_at))
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

impl Table for KeyRow {
    const NAME: &'static str = "api_keys";
    const COLUMNS: &'static str = "id, user_id, name, key_hash, hint, scopes, created_at, \
                                   expires_at, last_used_at, revoked_at";
    const KEY: &'static str = "id";
    type Key = Uuid;

    fn key(&self) -> Uuid {
        self.id
    }

    fn insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, hint, scopes, created_at,
                                   expires_at, last_used_at, revoked_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::text[],
                                  $6::text[], $7::timestamptz[], $8::timestamptz[],
                                  $9::timestamptz[], $10::timestamptz[])",
        )
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| r.user_id))
        .bind(column(rows, |r| r.name.as_str()))
        .bind(column(rows, |r| r.key_hash.as_slice()))
        .bind(column(rows, |r| r.hint.as_str()))
        .bind(column(rows, |r| r.scopes.as_str()))
        .bind(column(rows, |r| r.created_at))
        .bind(column(rows, |r| r.expires_at))
        .bind(column(rows, |r| r.last_used_at))
        .bind(column(rows, |r| r.revoked_at))
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

impl Table for TodoRow {
    const NAME: &'static str = "todos";
    const COLUMNS: &'static str = "id, user_id, title, completed, created_at, updated_at";
    const KEY: &'static str = "id";
    type Key = Uuid;

    fn key(&self) -> Uuid {
        self.id
    }

    fn insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
        sqlx::query(
            "INSERT INTO todos (id, user_id, title, completed, created_at, updated_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::boolean[],
                                  $5::timestamptz[], $6::timestamptz[])",
        )
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| r.user_id))
        .bind(column(rows, |r| r.title.as_str()))
        .bind(column(rows, |r| r.completed))
        .bind(column(rows, |r| r.created_at))
        .bind(column(rows, |r| r.updated_at))
    }
}

/// The feed's rows, with their numbers: they order the feed.
impl Table for ChangeRow {
    const NAME: &'static str = "access_changes";
    const COLUMNS: &'static str = "seq, kind, user_id, subject, at_ms, until_ms";
    const KEY: &'static str = "seq";
    type Key = i64;

    fn key(&self) -> i64 {
        self.seq
    }

    fn insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
        sqlx::query(
            "INSERT INTO access_changes (seq, kind, user_id, subject, at_ms, until_ms)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::uuid[], $4::uuid[],
                                  $5::bigint[], $6::bigint[])",
        )
        .bind(column(rows, |r| r.seq))
        .bind(column(rows, |r| r.kind.as_str()))
        .bind(column(rows, |r| r.user_id))
        .bind(column(rows, |r| r.subject))
        .bind(column(rows, |r| r.at_ms))
        .bind(column(rows, |r| r.until_ms))
    }
}

impl Table for EventRow {
    const NAME: &'static str = "audit_events";
    const COLUMNS: &'static str = "id, at, action, actor_user_id, actor_client_id, \
                                   actor_address, target_type, target_id, target_user_id, details";
    const KEY: &'static str = "id";
    type Key = Uuid;

    fn key(&self) -> Uuid {
        self.id
    }

    fn insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
        sqlx::query(
            "INSERT INTO audit_events (id, at, action, actor_user_id, actor_client_id,
                                       actor_address, target_type, target_id, target_user_id,
                                       details)
             SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::uuid[],
                                  $5::text[], $6::text[], $7::text[], $8::text[], $9::uuid[],
                                  $10::text[])",
        )
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| r.at))
        .bind(column(rows, |r| r.action.as_str()))
        .bind(column(rows, |r| r.actor_user_id))
        .bind(column(rows, |r| r.actor_client_id.as_deref()))
        .bind(column(rows, |r| r.actor_address.as_deref()))
        .bind(column(rows, |r| r.target_type.as_deref()))
        .bind(column(rows, |r| r.target_id.as_deref()))
        .bind(column(rows, |r| r.target_user_id))
        .bind(column(rows, |r| r.details.as_str()))
    }
}

/// The feed, whose numbers must go on where SQLite's stopped: an instance
/// that has seen a number must not see it again for another change. So the
/// target's sequence continues after the highest number SQLite ever gave,
/// pruned rows included, not only after the rows copied.
async fn copy_changes(
    from: &mut SqliteConnection,
    to: &mut PgConnection,
) -> Result<u64, sqlx::Error> {
    let (copied, last) = copy_table::<ChangeRow>(from, to).await?;
    // AUTOINCREMENT keeps the highest number given in `sqlite_sequence`.
    let given: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'access_changes'")
            .fetch_optional(&mut *from)
            .await?;
    let highest = last.unwrap_or(0).max(given.unwrap_or(0));
    if highest > 0 {
        sqlx::query("SELECT setval(pg_get_serial_sequence('access_changes', 'seq'), $1)")
            .bind(highest)
            .execute(&mut *to)
            .await?;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_first_tables_and_counts_the_rest() {
        let few: Vec<String> = ["public.orders", "shop.customers"].map(String::from).into();
        let many: Vec<String> = (1..=8).map(|n| format!("public.t{n}")).collect();

        assert_eq!(listed(&few), "public.orders, shop.customers");
        assert_eq!(
            listed(&many),
            "public.t1, public.t2, public.t3, public.t4, public.t5 and 3 more"
        );
    }
}
