//! The per-account caps on active keys and on todos: past them, `409`
//! problem+json naming the limit, and two creations racing at the cap never
//! both succeed, on either backend and across instances.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use latchkey::db::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_problem, on_sql, skipped_unless, spawn_app_with, StallingProxy, TestApp, ISSUER,
};

async fn active_keys(app: &TestApp) -> i64 {
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
    )
    .fetch_one(pool)
    .await)
    .unwrap()
}

async fn todo_count(app: &TestApp) -> i64 {
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM todos"
    )
    .fetch_one(pool)
    .await)
    .unwrap()
}

/// Asserts the `409` of a cap, naming its flag and value.
async fn assert_at_cap(resp: reqwest::Response, flag: &str, value: u32) -> Value {
    let problem = assert_problem(resp, StatusCode::CONFLICT).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("{flag} {value}")), "{problem}");
    problem
}

// ---- keys ----

#[tokio::test]
async fn a_key_past_the_cap_is_a_409_naming_the_limit_and_revoking_one_frees_a_slot() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.max_keys_per_user = 2).await;
    let token = app.user_token().await;
    let first = app.create_key(&token, json!({ "name": "a" })).await;
    app.create_key(&token, json!({ "name": "b" })).await;

    // Act
    let over = app
        .create_key_response(&token, json!({ "name": "c" }))
        .await;
    app.delete(&token, &format!("/keys/{}", first.id)).await;
    let freed = app
        .create_key_response(&token, json!({ "name": "c" }))
        .await;

    // Assert
    assert_at_cap(over, "--max-keys-per-user", 2).await;
    assert_eq!(freed.status(), StatusCode::CREATED);
    assert_eq!(active_keys(&app).await, 2);
}

#[tokio::test]
async fn an_expired_key_frees_its_slot_and_another_account_has_its_own_cap() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.max_keys_per_user = 1).await;
    let alice = app.user_token().await;
    let bob = app.user_token().await;
    let key = app.create_key(&alice, json!({ "name": "a" })).await;
    let over = app
        .create_key_response(&alice, json!({ "name": "b" }))
        .await;
    assert_at_cap(over, "--max-keys-per-user", 1).await;

    // Act
    let bobs = app.create_key_response(&bob, json!({ "name": "b" })).await;
    app.execute(
        "UPDATE api_keys SET expires_at = created_at WHERE id = $1",
        Uuid::parse_str(&key.id).unwrap(),
    )
    .await;
    let after_expiry = app
        .create_key_response(&alice, json!({ "name": "b" }))
        .await;

    // Assert
    assert_eq!(bobs.status(), StatusCode::CREATED);
    assert_eq!(after_expiry.status(), StatusCode::CREATED);
}

/// Racing creations for the last slot: exactly one was created, and every
/// other was refused at the cap.
async fn assert_one_took_the_slot(answers: Vec<reqwest::Response>, flag: &str, limit: u32) {
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    for resp in answers {
        if resp.status() != StatusCode::CREATED {
            assert_at_cap(resp, flag, limit).await;
        }
    }
}

#[tokio::test]
async fn keys_created_at_once_at_the_cap_on_two_instances_never_exceed_it() {
    // Arrange: one slot left, and requests racing for it at two instances
    // on one database (on SQLite, two processes' worth of connections to one
    // file), sharing a keyring so a token verifies at both.
    let one = spawn_app_with(|c| {
        c.issuer = Some(ISSUER.into());
        c.limits.max_keys_per_user = 3;
    })
    .await;
    let two = one.another_instance().await;
    let token = one.user_token().await;
    for name in ["a", "b"] {
        one.create_key(&token, json!({ "name": name })).await;
    }

    // Act
    let racing = (0..24).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        app.create_key_response(&token, json!({ "name": format!("race {i}") }))
    });
    let answers = join_all(racing).await;

    // Assert
    assert_one_took_the_slot(answers, "--max-keys-per-user", 3).await;
    assert_eq!(active_keys(&one).await, 3);
}

