//! Storage: the only module that speaks SQL. Callers hold a [`Db`] and call
//! the functions of `users`, `keys`, `todos`, `changes`, `audit` and (on
//! PostgreSQL) `keyring`; which connection a statement runs on, and on which
//! backend, is decided here and below.
//!
//! Two backends, one set of statements: SQLite (`sqlite.rs`, the embedded
//! default) and PostgreSQL (`postgres.rs`, for instances that share one
//! database). Each statement is written once, with `$1, $2…` placeholders,
//! which both drivers bind by number, and run through [`on_backend!`], which
//! compiles the same code once per backend. Ids (`Uuid`) and times
//! (`DateTime<Utc>`) bind and decode natively on both: BLOB and TEXT on
//! SQLite, UUID and TIMESTAMPTZ on PostgreSQL. Statements of one dialect only
//! (PRAGMAs, row locks) are kept to where the two truly differ.
//!
//! A statement that writes and returns its row (`INSERT … RETURNING`,
//! `UPDATE … RETURNING`) is always fetched with `fetch_all`, never
//! `fetch_one` or `fetch_optional`: SQLite commits such a statement when it is
//! stepped to its end, and sqlx, stopping after the first row, drops the error
//! of that commit (a full disk would be answered as a success), and never
//! lets SQLite checkpoint its write-ahead log.

/// Runs `$body` with `$pool` bound to the pool `$on` names, whichever backend
/// it is on: the code and its SQL are written once and compiled once per
/// backend, so the row types and binds must suit both. The body is one
/// operation: `?` and `return` in it leave the body, not the function.
///
/// On PostgreSQL the operation is bounded in time (`postgres::bounded`): a
/// server across a network can stop answering without closing anything. An
/// SQLite file cannot go silent that way, and what may make an operation
/// wait there is bounded already: a lock held by another process by the
/// busy timeout, the queue for the one writer by the pool's acquire timeout.
/// A deadline would only turn a busy moment into errors, and would not stop
/// a write that SQLite's worker thread has begun.
macro_rules! on_backend {
    ($on:expr, |$pool:ident| $body:expr) => {
        match $on {
            $crate::db::Pool::Sqlite($pool) => async { $body }.await,
            $crate::db::Pool::Postgres($pool) => {
                $crate::db::postgres::bounded(async { $body }).await
            }
        }
    };
}

pub mod audit;
pub mod backup;
pub mod changes;
pub mod copy;
pub mod keyring;
pub mod keys;
pub mod notifications;
mod postgres;
mod sqlite;
pub mod todos;
pub mod users;

use std::{path::PathBuf, str::FromStr};

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::{
    postgres::PgDatabaseError,
    sqlite::{SqliteConnectOptions, SqliteError},
    PgPool, SqlitePool,
};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    #[error("could not connect to PostgreSQL at {0}")]
    Connect(String, #[source] sqlx::Error),
    #[error("could not migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not make the database files owner-only")]
    Permissions(#[source] std::io::Error),
}

/// Where the database is.
pub enum Location {
    /// An SQLite database named by a `sqlite:` URL, as configured.
    SqliteUrl(String),
    /// An SQLite file (the default, in the data directory). A path is never
    /// pasted into a URL: `?` or `%` in it would be parsed.
    SqliteFile(PathBuf),
    /// A PostgreSQL database named by a `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Location {
    /// The backend a configured URL names.
    pub fn from_url(url: &str) -> Result<Location, UnsupportedUrl> {
        match scheme(url) {
            Some("sqlite") => Ok(Location::SqliteUrl(url.to_owned())),
            Some("postgres" | "postgresql") => Ok(Location::Postgres(url.to_owned())),
            Some(other) => Err(UnsupportedUrl(format!("a `{other}:` URL"))),
            None => Err(UnsupportedUrl(
                "a value without a scheme (for a file, write sqlite://PATH)".into(),
            )),
        }
    }

    /// The file of an SQLite database; none for PostgreSQL, or for a URL
    /// that names no file (`sqlite::memory:`).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let path = match self {
            Location::SqliteFile(path) => path.clone(),
            Location::SqliteUrl(url) => SqliteConnectOptions::from_str(url)
                .ok()?
                .get_filename()
                .to_owned(),
            Location::Postgres(_) => return None,
        };
        let name = path.to_string_lossy();
        let in_memory = name.is_empty() || name == ":memory:" || name.starts_with("file:");
        (!in_memory).then_some(path)
    }

    /// Where the database is, for messages: a file's path, or a PostgreSQL
    /// server and database without the URL's password.
    pub fn describe(&self) -> String {
        match self {
            Location::Postgres(url) => postgres::describe_url(url),
            sqlite => match sqlite.sqlite_file() {
                Some(path) => path.display().to_string(),
                None => "an in-memory SQLite database".into(),
            },
        }
    }
}

