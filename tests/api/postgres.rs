//! PostgreSQL: that a run asked to use it does, what its errors mean to a
//! client, and the last-admin guard across two instances. Each test returns
//! at once on SQLite, saying why.

use std::time::{Duration, Instant};

use latchkey::{db::Backend, error::Error};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::{
    assert_problem, on_sql, postgres_server, skipped_unless, spawn_app, spawn_app_on,
    spawn_app_with, test_backend, titles, PgDatabase, TestApp, TestDatabase, TestUser,
    TEST_DATABASE_URL,
};

/// Set to 1 (as CI does), the run fails unless it is on PostgreSQL, so a
/// missing or empty database URL cannot quietly run everything on SQLite.
const REQUIRE_POSTGRES: &str = "LATCHKEY_REQUIRE_POSTGRES";

#[tokio::test]
async fn the_server_runs_on_the_backend_the_run_asks_for() {
    // Arrange
    let required = std::env::var(REQUIRE_POSTGRES).is_ok_and(|v| v == "1");
    if required {
        assert!(
            postgres_server().is_some(),
            "{REQUIRE_POSTGRES}=1 but {TEST_DATABASE_URL} is not set: the suite would run on SQLite"
        );
    }

    // Act
    let app = spawn_app().await;

    // Assert
    assert_eq!(app.server_db.backend(), test_backend());
    if required {
        assert_eq!(app.server_db.backend(), Backend::Postgres);
    }
}

#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    if skipped_unless(Backend::Postgres, "TLS is PostgreSQL's") {
        return;
    }
    // Arrange: a server that offers TLS (Debian's does, with its own
    // certificate).
    let mut conn = PgConnection::connect(&postgres_server().unwrap())
        .await
        .unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if ssl != "on" {
        eprintln!("skipped: this PostgreSQL server does not offer TLS");
        return;
    }

    // Act
    let app = spawn_app_with(|c| {
        let mut url = reqwest::Url::parse(c.database_url.as_deref().unwrap()).unwrap();
        url.query_pairs_mut().append_pair("sslmode", "require");
        c.database_url = Some(url.into());
    })
    .await;
    TestUser::generate().register(&app).await;

    // Assert: every connection the server's pools hold is encrypted.
    let (connections, encrypted): (i64, Option<bool>) = on_sql!(app.sql, |pool| {
        sqlx::query_as(
        "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = current_database() AND a.application_name = 'latchkey'"
    )
    .fetch_one(pool)
    .await
    })
    .unwrap();
    assert!(connections > 0);
    assert_eq!(encrypted, Some(true));
}

// ---- errors ----

fn is_storage(err: sqlx::Error) -> bool {
    matches!(Error::from(err), Error::Storage(_))
}

#[tokio::test]
async fn server_errors_that_may_pass_are_unavailability_and_others_are_not() {
    if skipped_unless(Backend::Postgres, "these are PostgreSQL's SQLSTATEs") {
        return;
    }
    // Arrange
    let server = postgres_server().unwrap();
    let mut conn = PgConnection::connect(&server).await.unwrap();
    let raise = |code: &str| {
        format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$")
    };

    // Act and assert: errors as the server reports them, from its own code.
    for code in [
        "08006", "53100", "53200", "53300", "57P01", "57P02", "57P03", "40001", "40P01", "25006",
    ] {
        let err = conn.execute(raise(code).as_str()).await.unwrap_err();
        assert!(is_storage(err), "{code} is a 503");
    }
    for code in ["23505", "23503", "42P01", "22P02"] {
        let err = conn.execute(raise(code).as_str()).await.unwrap_err();
        assert!(!is_storage(err), "{code} is not a 503");
    }
}

#[tokio::test]
async fn a_write_to_a_read_only_server_and_a_terminated_connection_are_unavailability() {
    if skipped_unless(Backend::Postgres, "these are PostgreSQL's errors") {
        return;
    }
    // Arrange
    let db = PgDatabase::create(&postgres_server().unwrap()).await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let mut killer = PgConnection::connect(&db.url).await.unwrap();
    conn.execute("CREATE TABLE t (v INT); SET default_transaction_read_only = on")
        .await
        .unwrap();

    // Act
    let read_only = conn.execute("INSERT INTO t VALUES (1)").await.unwrap_err();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1, 5000)")
        .bind(pid)
        .execute(&mut killer)
        .await
        .unwrap();
    let terminated = conn.execute("SELECT 1").await.unwrap_err();

    // Assert
    assert!(is_storage(read_only));
    assert!(is_storage(terminated));
}