// ---- todos ----

#[tokio::test]
async fn a_todo_past_the_cap_is_a_409_naming_the_limit_and_deleting_one_frees_a_slot() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.max_todos_per_user = 2).await;
    let token = app.user_token().await;
    let other = app.user_token().await;
    let first = app.create_todo(&token, "one").await;
    app.create_todo(&token, "two").await;

    // Act
    let over = app
        .post(&token, "/todos", json!({ "title": "three" }))
        .await;
    let others = app.post(&other, "/todos", json!({ "title": "mine" })).await;
    let deleted = app
        .delete(&token, &format!("/todos/{}", first["id"].as_str().unwrap()))
        .await;
    let freed = app
        .post(&token, "/todos", json!({ "title": "three" }))
        .await;

    // Assert
    assert_at_cap(over, "--max-todos-per-user", 2).await;
    assert_eq!(others.status(), StatusCode::CREATED);
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(freed.status(), StatusCode::CREATED);
    assert_eq!(todo_count(&app).await, 3);
}

#[tokio::test]
async fn todos_created_at_once_at_the_cap_on_two_instances_never_exceed_it() {
    // Arrange
    let one = spawn_app_with(|c| {
        c.issuer = Some(ISSUER.into());
        c.limits.max_todos_per_user = 3;
    })
    .await;
    let two = one.another_instance().await;
    let token = one.user_token().await;
    for title in ["a", "b"] {
        one.create_todo(&token, title).await;
    }

    // Act
    let racing = (0..24).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        app.post(&token, "/todos", json!({ "title": format!("race {i}") }))
    });
    let answers = join_all(racing).await;

    // Assert
    assert_one_took_the_slot(answers, "--max-todos-per-user", 3).await;
    assert_eq!(todo_count(&one).await, 3);
}

#[tokio::test]
async fn a_creation_whose_instance_vanished_mid_transaction_blocks_the_account_only_briefly() {
    if skipped_unless(
        Backend::Postgres,
        "the account's row is locked on PostgreSQL only",
    ) {
        return;
    }
    // Arrange: a second instance whose connections pass through a proxy the
    // test can stall, and a key of the account to revoke meanwhile.
    let first = spawn_app_with(|c| c.issuer = Some(ISSUER.into())).await;
    let proxy = StallingProxy::start(&first.database.url()).await;
    let proxied = proxy.url(&first.database.url());
    let second = first
        .another_instance_with(|c| c.database_url = Some(proxied))
        .await;
    let token = first.user_token().await;
    let key = first.create_key(&token, json!({ "name": "k" })).await;
    let stalled_title = format!("stalled {}", Uuid::now_v7());

    // Act: the insert's own message goes silent after the account's row was
    // locked, so the database holds the lock for a client that is gone.
    proxy.stall_on(stalled_title.as_bytes());
    let revoke_path = format!("/keys/{}", key.id);
    let (stalled, (revoked, revoke_took)) = tokio::join!(
        second.post(&token, "/todos", json!({ "title": stalled_title })),
        async {
            // Meanwhile, once the row is locked and well before the
            // abandoned transaction is ended.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let started = Instant::now();
            let resp = first.delete(&token, &revoke_path).await;
            (resp, started.elapsed())
        }
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let created = loop {
        let resp = first
            .post(&token, "/todos", json!({ "title": "after" }))
            .await;
        if resp.status() == StatusCode::CREATED || Instant::now() > deadline {
            break resp;
        }
        assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    };

    // Assert: the stalled creation failed without storing anything; the
    // lock never stopped a revocation (its foreign key check shares the
    // row), and the account creates again once the database ended the
    // abandoned transaction.
    assert_problem(stalled, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert!(revoke_took < Duration::from_secs(2), "{revoke_took:?}");
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "the lock was released"
    );
    assert_eq!(todo_count(&first).await, 1);
}
