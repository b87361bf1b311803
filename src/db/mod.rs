//! Storage: the only module that speaks SQL. Callers hold a [`Db`] and call
//! the functions of `users`, `keys` and `todos`; which connection a statement
//! runs on, and on which backend, is decided here and below.
//!
//! A statement that writes and returns its row (`INSERT … RETURNING`,
//! `UPDATE … RETURNING`) is always fetched with `fetch_all`, never
//! `fetch_one` or `fetch_optional`: SQLite commits such a statement when it is
//! stepped to its end, and sqlx, stopping after the first row, drops the error
//! of that commit (a full disk would be answered as a success), and never
//! lets SQLite checkpoint its write-ahead log.

pub mod changes;
pub mod keys;
mod sqlite;
pub mod todos;
pub mod users;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::SqlitePool;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    #[error("could not migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not make the database files owner-only")]
    Permissions(#[source] std::io::Error),
}

/// Where the database is: a URL as configured, or a file path.
pub enum Location {
    Url(String),
    File(std::path::PathBuf),
}

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    pools: sqlite::Pools,
}

impl Db {
    /// Opens (creating if missing) the database and brings its schema up to date.
    pub async fn open(location: &Location, readers: u32) -> Result<Db, DbError> {
        Ok(Db {
            pools: sqlite::open(location, readers).await?,
        })
    }

    fn reader(&self) -> &SqlitePool {
        &self.pools.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.pools.writer
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        // `SELECT 1` would succeed without touching the file; this reads it.
        sqlx::query("SELECT 1 FROM users LIMIT 1")
            .execute(self.reader())
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pools.reader.close().await;
        self.pools.writer.close().await;
    }

    /// Stops the database file from growing, as a full disk would: writes
    /// that need a new page fail from now on. For tests of what a full disk
    /// does; SQLite's limit lasts as long as the writing connection.
    #[doc(hidden)]
    pub async fn stop_growing(&self) -> Result<(), sqlx::Error> {
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(self.writer())
            .await?;
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(self.writer())
            .await
            .map(|_| ())
    }
}

/// A storage error as the rest of the crate sees it: the database cannot take
/// the request now (full disk, I/O error, unreachable), so the same request
/// may succeed later, or something else went wrong.
impl From<sqlx::Error> for crate::error::Error {
    fn from(e: sqlx::Error) -> Self {
        if sqlite::is_unavailable(&e) {
            crate::error::Error::Storage(e)
        } else {
            crate::error::Error::Database(e)
        }
    }
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
