//! The `users` table.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use uuid::Uuid;

use super::{audit, Backend, Db};
use crate::domain::{
    audit::Event,
    revocation::{Change, ChangeKind, Millis},
    scopes::Role,
    users::Email,
};

#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// How a role column decodes; a value the CHECK constraint would refuse is a
/// decoding error, never a default.
impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(role: String) -> Result<Role, String> {
        Role::parse(&role).ok_or_else(|| format!("unknown role {role:?}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Stores a new account, with the event that records it, in one
/// transaction.
pub async fn insert(
    db: &Db,
    id: Uuid,
    email: &Email,
    password_hash: &str,
    role: Role,
    event: &Event,
) -> Result<User, InsertUserError> {
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query_as(
            "INSERT INTO users (id, email, password_hash, role, disabled, created_at)
             VALUES ($1, $2, $3, $4, FALSE, $5)
             RETURNING id, email, role, disabled, created_at",
        )
        .bind(id)
        .bind(email.as_str())
        .bind(password_hash)
        .bind(role.as_str())
        .bind(super::now())
        .fetch_all(&mut *tx)
        .await?;
        audit::record(&mut *tx, event).await?;
        audit::commit(tx, std::slice::from_ref(event)).await?;
        Ok(rows)
    })
    .and_then(super::one)
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            InsertUserError::EmailTaken
        } else {
            e.into()
        }
    })
}

/// The accounts whose stored email holds a character beyond ASCII, in
/// creation order: the only ones that folding an address can change, since
/// ASCII was lower-cased already and neither NFC nor IDNA changes it.
pub async fn with_non_ascii_email(db: &Db) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let sql = match db.backend() {
        // SQLite's length() counts characters, and a blob's bytes.
        Backend::Sqlite => {
            "SELECT id, email FROM users
             WHERE length(email) <> length(CAST(email AS BLOB)) ORDER BY id"
        }
        Backend::Postgres => {
            "SELECT id, email FROM users WHERE length(email) <> octet_length(email) ORDER BY id"
        }
    };
    on_backend!(db.writer(), |pool| sqlx::query_as(sql)
        .fetch_all(pool)
        .await)
}

/// Replaces an account's email if it is still `old`. `Ok(false)` if it is
/// not (another instance changed it first).
pub async fn replace_email(
    db: &Db,
    id: Uuid,
    old: &str,
    new: &Email,
) -> Result<bool, InsertUserError> {
    on_backend!(db.writer(), |pool| sqlx::query(
        "UPDATE users SET email = $3 WHERE id = $1 AND email = $2"
    )
    .bind(id)
    .bind(old)
    .bind(new.as_str())
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            InsertUserError::EmailTaken
        } else {
            e.into()
        }
    })
}

/// What a password login needs to know about an account.
#[derive(FromRow)]
pub struct Login {
    #[sqlx(flatten)]
    pub user: User,
    pub password_hash: String,
}

pub async fn find_login(db: &Db, email: &Email) -> Result<Option<Login>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT id, email, role, disabled, created_at, password_hash FROM users WHERE email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await)
}

/// An account's record and password hash by its id, for checking the
/// password of an account that holds a token.
pub async fn find_login_by_id(db: &Db, id: Uuid) -> Result<Option<Login>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT id, email, role, disabled, created_at, password_hash FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await)
}

/// Stores an account's new password hash and signs the account out, with
/// `event`, in one transaction: a new password never lands with the old
/// tokens still good, nor a sign-out without the new password. `None` (and
/// nothing changed) if the account no longer exists or was disabled
/// meanwhile.
pub async fn set_password(
    db: &Db,
    id: Uuid,
    password_hash: &str,
    lifetime: Millis,
    event: &Event,
) -> Result<Option<Change>, sqlx::Error> {
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        let updated =
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1 AND NOT disabled")
                .bind(id)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let change = super::changes::record(&mut *tx, id, ChangeKind::SignedOut, lifetime).await?;
        audit::record(&mut *tx, event).await?;
        audit::commit(tx, std::slice::from_ref(event)).await?;
        Ok(Some(change))
    })
}

const GET: &str = "SELECT id, email, role, disabled, created_at FROM users WHERE id = $1";

