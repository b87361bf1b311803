//! Storage: the only module that speaks SQL. Moving to PostgreSQL means
//! changing this module and nothing above it.

pub mod keys;
pub mod todos;
pub mod users;

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    SqlitePool,
};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    #[error("could not migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Where the database is: a URL as configured, or a file path.
pub enum Location {
    Url(String),
    File(std::path::PathBuf),
}

/// SQLite lets many readers and one writer work at once in WAL mode. Writes go
/// through a one-connection pool, so they queue in the application instead of
/// failing with SQLITE_BUSY; reads get a pool of their own, sized to the cores.
#[derive(Clone)]
pub struct Db {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) the database and brings its schema up to date.
    pub async fn open(location: &Location, readers: u32) -> Result<Db, DbError> {
        let options = match location {
            Location::Url(url) => SqliteConnectOptions::from_str(url)?,
            // A path is not pasted into a URL: `?` or `%` in it would be parsed.
            Location::File(path) => SqliteConnectOptions::new().filename(path),
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable in WAL mode except for the last transactions
        // before a power loss; it saves an fsync per commit.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Db { reader, writer })
    }

    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        // `SELECT 1` would succeed without touching the file; this reads it.
        sqlx::query("SELECT 1 FROM users LIMIT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// The current time as stored: UTC, to the millisecond, so what a client reads
/// back equals what it was told at creation.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// True when the error is a UNIQUE constraint failing. SQLite does not name
/// the constraint, so callers use it only where one unique column can clash.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}