/// A URL's scheme, if it starts with one (RFC 3986 §3.1).
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// A database URL this server cannot use. The message names what was given
/// by its scheme only: the rest of a URL may hold a password.
#[derive(Debug, thiserror::Error)]
#[error(
    "--database-url must be an SQLite URL (sqlite://PATH) or a PostgreSQL URL \
     (postgres://USER@HOST/DATABASE or postgresql://…), not {0}"
)]
pub struct UnsupportedUrl(String);

impl UnsupportedUrl {
    /// What was given instead, named by its scheme: "a `mysql:` URL".
    pub fn given(&self) -> &str {
        &self.0
    }
}

/// Which kind of database a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    pools: Pools,
}

#[derive(Clone)]
enum Pools {
    Sqlite(sqlite::Pools),
    /// One pool for reads and writes: the server orders them itself.
    Postgres(PgPool),
}

/// The connections of one pool at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    pub pool: &'static str,
    pub in_use: u32,
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

/// The pool a statement runs on, for [`on_backend!`].
#[derive(Clone, Copy)]
pub(crate) enum Pool<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

impl Db {
    /// Opens (creating if missing) the database and brings its schema up to
    /// date. `connections` sizes the SQLite read pool, or the one PostgreSQL
    /// pool.
    pub async fn open(location: &Location, connections: u32) -> Result<Db, DbError> {
        let pools = match location {
            Location::SqliteUrl(url) => Pools::Sqlite(
                sqlite::open(SqliteConnectOptions::from_str(url)?, connections).await?,
            ),
            Location::SqliteFile(path) => Pools::Sqlite(
                sqlite::open(SqliteConnectOptions::new().filename(path), connections).await?,
            ),
            Location::Postgres(url) => Pools::Postgres(postgres::open(url, connections).await?),
        };
        Ok(Db { pools })
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    fn reader(&self) -> Pool<'_> {
        match &self.pools {
            Pools::Sqlite(pools) => Pool::Sqlite(&pools.reader),
            Pools::Postgres(pool) => Pool::Postgres(pool),
        }
    }

    fn writer(&self) -> Pool<'_> {
        match &self.pools {
            Pools::Sqlite(pools) => Pool::Sqlite(&pools.writer),
            Pools::Postgres(pool) => Pool::Postgres(pool),
        }
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        // `SELECT 1` would succeed without touching SQLite's file; this reads it.
        on_backend!(self.reader(), |pool| sqlx::query(
            "SELECT 1 FROM users LIMIT 1"
        )
        .execute(pool)
        .await
        .map(|_| ()))
    }

    /// What each pool holds now: SQLite's `reader` and `writer`, or
    /// PostgreSQL's one pool, `main`.
    pub fn connections(&self) -> Vec<Connections> {
        fn of<DB: sqlx::Database>(pool: &'static str, p: &sqlx::Pool<DB>) -> Connections {
            let open = p.size();
            let idle = u32::try_from(p.num_idle()).unwrap_or(u32::MAX).min(open);
            Connections {
                pool,
                in_use: open - idle,
                idle,
                max: p.options().get_max_connections(),
            }
        }
        match &self.pools {
            Pools::Sqlite(pools) => vec![of("reader", &pools.reader), of("writer", &pools.writer)],
            Pools::Postgres(pool) => vec![of("main", pool)],
        }
    }

    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite(pools) => {
                pools.reader.close().await;
                pools.writer.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }

    /// Stops the database file from growing, as a full disk would: writes
    /// that need a new page fail from now on. For tests of what a full disk
    /// does; SQLite's limit holds for every writing connection of this
    /// handle's pool, those it opens later included, and a PostgreSQL server
    /// has no such limit.
    #[doc(hidden)]
    pub async fn stop_growing(&self) -> Result<(), sqlx::Error> {
        match &self.pools {
            Pools::Sqlite(pools) => sqlite::stop_growing(pools).await,
            Pools::Postgres(_) => Err(sqlx::Error::Configuration(
                "only an SQLite file can be stopped from growing".into(),
            )),
        }
    }
}

