use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn health_and_ready_answer_200() {
    let app = spawn_app().await;

    let health = app.get_public("/health").await;
    let ready = app.get_public("/ready").await;

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn ready_is_a_503_problem_when_the_database_does_not_answer_but_health_stays_200() {
    // Arrange
    let app = spawn_app().await;
    app.server_db.close().await;

    // Act
    let ready = app.get_public("/ready").await;
    let health = app.get_public("/health").await;

    // Assert
    let problem = assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"].as_str().unwrap().contains("database"));
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn ready_answers_503_from_the_moment_shutdown_begins_while_requests_are_still_served() {
    // Arrange
    let mut app = crate::helpers::spawn_app_with(|c| {
        c.shutdown_delay = std::time::Duration::from_secs(2);
    })
    .await;
    let token = app.user_token().await;

    // Act
    app.begin_stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let ready = app.get_public("/ready").await;
    let me = app.get(&token, "/me").await;

    // Assert
    assert_eq!(ready.headers()["retry-after"], "5");
    let problem = assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("shutting down"));
    assert_eq!(me.status(), StatusCode::OK);
    app.stop().await;
}
