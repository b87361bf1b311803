//! The `todos` table. Every statement is scoped to the owner: another user's
//! todo is indistinguishable from one that doesn't exist.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use super::{Backend, Db};

#[derive(Debug, Clone, FromRow)]
pub struct Todo {
    pub id: Uuid,
    pub title: String,
    pub completed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Stores a todo unless its owner already holds `max` of them, counted and
/// inserted as keys are (see `keys::insert`): two creations at the limit
/// cannot both pass, on either backend. `None` when at the limit.
pub async fn insert(
    db: &Db,
    owner: Uuid,
    title: &str,
    completed: bool,
    max: u32,
) -> Result<Option<Todo>, sqlx::Error> {
    let now = super::now();
    let postgres = db.backend() == Backend::Postgres;
    let rows: Vec<Todo> = on_backend!(db.writer(), |pool| {
        let mut tx = pool.begin().await?;
        if postgres {
            sqlx::query(super::users::LOCK_USER)
                .bind(owner)
                .bind(super::users::lock_user_idle_limit())
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query_as(
            "INSERT INTO todos (id, user_id, title, completed, created_at, updated_at)
             SELECT $1, $2, $3, $4, $5, $5
             WHERE (SELECT count(*) FROM todos WHERE user_id = $2) < $6
             RETURNING id, title, completed, created_at, updated_at",
        )
        .bind(Uuid::now_v7())
        .bind(owner)
        .bind(title)
        .bind(completed)
        .bind(now)
        .bind(i64::from(max))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    })?;
    Ok(super::at_most_one(rows))
}

/// One page in creation order, with one row more than asked so the caller
/// knows whether another page follows.
pub async fn list(
    db: &Db,
    owner: Uuid,
    completed: Option<bool>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Todo>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT id, title, completed, created_at, updated_at FROM todos
         WHERE user_id = $1 AND ($2 IS NULL OR completed = $2) AND ($3 IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
    )
    .bind(owner)
    .bind(completed)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await)
}

pub async fn get(db: &Db, owner: Uuid, id: Uuid) -> Result<Option<Todo>, sqlx::Error> {
    on_backend!(db.reader(), |pool| sqlx::query_as(
        "SELECT id, title, completed, created_at, updated_at FROM todos
         WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(pool)
    .await)
}

/// A partial update in one statement: absent fields keep their value.
pub async fn update(
    db: &Db,
    owner: Uuid,
    id: Uuid,
    title: Option<&str>,
    completed: Option<bool>,
) -> Result<Option<Todo>, sqlx::Error> {
    on_backend!(db.writer(), |pool| sqlx::query_as(
        "UPDATE todos SET title = coalesce($3, title), completed = coalesce($4, completed),
                          updated_at = $5
         WHERE id = $1 AND user_id = $2
         RETURNING id, title, completed, created_at, updated_at",
    )
    .bind(id)
    .bind(owner)
    .bind(title)
    .bind(completed)
    .bind(super::now())
    .fetch_all(pool)
    .await)
    .map(super::at_most_one)
}

pub async fn delete(db: &Db, owner: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    on_backend!(db.writer(), |pool| sqlx::query(
        "DELETE FROM todos WHERE id = $1 AND user_id = $2"
    )
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() > 0))
}
