//! The revocation feed's notifications on PostgreSQL: sent for its changes
//! and nothing else, and a listener that loses its connection subscribes
//! again by itself. Each test returns at once on SQLite, saying why.

use std::time::{Duration, Instant};

use latchkey::db::{notifications::Heard, Backend};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    on_sql, refused_within, skipped_unless, spawn_app, spawn_app_with, TestApp, TestUser, ISSUER,
};

/// Long enough for a busy machine to deliver a notification that was sent.
const DELIVERY: Duration = Duration::from_secs(5);

/// The server process ids of the connections listening on `app`'s database.
async fn listeners(app: &TestApp) -> Vec<i32> {
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN %'"
    )
    .fetch_all(pool)
    .await)
    .unwrap()
}

/// Waits until `count` connections listen on `app`'s database, none of them
/// one of `old`.
async fn listening(app: &TestApp, count: usize, old: &[i32]) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let now = listeners(app).await;
        if now.len() == count && now.iter().all(|pid| !old.contains(pid)) {
            return now;
        }
        assert!(start.elapsed() < DELIVERY, "no new listener: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn last_used(app: &TestApp, key_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    on_sql!(app.sql, |pool| {
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE id = $1")
            .bind(key_id.parse::<uuid::Uuid>().unwrap())
            .fetch_one(pool)
            .await
    })
    .unwrap()
}

/// An instance that reads the window back only once an hour, so that what
/// it learns sooner came by notification.
fn deaf_to_all_but_notifications(config: &mut latchkey::config::Config) {
    config.issuer = Some(ISSUER.into());
    config.revocation_reload_every = Duration::from_secs(3600);
}

#[tokio::test]
async fn a_revocation_notifies_listeners_and_other_writes_do_not() {
    if skipped_unless(Backend::Postgres, "notifications are PostgreSQL's") {
        return;
    }
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let login = user.login(&app).await;
    let key = app.create_key(&login, json!({ "name": "ci" })).await;
    let mut heard = app.db.listen().await.expect("PostgreSQL").unwrap();

    // Act: writes that are not the feed's: a todo, and a key use, which the
    // server writes behind within a second or so.
    app.exchange(&key).await;
    app.create_todo(&login, "not news").await;
    let start = Instant::now();
    while last_used(&app, &key.id).await.is_none() {
        assert!(start.elapsed() < DELIVERY, "the key use was never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quiet = tokio::time::timeout(Duration::from_secs(1), heard.next()).await;
    app.delete(&login, &format!("/keys/{}", key.id)).await;
    let woken = tokio::time::timeout(DELIVERY, heard.next()).await;

    // Assert
    assert!(quiet.is_err(), "woken by a write that is not a revocation");
    assert_eq!(woken, Ok(Heard::Change));
}

#[tokio::test]
async fn instances_whose_listeners_are_cut_off_listen_again_and_miss_nothing() {
    if skipped_unless(Backend::Postgres, "notifications are PostgreSQL's") {
        return;
    }
    // Arrange: two instances, each listening, neither reloading on its own.
    let one = spawn_app_with(deaf_to_all_but_notifications).await;
    let two = one.another_instance().await;
    let old = listening(&one, 2, &[]).await;
    let user = TestUser::generate().register(&one).await;
    let login = user.login(&one).await;

    // Act: the server ends the listeners' connections, as a failover or an
    // idle-connection reaper would, and the account signs out at the other
    // instance meanwhile.
    on_sql!(one.sql, |pool| sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN %'"
    )
    .execute(pool)
    .await
    .map(|_| ()))
    .unwrap();
    let signed_out = two
        .request(Method::POST, "/me/sign-out", Some(&login))
        .send()
        .await
        .unwrap();
    listening(&one, 2, &old).await;

    // Assert
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    refused_within(&one, &login, DELIVERY).await;
}

#[tokio::test]
async fn a_notification_alone_brings_a_revocation_to_another_instance() {
    if skipped_unless(Backend::Postgres, "notifications are PostgreSQL's") {
        return;
    }
    // Arrange
    let one = spawn_app_with(deaf_to_all_but_notifications).await;
    let two = one.another_instance().await;
    listening(&one, 2, &[]).await;
    let user = TestUser::generate().register(&one).await;
    let login = user.login(&one).await;
    let key = one.create_key(&login, json!({ "name": "ci" })).await;
    let token = one.exchange(&key).await;
    assert_eq!(two.get(&token, "/me").await.status(), StatusCode::OK);

    // Act
    let revoked = one.delete(&login, &format!("/keys/{}", key.id)).await;

    // Assert
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    refused_within(&two, &token, DELIVERY).await;
}