/// The PostgreSQL database `app` runs on.
fn database_name(app: &TestApp) -> &str {
    match &app.database {
        TestDatabase::Postgres(db) => &db.name,
        TestDatabase::Sqlite(_) => unreachable!("an app on PostgreSQL"),
    }
}

/// Runs `sql` on the server as its administrator, outside the app's database.
async fn on_server(sql: &str) {
    let mut admin = PgConnection::connect(&postgres_server().unwrap())
        .await
        .unwrap();
    admin.execute(sql).await.unwrap();
    let _ = admin.close().await;
}

/// Makes new connections to the app's database start read-only (as on a
/// standby, or a primary whose disk filled) or writable again, and ends the
/// current ones, which the app's pools then replace.
async fn set_read_only(app: &TestApp, read_only: bool) {
    let name = database_name(app);
    // Committed before the connections end: one that the app opens again
    // while they are being ended must already see the new setting.
    on_server(&format!(
        r#"ALTER DATABASE "{name}" SET default_transaction_read_only = {read_only}"#
    ))
    .await;
    on_server(&format!(
        r#"SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
           WHERE datname = '{name}' AND pid <> pg_backend_pid()"#
    ))
    .await;
}

#[tokio::test]
async fn a_read_only_database_refuses_writes_with_a_503_and_they_resume_without_a_restart() {
    if skipped_unless(Backend::Postgres, "read-only mode is PostgreSQL's") {
        return;
    }
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    app.create_todo(&token, "before").await;
    set_read_only(&app, true).await;

    // Act
    let refused = app
        .post(&token, "/todos", json!({ "title": "refused" }))
        .await;
    let read = app.get(&token, "/todos").await;
    set_read_only(&app, false).await;
    let resumed = app
        .post(&token, "/todos", json!({ "title": "resumed" }))
        .await;

    // Assert
    assert!(refused.headers().contains_key("retry-after"), "{refused:?}");
    assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(read.status(), StatusCode::OK, "reads still work");
    assert_eq!(resumed.status(), StatusCode::CREATED);
    let page: Value = app.get(&token, "/todos").await.json().await.unwrap();
    assert_eq!(titles(&page), ["before", "resumed"]);
}

// ---- two instances ----

/// How many of the database's connections wait for a lock.
async fn waiting_for_locks(app: &TestApp) -> i64 {
    // A fresh statement each time: pg_stat_activity is a snapshot per
    // transaction.
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    .fetch_one(pool)
    .await)
    .unwrap()
}

#[tokio::test]
async fn two_instances_demoting_the_last_two_admins_at_once_leave_one_admin() {
    if skipped_unless(
        Backend::Postgres,
        "on SQLite the one writer connection runs one guarded update at a time; \
         the interleaving forced here is of PostgreSQL's row locks",
    ) {
        return;
    }
    // Arrange: two servers on one database, and the only two admins, each
    // logged in at one of them.
    let first = spawn_app().await;
    let second = spawn_app_on(&first, |_| {}).await;
    let a = first.admin().await;
    let b = second.admin().await;
    TestUser::generate().register(&first).await;
    // The test holds the active admins' rows, so both updates must wait at
    // the same point, whichever arrives first.
    let mut locker = PgConnection::connect(&first.database.url()).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    tx.execute("SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")
        .await
        .unwrap();

    // Act: each admin demotes the other, through a different server.
    let demote = |app: &TestApp, token: &str, target: uuid::Uuid| {
        app.request(
            reqwest::Method::PATCH,
            &format!("/admin/users/{target}"),
            Some(token),
        )
        .json(&json!({ "role": "user" }))
        .send()
    };
    let by_a = tokio::spawn(demote(&first, &a.token, b.id));
    let by_b = tokio::spawn(demote(&second, &b.token, a.id));
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting_for_locks(&first).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the two updates never both waited for the admins' rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.commit().await.unwrap();
    let by_a = by_a.await.unwrap().unwrap();
    let by_b = by_b.await.unwrap().unwrap();

    // Assert: one demotion went through, the other met the guard.
    let mut statuses = [by_a.status(), by_b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let admins: i64 = on_sql!(first.sql, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled"
    )
    .fetch_one(pool)
    .await)
    .unwrap();
    assert_eq!(admins, 1);
}