pub async fn get(db: &Db, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(GET)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// One page of users in creation order, fetching one row more than asked so
/// the caller knows whether another page follows.
pub async fn list(db: &Db, after: Option<Uuid>, limit: u32) -> Result<Vec<User>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT id, email, role, disabled, created_at FROM users
         WHERE ($1 IS NULL OR id > $1)
         ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await)
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateUserError {
    #[error("no such user")]
    NotFound,
    #[error("this is the last active admin")]
    LastAdmin,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The change, made only if it leaves an active admin: the target stays or
/// becomes one, or it is none now, or another active admin exists.
const UPDATE_ACCESS: &str = "
    UPDATE users SET role = coalesce($2, role), disabled = coalesce($3, disabled)
    WHERE id = $1 AND (
        (coalesce($2, role) = 'admin' AND NOT coalesce($3, disabled))
        OR NOT (role = 'admin' AND NOT disabled)
        OR EXISTS (SELECT 1 FROM users other
                   WHERE other.id <> $1 AND other.role = 'admin' AND NOT other.disabled)
    )
    RETURNING id, email, role, disabled, created_at";

/// PostgreSQL only: the rows the guard's EXISTS reads, locked in one order so
/// that two guarded updates queue instead of deadlocking.
const LOCK_ACTIVE_ADMINS: &str =
    "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE";

/// PostgreSQL only: the account's row, locked, so that what is counted of the
/// account's rows before an insert (keys, todos under their caps) stays true
/// until the insert commits; bind [`lock_user_idle_limit`] as `$2`.
///
/// `FOR NO KEY UPDATE` makes two such inserts queue, yet does not block the
/// `FOR KEY SHARE` lock that every foreign key check on the account takes
/// (another todo or key of it, a revocation of its keys). A transaction whose
/// client vanishes (a partition) would keep the lock until TCP noticed, hours
/// later, and stop the account's creations at every instance; so the server
/// ends the transaction once it idles longer than the client would have
/// waited for it.
pub(super) const LOCK_USER: &str =
    "SELECT set_config('idle_in_transaction_session_timeout', $2, true)
     FROM users WHERE id = $1 FOR NO KEY UPDATE";

/// How long a transaction holding [`LOCK_USER`] may idle: a little past the
/// operation's own deadline, after which its client has given up on it.
pub(super) fn lock_user_idle_limit() -> String {
    let limit = super::postgres::OPERATION_TIMEOUT + std::time::Duration::from_secs(1);
    format!("{}ms", limit.as_millis())
}

/// PostgreSQL only: the account's row as it is before the change, locked, so
/// that what the change is recorded as (a disable, an enable) is what it did
/// even when two updates of one account race.
const GET_FOR_UPDATE: &str =
    "SELECT id, email, role, disabled, created_at FROM users WHERE id = $1 FOR UPDATE";

/// Changes a user's role or disabled flag, refusing to leave no active admin,
/// and records in the same transaction what the change ends (a new role or a
/// disable cuts off the account's tokens, an enable lifts the disable) and
/// the event `event` makes of the account before and after, if any.
///
/// The guard lives in the statement itself. On SQLite that is enough: the one
/// writer connection runs one statement at a time, so two admins demoting
/// each other cannot both pass it. On PostgreSQL, under READ COMMITTED, two
/// such updates (from two instances) could each see the other admin still
/// active; so the transaction first locks every active admin row, and the
/// second waits for the first to commit, then sees its change.
pub async fn update_access(
    db: &Db,
    id: Uuid,
    role: Option<Role>,
    disabled: Option<bool>,
    lifetime: Millis,
    event: impl FnOnce(&User, &User) -> Option<Event>,
) -> Result<(User, Vec<Change>), UpdateUserError> {
    let role = role.map(Role::as_str);
    let postgres = db.backend() == Backend::Postgres;
    on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        if postgres {
            sqlx::query(LOCK_ACTIVE_ADMINS).execute(&mut *tx).await?;
        }
        let before: Option<User> = sqlx::query_as(if postgres { GET_FOR_UPDATE } else { GET })
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = before else {
            return Err(UpdateUserError::NotFound);
        };
        let updated = sqlx::query_as(UPDATE_ACCESS)
            .bind(id)
            .bind(role)
            .bind(disabled)
            .fetch_all(&mut *tx)
            .await?;
        let Some(after): Option<User> = super::at_most_one(updated) else {
            return Err(UpdateUserError::LastAdmin);
        };
        let mut changes = Vec::new();
        for kind in access_changes(&before, &after) {
            changes.push(super::changes::record(&mut *tx, id, kind, lifetime).await?);
        }
        let events = Vec::from_iter(event(&before, &after));
        for event in &events {
            audit::record(&mut *tx, event).await?;
        }
        audit::commit(tx, &events).await?;
        Ok((after, changes))
    })
}

/// What an update ends or restores: a disable, an enable, a new role.
fn access_changes(before: &User, after: &User) -> Vec<ChangeKind> {
    let mut kinds = Vec::new();
    match (before.disabled, after.disabled) {
        (false, true) => kinds.push(ChangeKind::Disabled),
        (true, false) => kinds.push(ChangeKind::Enabled),
        _ => {}
    }
    if before.role != after.role {
        kinds.push(ChangeKind::SignedOut);
    }
    kinds
}