/// A storage error as the rest of the crate sees it: the database cannot take
/// the request now (full disk, I/O error, unreachable), so the same request
/// may succeed later, or something else went wrong.
impl From<sqlx::Error> for crate::error::Error {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            crate::error::Error::Storage(e)
        } else {
            crate::error::Error::Database(e)
        }
    }
}

/// Whether the database stopped answering in the middle of an operation, so
/// that what the operation was to change may or may not have been changed.
/// Such an error is unavailability too.
pub fn outcome_unknown(err: &sqlx::Error) -> bool {
    postgres::is_unanswered(err)
}

/// Whether an error means the database cannot take the request now, as
/// opposed to a bug or a constraint: the request may succeed later, unchanged.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(e) => {
            if let Some(pg) = e.try_downcast_ref::<PgDatabaseError>() {
                postgres::is_unavailable(pg.code())
            } else if e.try_downcast_ref::<SqliteError>().is_some() {
                e.code().is_some_and(|code| sqlite::is_unavailable(&code))
            } else {
                false
            }
        }
        // No answer at all: no connection could be made or kept (a server
        // that is down, a dropped connection, a failed TLS handshake), or
        // none was free in time.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => true,
        _ => false,
    }
}

/// The migrations of one backend, as this version applies them. A database
/// that a newer version has migrated further is accepted: while instances of
/// one version and the next share a database in a rolling upgrade, the older
/// ones must still (re)start, and a release's migrations only add what the
/// version before it can ignore.
fn migrator(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// The current time as stored: UTC, to the millisecond, so what a client reads
/// back equals what it was told at creation.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The current time in milliseconds since the Unix epoch, as the revocation
/// feed records it.
pub fn now_ms() -> crate::domain::revocation::Millis {
    Utc::now().timestamp_millis()
}

/// The one row a write returned (see the module's note on `RETURNING`).
fn one<T>(rows: Vec<T>) -> Result<T, sqlx::Error> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

/// The row a write returned, if it changed one.
fn at_most_one<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

/// True when the error is a UNIQUE constraint failing. SQLite does not name
/// the constraint, so callers use it only where one unique column can clash.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_backend_and_others_are_refused_without_being_echoed() {
        assert!(matches!(
            Location::from_url("sqlite:///var/lib/latchkey.db"),
            Ok(Location::SqliteUrl(_))
        ));
        assert!(matches!(
            Location::from_url("sqlite::memory:"),
            Ok(Location::SqliteUrl(_))
        ));
        for url in [
            "postgres://latchkey@db.example.com/latchkey",
            "postgresql://latchkey:secret@db.example.com:5433/latchkey?sslmode=require",
        ] {
            assert!(matches!(Location::from_url(url), Ok(Location::Postgres(_))));
        }

        let mysql = Location::from_url("mysql://root:hunter2@db/latchkey")
            .err()
            .unwrap();
        let path = Location::from_url("/var/lib/latchkey.db").err().unwrap();

        assert!(mysql.to_string().contains("`mysql:`"), "{mysql}");
        assert!(!mysql.to_string().contains("hunter2"), "{mysql}");
        assert!(path.to_string().contains("sqlite://PATH"), "{path}");
    }

    #[test]
    fn a_location_names_its_file_and_describes_itself_without_a_password() {
        let url = Location::from_url("sqlite:///var/lib/latchkey/latchkey.db").unwrap();
        let file = Location::SqliteFile("/srv/data/latchkey.db".into());
        let memory = Location::from_url("sqlite::memory:").unwrap();
        let postgres =
            Location::from_url("postgres://latchkey:hunter2@db.example.com:5433/keys").unwrap();

        assert_eq!(
            url.sqlite_file(),
            Some(PathBuf::from("/var/lib/latchkey/latchkey.db"))
        );
        assert_eq!(file.describe(), "/srv/data/latchkey.db");
        assert_eq!(memory.sqlite_file(), None);
        assert_eq!(postgres.sqlite_file(), None);
        assert_eq!(postgres.describe(), "db.example.com:5433 (database keys)");
    }

    #[test]
    fn lost_connections_are_unavailability_and_other_errors_are_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for err in [
            sqlx::Error::Io(refused),
            sqlx::Error::Tls("handshake failed".into()),
            sqlx::Error::Protocol("unexpected end of stream".into()),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
        ] {
            assert!(
                matches!(
                    crate::error::Error::from(err),
                    crate::error::Error::Storage(_)
                ),
                "a lost connection is a 503"
            );
        }
        for err in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("role".into()),
        ] {
            assert!(matches!(
                crate::error::Error::from(err),
                crate::error::Error::Database(_)
            ));
        }
    }
}
