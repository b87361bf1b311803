use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_ready_answer_200() {
    let app = spawn_app().await;

    let health = app.client.get(app.url("/health")).send().await.unwrap();
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
}
