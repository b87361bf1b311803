//! The `users` table.

use chrono::{DateTime, Utc};
use sqlx::{sqlite::SqliteRow, FromRow, Row, SqliteExecutor};

use uuid::Uuid;

use super::Db;
use crate::domain::{
    revocation::{Change, ChangeKind, Millis},
    scopes::Role,
    users::Email,
};

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl FromRow<'_, SqliteRow> for User {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(User {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            role: role_column(row)?,
            disabled: row.try_get("disabled")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

pub(super) fn role_column(row: &SqliteRow) -> Result<Role, sqlx::Error> {
    let role: &str = row.try_get("role")?;
    Role::parse(role).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "role".into(),
        source: format!("unknown role {role:?}").into(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub async fn insert(
    db: &Db,
    email: &Email,
    password_hash: &str,
    role: Role,
) -> Result<User, InsertUserError> {
    sqlx::query_as(
        "INSERT INTO users (id, email, password_hash, role, disabled, created_at)
         VALUES (?, ?, ?, ?, FALSE, ?)
         RETURNING id, email, role, disabled, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(email.as_str())
    .bind(password_hash)
    .bind(role.as_str())
    .bind(super::now())
    .fetch_all(db.writer())
    .await
    .and_then(super::one)
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            InsertUserError::EmailTaken
        } else {
            e.into()
        }
    })
}

/// What a password login needs to know about an account.
pub struct Login {
    pub user: User,
    pub password_hash: String,
}

pub async fn find_login(db: &Db, email: &Email) -> Result<Option<Login>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, email, role, disabled, created_at, password_hash FROM users WHERE email = ?",
    )
    .bind(email.as_str())
    .fetch_optional(db.reader())
    .await?;
    row.map(|row| {
        Ok(Login {
            user: User::from_row(&row)?,
            password_hash: row.try_get("password_hash")?,
        })
    })
    .transpose()
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    get_on(db.reader(), id).await
}

async fn get_on(db: impl SqliteExecutor<'_>, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, email, role, disabled, created_at FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// One page of users in creation order, fetching one row more than asked so
/// the caller knows whether another page follows.
pub async fn list(db: &Db, after: Option<Uuid>, limit: u32) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, email, role, disabled, created_at FROM users
         WHERE (?1 IS NULL OR id > ?1)
         ORDER BY id LIMIT ?2",
    )
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(db.reader())
    .await
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

/// Changes a user's role or disabled flag, refusing to leave no active admin,
/// and records what the change ends in the same transaction: a new role or a
/// disable cuts off the account's tokens, an enable lifts the disable. The
/// guard lives in the statement itself, so two admins demoting each other at
/// the same moment cannot both succeed.
pub async fn update_access(
    db: &Db,
    id: Uuid,
    role: Option<Role>,
    disabled: Option<bool>,
    lifetime: Millis,
) -> Result<(User, Vec<Change>), UpdateUserError> {
    let mut tx = db.writer().begin().await?;
    let Some(before) = get_on(&mut *tx, id).await? else {
        return Err(UpdateUserError::NotFound);
    };
    let updated = sqlx::query_as(
        "UPDATE users SET role = coalesce($2, role), disabled = coalesce($3, disabled)
         WHERE id = $1 AND (
             (coalesce($2, role) = 'admin' AND NOT coalesce($3, disabled))
             OR NOT (role = 'admin' AND NOT disabled)
             OR EXISTS (SELECT 1 FROM users other
                        WHERE other.id <> $1 AND other.role = 'admin' AND NOT other.disabled)
         )
         RETURNING id, email, role, disabled, created_at",
    )
    .bind(id)
    .bind(role.map(Role::as_str))
    .bind(disabled)
    .fetch_all(&mut *tx)
    .await?;
    let Some(after): Option<User> = super::at_most_one(updated) else {
        return Err(UpdateUserError::LastAdmin);
    };
    let mut changes = Vec::new();
    for kind in access_changes(&before, &after) {
        changes.push(super::changes::record(&mut tx, id, kind, lifetime).await?);
    }
    tx.commit().await?;
    Ok((after, changes))
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
