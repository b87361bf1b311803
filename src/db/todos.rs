//! The `todos` table. Every statement is scoped to the owner: another user's
//! todo is indistinguishable from one that doesn't exist.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use super::Db;

#[derive(Debug, Clone, FromRow)]
pub struct Todo {
    pub id: Uuid,
    pub title: String,
    pub completed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn insert(
    db: &Db,
    owner: Uuid,
    title: &str,
    completed: bool,
) -> Result<Todo, sqlx::Error> {
    let now = super::now();
    on_backend!(db.writer(), |pool| sqlx::query_as(
        "INSERT INTO todos (id, user_id, title, completed, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         RETURNING id, title, completed, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .bind(owner)
    .bind(title)
    .bind(completed)
    .bind(now)
    .fetch_all(pool)
    .await)
    .and_then(super::one)
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
