//! The `api_keys` table.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use super::{audit, changes, Backend, Db};
use crate::domain::{
    audit::Event,
    keys::KeyHash,
    revocation::{Change, ChangeKind, Millis},
    scopes::{Role, Scopes, UnknownScope},
};

#[derive(Debug, Clone, FromRow)]
pub struct Key {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub hint: String,
    #[sqlx(try_from = "String")]
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str =
    "id, user_id, name, hint, scopes, created_at, expires_at, last_used_at, revoked_at";

/// How a scopes column decodes; an unknown scope is a decoding error.
impl TryFrom<String> for Scopes {
    type Error = UnknownScope;

    fn try_from(scopes: String) -> Result<Scopes, UnknownScope> {
        Scopes::parse(&scopes)
    }
}

pub struct NewKey<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: &'a str,
    pub hash: KeyHash,
    pub hint: &'a str,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What inserting a key did.
pub enum Inserted {
    Key(Key),
    /// The owner already holds `max_active` active keys: nothing was stored.
    AtLimit,
}

/// Stores a key, with `event`, unless its owner already holds `max_active`
/// active keys (not revoked, not expired). The count and the insert are one
/// statement: on SQLite a writing statement holds the write lock from its
/// first step, so two creations at the limit cannot both pass. On
/// PostgreSQL, under READ COMMITTED, both could count the same rows; so the
/// owner's row is locked first, and the second creation counts after the
/// first has committed.
pub async fn insert(
    db: &Db,
    key: NewKey<'_>,
    max_active: u32,
    event: &Event,
) -> Result<Inserted, sqlx::Error> {
    let sql = format!(
        "INSERT INTO api_keys (id, user_id, name, key_hash, hint, scopes, created_at, expires_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8
         WHERE (SELECT count(*) FROM api_keys
                WHERE user_id = $2 AND revoked_at IS NULL
                  AND (expires_at IS NULL OR expires_at > $7)) < $9
         RETURNING {KEY_COLUMNS}"
    );
    let postgres = db.backend() == Backend::Postgres;
    let now = super::now();
    let rows: Vec<Key> = on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        if postgres {
            sqlx::query(super::users::LOCK_USER)
                .bind(key.user_id)
                .bind(super::users::lock_user_idle_limit())
                .execute(&mut *tx)
                .await?;
        }
        let rows: Vec<Key> = sqlx::query_as(&sql)
            .bind(key.id)
            .bind(key.user_id)
            .bind(key.name)
            .bind(&key.hash.0[..])
            .bind(key.hint)
            .bind(key.scopes.to_string())
            .bind(now)
            .bind(key.expires_at)
            .bind(i64::from(max_active))
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
        } else {
            audit::record(&mut *tx, event).await?;
            audit::commit(tx, std::slice::from_ref(event)).await?;
        }
        Ok::<_, sqlx::Error>(rows)
    })?;
    Ok(match super::at_most_one(rows) {
        Some(key) => Inserted::Key(key),
        None => Inserted::AtLimit,
    })
}

/// One page of a user's keys, revoked and expired ones included, in creation
/// order, with one row more than asked so the caller knows whether another
/// page follows.
pub async fn list_for_user(
    db: &Db,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Key>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND ($2 IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    );
    on_backend!(db.reader(), |pool| sqlx::query_as(&sql)
        .bind(user_id)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await)
}

/// A key by id; with an owner, only if it belongs to them.
pub async fn get(db: &Db, id: Uuid, owner: Option<Uuid>) -> Result<Option<Key>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND ($2 IS NULL OR user_id = $2)"
    );
    on_backend!(db.reader(), |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(owner)
        .fetch_optional(pool)
        .await)
}

/// What revoking a key did.
pub enum Revoked {
    /// It is revoked now; the change ends its live tokens.
    Now(Change),
    /// It was revoked before: nothing changed.
    Already,
    /// There is no such key (or it isn't the owner's).
    NoSuchKey,
}

/// Marks a key revoked and records the change, and the event `event` makes
/// of the key's owner, in the same transaction. The first revocation time is
/// kept; revoking a revoked key changes nothing and records nothing.
pub async fn revoke(
    db: &Db,
    id: Uuid,
    owner: Option<Uuid>,
    lifetime: Millis,
    event: impl FnOnce(Uuid) -> Event,
) -> Result<Revoked, sqlx::Error> {
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        let revoked: Vec<(Uuid,)> = sqlx::query_as(
            "UPDATE api_keys SET revoked_at = $3
             WHERE id = $1 AND ($2 IS NULL OR user_id = $2) AND revoked_at IS NULL
             RETURNING user_id",
        )
        .bind(id)
        .bind(owner)
        .bind(super::now())
        .fetch_all(&mut *tx)
        .await?;
        let (outcome, events) = match super::at_most_one(revoked) {
            Some((user_id,)) => {
                let kind = ChangeKind::KeyRevoked { key_id: id };
                let change = changes::record(&mut *tx, user_id, kind, lifetime).await?;
                let event = event(user_id);
                audit::record(&mut *tx, &event).await?;
                (Revoked::Now(change), vec![event])
            }
            None => {
                let exists: Option<(Uuid,)> = sqlx::query_as(
                    "SELECT id FROM api_keys WHERE id = $1 AND ($2 IS NULL OR user_id = $2)",
                )
                .bind(id)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                let outcome = if exists.is_some() {
                    Revoked::Already
                } else {
                    Revoked::NoSuchKey
                };
                (outcome, Vec::new())
            }
        };
        audit::commit(tx, &events).await?;
        Ok(outcome)
    })
}

/// The key an API key's hash names, and its owner, if there is one.
pub async fn find_by_hash(db: &Db, hash: &KeyHash) -> Result<Option<(Uuid, Uuid)>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT id, user_id FROM api_keys WHERE key_hash = $1"
    )
    .bind(&hash.0[..])
    .fetch_optional(pool)
    .await)
}

/// Everything the token exchange needs about a key and its owner, in one
/// indexed read.
#[derive(Debug, Clone, FromRow)]
pub struct KeyOwner {
    #[sqlx(rename = "id")]
    pub key_id: Uuid,
    pub user_id: Uuid,
    #[sqlx(try_from = "String")]
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub disabled: bool,
}

pub async fn find_for_exchange(db: &Db, hash: &KeyHash) -> Result<Option<KeyOwner>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT k.id, k.user_id, k.scopes, k.expires_at, k.revoked_at IS NOT NULL AS revoked,
                u.role, u.disabled
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.key_hash = $1",
    )
    .bind(&hash.0[..])
    .fetch_optional(pool)
    .await)
}

/// Writes a batch of last-use times in one transaction. A time never moves
/// backwards, whatever order batches land in.
pub async fn record_last_used(db: &Db, uses: &[(Uuid, DateTime<Utc>)]) -> Result<(), sqlx::Error> {
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $2
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    })
}
