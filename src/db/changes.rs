//! The `access_changes` table: the revocation feed. A change is written in
//! the transaction of what it records (a key revoked, an account disabled),
//! so there is never one without the other.

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};
use uuid::Uuid;

use super::{audit, Db};
use crate::domain::{
    audit::Event,
    revocation::{Change, ChangeKind, Millis},
};

/// Records a change at the current time, lasting `lifetime` from it, on the
/// connection of the transaction that makes the change, on either backend.
pub(super) async fn record<'c, E, DB>(
    conn: E,
    user_id: Uuid,
    kind: ChangeKind,
    lifetime: Millis,
) -> Result<Change, sqlx::Error>
where
    E: Executor<'c, Database = DB>,
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    let at = super::now_ms();
    let until = at.saturating_add(lifetime);
    let seq: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO access_changes (kind, user_id, subject, at_ms, until_ms)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING seq",
    )
    .bind(kind.name())
    .bind(user_id)
    .bind(kind.subject())
    .bind(at)
    .bind(until)
    .fetch_all(conn)
    .await?;
    Ok(Change {
        seq: super::one(seq)?.0,
        user_id,
        kind,
        at,
        until,
    })
}

/// Every token of the account issued so far stops working; `event` records
/// it in the same transaction.
pub async fn sign_out(
    db: &Db,
    user_id: Uuid,
    lifetime: Millis,
    event: &Event,
) -> Result<Change, sqlx::Error> {
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        let change = record(&mut *tx, user_id, ChangeKind::SignedOut, lifetime).await?;
        audit::record(&mut *tx, event).await?;
        audit::commit(tx, std::slice::from_ref(event)).await?;
        Ok(change)
    })
}

/// Revokes one token. An account with `cap` single-token revocations still in
/// force is signed out instead, which covers this token and bounds what every
/// instance keeps in memory. `event` makes the event of what was recorded
/// (whether the whole account was signed out), written in the same
/// transaction.
pub async fn revoke_token(
    db: &Db,
    user_id: Uuid,
    jti: Uuid,
    lifetime: Millis,
    cap: i64,
    event: impl FnOnce(bool) -> Event,
) -> Result<Change, sqlx::Error> {
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        let (in_force,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM access_changes
             WHERE user_id = $1 AND kind = 'token_revoked' AND until_ms >= $2",
        )
        .bind(user_id)
        .bind(super::now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let kind = if in_force >= cap {
            ChangeKind::SignedOut
        } else {
            ChangeKind::TokenRevoked { jti }
        };
        let change = record(&mut *tx, user_id, kind, lifetime).await?;
        let event = event(kind == ChangeKind::SignedOut);
        audit::record(&mut *tx, &event).await?;
        audit::commit(tx, &[event]).await?;
        Ok(change)
    })
}

/// A row of the feed as stored (also what `copy` moves).
#[derive(FromRow)]
pub(super) struct Row {
    pub(super) seq: i64,
    pub(super) kind: String,
    pub(super) user_id: Uuid,
    pub(super) subject: Option<Uuid>,
    pub(super) at_ms: i64,
    pub(super) until_ms: i64,
}

/// The changes still in force at `now`, in feed order.
pub async fn in_force(db: &Db, now: Millis) -> Result<Vec<Change>, sqlx::Error> {
    let rows: Vec<Row> = on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT seq, kind, user_id, subject, at_ms, until_ms FROM access_changes
         WHERE until_ms >= $1 ORDER BY seq",
    )
    .bind(now)
    .fetch_all(pool)
    .await)?;
    rows.into_iter()
        .map(|row| {
            let kind = ChangeKind::parse(&row.kind, row.subject).ok_or_else(|| {
                sqlx::Error::ColumnDecode {
                    index: "kind".into(),
                    source: format!("unknown change {:?}", row.kind).into(),
                }
            })?;
            Ok(Change {
                seq: row.seq,
                user_id: row.user_id,
                kind,
                at: row.at_ms,
                until: row.until_ms,
            })
        })
        .collect()
}

/// Deletes the changes that stopped mattering before `before`.
pub async fn prune(db: &Db, before: Millis) -> Result<u64, sqlx::Error> {
    on_backend!(db.writer(), |pool| sqlx::query(
        "DELETE FROM access_changes WHERE until_ms < $1"
    )
    .bind(before)
    .execute(pool)
    .await
    .map(|done| done.rows_affected()))
}
