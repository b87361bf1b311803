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
