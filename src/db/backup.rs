//! `VACUUM INTO`: a consistent copy of an SQLite database, taken while
//! servers keep writing to it.

use std::{path::Path, time::Duration};

use sqlx::{sqlite::SqliteConnectOptions, ConnectOptions, Connection};

/// Copies the SQLite database in `source` into `into`, which must be missing
/// or empty, as of one moment: the copy runs in a read transaction, so it
/// holds every transaction committed before it began (those still in the
/// write-ahead log too) and none committed after, and writers are not held
/// up meanwhile. The source is opened read-only, unmigrated, and never
/// created. `into` must be an absolute path: SQLite could read a relative
/// one that starts with `file:` as a URI.
pub async fn vacuum_into(source: &Path, into: &Path) -> Result<(), sqlx::Error> {
    let into = into
        .to_str()
        .ok_or_else(|| sqlx::Error::Configuration("the backup's path is not valid UTF-8".into()))?;
    let mut conn = SqliteConnectOptions::new()
        .filename(source)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(into)
        .execute(&mut conn)
        .await
        .map(|_| ());
    let closed = conn.close().await;
    copied.and(closed)
}
