//! Writes are stored or refused, never acknowledged and lost: a full database
//! answers 503 and logs why, and the write-ahead log stays small. Both are
//! about SQLite's file; what PostgreSQL's errors mean is tested in
//! `postgres.rs`.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tracing_subscriber::fmt::MakeWriter;
use uuid::Uuid;

use latchkey::db::Backend;

use crate::helpers::{
    assert_problem, on_sql, skipped_unless, spawn_app, spawn_app_with, TestApp, TestUser,
};

/// Collects what the server logs on this test's thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Whether a write answered as it must on a full database: a success whose
/// change is checked by the caller, or a 503 problem with `Retry-After`.
async fn stored_or_refused(resp: reqwest::Response) -> Option<Value> {
    if resp.status().is_success() {
        let body = resp.text().await.unwrap();
        return Some(serde_json::from_str(&body).unwrap_or(Value::Null));
    }
    assert!(resp.headers().contains_key("retry-after"), "{resp:?}");
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    None
}

/// How many rows of `table` have the id of `created`, a 201 body.
async fn count(app: &TestApp, table: &str, created: &Value) -> i64 {
    let id = Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
    let sql = format!("SELECT count(*) FROM {table} WHERE id = $1");
    on_sql!(app.sql, |pool| sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_one(pool)
        .await)
    .unwrap()
}

async fn stored_title(app: &TestApp, id: &str) -> String {
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT title FROM todos WHERE id = $1"
    )
    .bind(Uuid::parse_str(id).unwrap())
    .fetch_one(pool)
    .await)
    .unwrap()
}

/// A title that takes room, so that rows soon need pages the file may not add.
fn long_title(i: usize) -> String {
    format!("{i} {}", "x".repeat(490))
}

#[tokio::test]
async fn a_full_database_refuses_every_kind_of_write_with_a_503_and_acknowledges_only_what_it_stored(
) {
    if skipped_unless(
        Backend::Sqlite,
        "the full disk is SQLite's max_page_count; PostgreSQL's disk_full (53100) is classified in postgres.rs",
    ) {
        return;
    }
    // Arrange: an admin, a user with a key and a todo, another user to disable.
    let logs = Logs::default();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    // Forty registrations from one address.
    let app = spawn_app_with(|c| c.limits.registrations_per_hour = 1000).await;
    let admin = app.admin().await.token;
    let user = TestUser::generate().register(&app).await;
    let token = user.login(&app).await;
    let key = app.create_key(&token, json!({ "name": "kept" })).await;
    let todo = app.create_todo(&token, "first").await;
    let todo_id = todo["id"].as_str().unwrap().to_owned();
    let target = TestUser::generate().register(&app).await;
    app.server_db.stop_growing().await.unwrap();

    // Act and assert: every kind of write, many times, until the file is full.
    let mut refused = [0; 4];
    for i in 0..40 {
        let name: String = long_title(i).chars().take(100).collect();
        let resp = app
            .create_key_response(&token, json!({ "name": name }))
            .await;
        match stored_or_refused(resp).await {
            Some(created) => assert_eq!(count(&app, "api_keys", &created).await, 1, "key {i}"),
            None => refused[0] += 1,
        }

        let resp = app
            .post(&token, "/todos", json!({ "title": long_title(i) }))
            .await;
        match stored_or_refused(resp).await {
            Some(created) => assert_eq!(count(&app, "todos", &created).await, 1, "todo {i}"),
            None => refused[1] += 1,
        }

        // An update: what is stored is what was answered, or what was there.
        let before = stored_title(&app, &todo_id).await;
        let resp = app
            .patch(
                &token,
                &format!("/todos/{todo_id}"),
                json!({ "title": long_title(1000 + i) }),
            )
            .await;
        let expected = match stored_or_refused(resp).await {
            Some(updated) => updated["title"].as_str().unwrap().to_owned(),
            None => {
                refused[2] += 1;
                before
            }
        };
        assert_eq!(stored_title(&app, &todo_id).await, expected, "update {i}");
    }
    for i in 0..40 {
        let email = format!("full-{i}-{}@example.com", Uuid::now_v7().simple());
        let stored = stored_or_refused(app.register(&email, "correct horse battery").await).await;
        let found: i64 = on_sql!(app.sql, |pool| sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE email = $1"
        )
        .bind(&email)
        .fetch_one(pool)
        .await)
        .unwrap();
        assert_eq!(found, i64::from(stored.is_some()), "registration {i}");
        if stored.is_none() {
            refused[3] += 1;
            break;
        }
    }

    // An admin's disable, and revocation and deletion, on the full file.
    let resp = app
        .patch(
            &admin,
            &format!("/admin/users/{}", target.id),
            json!({ "disabled": true }),
        )
        .await;
    let disabled: bool = on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT disabled FROM users WHERE id = $1"
    )
    .bind(target.id)
    .fetch_one(pool)
    .await)
    .unwrap();
    let login = app.login_response(&target.email, &target.password).await;
    match stored_or_refused(resp).await {
        Some(_) => {
            assert!(disabled, "a 200 for the disable means it is stored");
            assert_eq!(login.status(), StatusCode::BAD_REQUEST);
        }
        None => {
            assert!(!disabled);
            assert_eq!(login.status(), StatusCode::OK);
        }
    }
    let resp = app.delete(&token, &format!("/keys/{}", key.id)).await;
    let revoked: i64 = on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE id = $1 AND revoked_at IS NOT NULL"
    )
    .bind(Uuid::parse_str(&key.id).unwrap())
    .fetch_one(pool)
    .await)
    .unwrap();
    assert_eq!(revoked, i64::from(stored_or_refused(resp).await.is_some()));
    let resp = app.delete(&token, &format!("/todos/{todo_id}")).await;
    let deleted = stored_or_refused(resp).await.is_some();
    assert_eq!(count(&app, "todos", &todo).await, i64::from(!deleted));

    // Every kind of insert was refused once the file was full, and the server
    // said why in its log.
    let [keys, todos, _updates, registrations] = refused;
    assert!(
        keys > 0 && todos > 0 && registrations > 0,
        "refused: {refused:?}"
    );
    let logged = logs.text();
    assert!(logged.contains("request failed"), "{logged}");
    assert!(logged.contains("database or disk is full"), "{logged}");
}

#[tokio::test]
async fn the_write_ahead_log_is_checkpointed_under_an_insert_only_load() {
    if skipped_unless(Backend::Sqlite, "the write-ahead log is SQLite's file") {
        return;
    }
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act: enough inserts to write the log far past SQLite's checkpoint size.
    for i in 0..1500 {
        let resp = app
            .post(&token, "/todos", json!({ "title": format!("todo {i}") }))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }

    // Assert: the rows moved into the database file and the log stayed small.
    let wal = std::fs::metadata(app.db_path().with_extension("db-wal")).map_or(0, |m| m.len());
    let db = std::fs::metadata(app.db_path()).unwrap().len();
    assert!(wal < 8 * 1024 * 1024, "the write-ahead log is {wal} bytes");
    assert!(
        db > 64 * 1024,
        "the database file is {db} bytes: nothing was checkpointed"
    );
}
