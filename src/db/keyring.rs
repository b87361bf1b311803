//! The `signing_keyring` table, on PostgreSQL only: one row holding the
//! sealed keyring every instance on the database shares (SQLite's keyring is
//! a file in the data directory). Here the keyring is opaque bytes, read
//! whole and replaced whole under the row's lock; what they hold is the
//! keyring module's business.

use sqlx::{PgConnection, PgPool};

use super::{audit, Db, Pools};
use crate::domain::audit::Event;

/// What a change of the keyring writes: the sealed keyring, the events that
/// record the change (written in its transaction), and what the caller
/// learns of it.
pub struct Written<T> {
    pub sealed: Vec<u8>,
    pub events: Vec<Event>,
    pub outcome: T,
}

/// The sealed keyring, or `None` while no instance has written one.
pub async fn read(db: &Db) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row: Option<(Option<Vec<u8>>,)> =
        sqlx::query_as("SELECT sealed FROM signing_keyring WHERE id")
            .fetch_optional(postgres(db)?)
            .await?;
    Ok(row.and_then(|(sealed,)| sealed))
}

/// Replaces the sealed keyring with what `change` makes of the stored one
/// (`None`: none yet), holding the row's lock from the read to the commit: a
/// writer that comes second waits, then changes what the first wrote. If
/// `change` fails, nothing is written.
pub async fn update<T, E>(
    db: &Db,
    change: impl FnOnce(Option<&[u8]>) -> Result<Written<T>, E>,
) -> Result<T, E>
where
    E: From<sqlx::Error>,
{
    let mut tx = postgres(db)?.begin().await?;
    let (outcome, events) = update_in(&mut tx, change).await?;
    audit::commit(tx, &events).await?;
    Ok(outcome)
}

/// [`update`] in a transaction of the caller's, which holds the row's lock
/// from here to its end and decides whether the keyring and its events are
/// written: with other writes of its own, it commits or rolls back the
/// keyring with them. Tells the events written, for the caller to log once
/// it commits.
pub(super) async fn update_in<T, E>(
    tx: &mut PgConnection,
    change: impl FnOnce(Option<&[u8]>) -> Result<Written<T>, E>,
) -> Result<(T, Vec<Event>), E>
where
    E: From<sqlx::Error>,
{
    // The migration made the row; this puts it back should someone have
    // deleted it, so that there is always a row to lock.
    sqlx::query("INSERT INTO signing_keyring (id) VALUES (TRUE) ON CONFLICT (id) DO NOTHING")
        .execute(&mut *tx)
        .await?;
    let (stored,): (Option<Vec<u8>>,) =
        sqlx::query_as("SELECT sealed FROM signing_keyring WHERE id FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let written = change(stored.as_deref())?;
    sqlx::query("UPDATE signing_keyring SET sealed = $1, updated_at = $2 WHERE id")
        .bind(written.sealed)
        .bind(super::now())
        .execute(&mut *tx)
        .await?;
    for event in &written.events {
        audit::record(&mut *tx, event).await?;
    }
    Ok((written.outcome, written.events))
}

fn postgres(db: &Db) -> Result<&PgPool, sqlx::Error> {
    match &db.pools {
        Pools::Postgres(pool) => Ok(pool),
        Pools::Sqlite(_) => Err(sqlx::Error::Configuration(
            "only a PostgreSQL database keeps the signing keyring: with SQLite it is the data \
             directory's signing-keys.json"
                .into(),
        )),
    }
}
