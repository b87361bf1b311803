//! The `audit_events` table. A change's event is written on the connection
//! of the change's own transaction ([`record`]), so there is never one
//! without the other; tallied failures are written behind the requests
//! ([`write_tallies`]). Each stored event is also one log line, target
//! `audit`, once it is stored ([`logged`]).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Transaction, Type};
use uuid::Uuid;

use super::Db;
use crate::domain::audit::{Action, Actor, Event, Filter, Target, TargetKind};

const COLUMNS: &str = "id, at, action, actor_user_id, actor_client_id, actor_address, \
                       target_type, target_id, target_user_id, details";

const INSERT: &str = "INSERT INTO audit_events (id, at, action, actor_user_id, actor_client_id,
                                                actor_address, target_type, target_id,
                                                target_user_id, details)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Writes `event` on `conn`, the connection of the transaction that makes
/// the change it records, on either backend.
pub(super) async fn record<'c, E, DB>(conn: E, event: &Event) -> Result<(), sqlx::Error>
where
    E: Executor<'c, Database = DB>,
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    bind(sqlx::query(INSERT), event).execute(conn).await?;
    Ok(())
}

/// Binds an event's columns, in [`COLUMNS`] order.
fn bind<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    event: &'q Event,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    Uuid: Encode<'q, DB> + Type<DB>,
    Option<Uuid>: Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let target = event.target.as_ref();
    query
        .bind(event.id)
        .bind(event.at)
        .bind(event.action.name())
        .bind(event.actor.user_id)
        .bind(event.actor.client_id.as_deref())
        .bind(event.actor.address.as_deref())
        .bind(target.map(|t| t.kind.name()))
        .bind(target.map(|t| t.id.as_str()))
        .bind(target.and_then(|t| t.account))
        .bind(event.details.to_string())
}

/// Commits the transaction that wrote `events`, then logs them: a line for
/// each event stored, none for one rolled back.
pub(super) async fn commit<DB: Database>(
    tx: Transaction<'_, DB>,
    events: &[Event],
) -> Result<(), sqlx::Error> {
    tx.commit().await?;
    events.iter().for_each(logged);
    Ok(())
}

/// Writes events that record a change already made and made durable
/// elsewhere (a keyring file replaced), in one transaction.
pub async fn record_all(db: &Db, events: &[Event]) -> Result<(), sqlx::Error> {
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        for event in events {
            record(&mut *tx, event).await?;
        }
        commit(tx, events).await
    })
}

/// Writes tallies of failures as they stand, each replacing what an earlier
/// write of the same tally (its id) stored, in one transaction. Not logged
/// here: a tally is logged once, when it is final.
pub async fn write_tallies(db: &Db, events: &[Event]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{INSERT}
         ON CONFLICT (id) DO UPDATE SET
             target_type = excluded.target_type, target_id = excluded.target_id,
             target_user_id = excluded.target_user_id, details = excluded.details"
    );
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        for event in events {
            bind(sqlx::query(&sql), event).execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// An event as one structured log line, target `audit`.
pub fn logged(event: &Event) {
    let target = event.target.as_ref();
    tracing::info!(
        target: "audit",
        id = %event.id,
        at = %event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        action = event.action.name(),
        actor.user_id = event.actor.user_id.map(tracing::field::display),
        actor.client_id = event.actor.client_id.as_deref(),
        actor.address = event.actor.address.as_deref(),
        "target.type" = target.map(|t| t.kind.name()),
        target.id = target.map(|t| t.id.as_str()),
        details = %event.details,
        "recorded"
    );
}

#[derive(FromRow)]
pub(super) struct Row {
    pub(super) id: Uuid,
    pub(super) at: DateTime<Utc>,
    pub(super) action: String,
    pub(super) actor_user_id: Option<Uuid>,
    pub(super) actor_client_id: Option<String>,
    pub(super) actor_address: Option<String>,
    pub(super) target_type: Option<String>,
    pub(super) target_id: Option<String>,
    pub(super) target_user_id: Option<Uuid>,
    pub(super) details: String,
}

impl TryFrom<Row> for Event {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Event, sqlx::Error> {
        let undecodable = |column: &str, what: String| sqlx::Error::ColumnDecode {
            index: column.into(),
            source: what.into(),
        };
        let action = Action::parse(&row.action)
            .ok_or_else(|| undecodable("action", format!("unknown action {:?}", row.action)))?;
        let target = match (row.target_type, row.target_id) {
            (Some(kind), Some(id)) => Some(Target {
                kind: TargetKind::parse(&kind).ok_or_else(|| {
                    undecodable("target_type", format!("unknown target type {kind:?}"))
                })?,
                id,
                account: row.target_user_id,
            }),
            _ => None,
        };
        let details: Value = serde_json::from_str(&row.details)
            .map_err(|e| undecodable("details", e.to_string()))?;
        Ok(Event {
            id: row.id,
            at: row.at,
            action,
            actor: Actor {
                user_id: row.actor_user_id,
                client_id: row.actor_client_id,
                address: row.actor_address,
            },
            target,
            details,
        })
    }
}

/// One page of the events `filter` selects, newest first, before the event
/// `before` (from the newest without one), with one row more than asked so
/// the caller knows whether another page follows. Only the conditions in
/// use are in the statement, so each can use its index.
pub async fn page(
    db: &Db,
    filter: &Filter,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Event>, sqlx::Error> {
    let rows: Vec<Row> = on_backend!(db.reader(), |pool| {
        let mut query =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1"));
        if let Some(action) = filter.action {
            query.push(" AND action = ").push_bind(action.name());
        }
        if let Some(user) = filter.user_id {
            query
                .push(" AND (actor_user_id = ")
                .push_bind(user)
                .push(" OR target_user_id = ")
                .push_bind(user)
                .push(")");
        }
        if let Some(since) = filter.since {
            query.push(" AND at >= ").push_bind(since);
        }
        if let Some(before) = before {
            query.push(" AND id < ").push_bind(before);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        query.build_query_as().fetch_all(pool).await
    })?;
    rows.into_iter().map(Event::try_from).collect()
}

/// Rows deleted per statement when pruning: a long backlog is deleted in
/// steps, so the writer is never held long.
const PRUNE_STEP: i64 = 1000;

/// Deletes the events from before `before`; tells how many.
pub async fn prune(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let mut pruned = 0;
    loop {
        let deleted = on_backend!(db.writer(), |pool| sqlx::query(
            "DELETE FROM audit_events WHERE id IN
                 (SELECT id FROM audit_events WHERE at < $1 LIMIT $2)"
        )
        .bind(before)
        .bind(PRUNE_STEP)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        pruned += deleted;
        if deleted < PRUNE_STEP as u64 {
            return Ok(pruned);
        }
    }
}
