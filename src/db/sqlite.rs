//! The SQLite backend: how the file is opened, how its pools are split, and
//! what its errors mean.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Connection, SqliteConnection, SqlitePool,
};

use super::DbError;
use crate::owner_only;

/// The write-ahead log is truncated back to this size after a checkpoint, so a
/// burst of writes does not leave a large file behind.
const WAL_SIZE_LIMIT: &str = "8388608";

/// Each connection's page cache: 512 KiB (a negative size counts KiB), not
/// SQLite's 2 MiB. Exchanges repeat from the key cache, not from pages, and
/// a write clears every reader's cache anyway; what a read misses, the
/// operating system's file cache has.
const PAGE_CACHE_KIB: &str = "-512";

/// SQLite lets many readers and one writer work at once in WAL mode. Writes go
/// through a one-connection pool, so they queue in the application instead of
/// failing with SQLITE_BUSY; reads get a pool of their own, sized to the cores.
#[derive(Clone)]
pub(super) struct Pools {
    pub(super) reader: SqlitePool,
    pub(super) writer: SqlitePool,
    /// The pages the file may hold, once a test has stopped it growing
    /// (0: no limit); every writing connection opened is held to it.
    page_limit: Arc<AtomicI64>,
}

pub(super) async fn open(options: SqliteConnectOptions, readers: u32) -> Result<Pools, DbError> {
    make_private(options.get_filename()).map_err(DbError::Permissions)?;
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable in WAL mode except for the last transactions
        // before a power loss; it saves an fsync per commit.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        .pragma("journal_size_limit", WAL_SIZE_LIMIT)
        .pragma("cache_size", PAGE_CACHE_KIB);
    let page_limit = Arc::new(AtomicI64::new(0));
    let limit = Arc::clone(&page_limit);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            let pages = limit.load(Ordering::Relaxed);
            Box::pin(async move { limit_pages(conn, pages).await })
        })
        .after_release(|conn, _| Box::pin(out_of_transaction(conn)))
        .connect_with(options.clone())
        .await?;
    super::migrator(sqlx::migrate!("./migrations/sqlite"))
        .run(&writer)
        .await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(readers.max(1))
        .connect_with(options.read_only(true))
        .await?;
    Ok(Pools {
        reader,
        writer,
        page_limit,
    })
}

/// The database and its companion files are the owner's alone, whatever the
/// directory's mode. SQLite gives the `-wal` and `-shm` files it creates the
/// mode of the database file, so creating that file first (owner-only) covers
/// them; files from an earlier run are narrowed in place.
fn make_private(file: &Path) -> std::io::Result<()> {
    let name = file.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return Ok(());
    }
    // Opened only when it is missing: closing a descriptor of a file drops
    // every POSIX lock this process holds on it, those of SQLite's own
    // connections to it included (another handle on the same database in
    // this process), and SQLite would then take its locks as free.
    if !file.exists() {
        owner_only::open_or_create(file)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        owner_only::restrict(Path::new(&path))?;
    }
    Ok(())
}

/// Whether a connection coming back to the pool is out of any transaction,
/// as sqlx counts them; one that is not is closed, and the pool opens a new
/// one.
///
/// On a full disk or an I/O error SQLite may roll a whole transaction back
/// by itself. The `ROLLBACK` sqlx then sends fails, so sqlx still counts the
/// transaction as open, and would begin the next one with a `SAVEPOINT`:
/// that starts a real transaction which its `ROLLBACK TO` leaves open, and
/// every write after it on this connection would be answered, yet never
/// committed.
async fn out_of_transaction(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    // The rollback of a dropped transaction is queued; a ping waits for it.
    conn.ping().await?;
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("SQLite ended a failed transaction by itself; reopening its connection");
    }
    Ok(clean)
}

/// See [`Db::stop_growing`](super::Db::stop_growing).
pub(super) async fn stop_growing(pools: &Pools) -> Result<(), sqlx::Error> {
    let mut writer = pools.writer.acquire().await?;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut *writer)
        .await?;
    pools.page_limit.store(pages, Ordering::Relaxed);
    limit_pages(&mut writer, pages).await
}

async fn limit_pages(conn: &mut SqliteConnection, pages: i64) -> Result<(), sqlx::Error> {
    if pages > 0 {
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Whether an SQLite result code means the database cannot take the request
/// now (a full disk, an I/O error, a lock held too long, a file it cannot
/// open), as opposed to a bug or a constraint.
pub(super) fn is_unavailable(code: &str) -> bool {
    // SQLite's primary result codes (the low byte of an extended one).
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const NOMEM: i64 = 7;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    code.parse::<i64>().is_ok_and(|code| {
        matches!(
            code & 0xff,
            BUSY | LOCKED | NOMEM | READONLY | IOERR | FULL | CANTOPEN
        )
    })
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use super::super::is_unavailable;

    /// A commit that fails after a `RETURNING` statement has produced its row:
    /// a deferred foreign key is only checked at commit.
    async fn connection_with_a_deferred_check() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY,
                 parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    }

    async fn children(conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM child")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    const INSERT: &str = "INSERT INTO child (id, parent) VALUES (1, 99) RETURNING id";

    #[tokio::test]
    async fn a_returning_statement_stepped_to_its_end_reports_its_failed_commit() {
        let mut conn = connection_with_a_deferred_check().await;
        let rows: Result<Vec<(i64,)>, _> = sqlx::query_as(INSERT).fetch_all(&mut conn).await;
        assert!(rows.is_err(), "the failed commit is reported");
        assert_eq!(children(&mut conn).await, 0);
    }

    /// Why `db/` never fetches one row of a write: sqlx stops at the first row
    /// and drops the error of the reset that commits. If this starts failing,
    /// sqlx reports it now, and `fetch_one` would be safe again.
    #[tokio::test]
    async fn fetch_one_of_a_returning_statement_hides_its_failed_commit() {
        let mut conn = connection_with_a_deferred_check().await;
        let row: Result<(i64,), _> = sqlx::query_as(INSERT).fetch_one(&mut conn).await;
        assert!(
            row.is_ok(),
            "sqlx answers the row although nothing is stored"
        );
        assert_eq!(children(&mut conn).await, 0);
    }

    #[tokio::test]
    async fn a_full_file_is_unavailability_and_a_constraint_is_not() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (v TEXT UNIQUE); INSERT INTO t VALUES ('a')")
            .execute(&mut conn)
            .await
            .unwrap();
        let duplicate = sqlx::query("INSERT INTO t VALUES ('a')")
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(!is_unavailable(&duplicate), "{duplicate}");

        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let full = sqlx::query("INSERT INTO t SELECT hex(randomblob(4000))")
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(is_unavailable(&full), "{full}");
    }
}
