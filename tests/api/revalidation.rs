//! Tokens are checked statelessly, but administration and key creation look at
//! the account as it is now: a token that outlives a demotion or a disabling
//! must not undo it. The revocation feed normally refuses such a token at
//! once; these tests change the account behind the feed's back (as an older
//! instance would during a rolling upgrade) to show the second line holds.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, field_errors, spawn_app, www_authenticate, TestUser};

#[tokio::test]
async fn a_demoted_admin_s_still_valid_token_cannot_administer_or_mint_admin_keys() {
    // Arrange
    let app = spawn_app().await;
    let ada = app.admin().await;
    app.execute("UPDATE users SET role = 'user' WHERE id = $1", ada.id)
        .await;

    // Act
    let promote_back = app
        .patch(
            &ada.token,
            &format!("/admin/users/{}", ada.id),
            json!({ "role": "admin" }),
        )
        .await;
    let admin_key = app
        .create_key_response(
            &ada.token,
            json!({ "name": "backdoor", "scopes": ["admin"] }),
        )
        .await;

    // Assert
    assert_eq!(promote_back.status(), StatusCode::FORBIDDEN);
    let challenge = www_authenticate(&promote_back).unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert_problem(promote_back, StatusCode::FORBIDDEN).await;
    let problem = assert_problem(admin_key, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["scopes"]);
}

#[tokio::test]
async fn a_disabled_user_s_still_valid_token_cannot_create_keys() {
    // Arrange
    let app = spawn_app().await;
    let bob = TestUser::generate().register(&app).await;
    let bob_token = bob.login(&app).await;
    app.execute("UPDATE users SET disabled = TRUE WHERE id = $1", bob.id)
        .await;

    // Act
    let resp = app
        .create_key_response(&bob_token, json!({ "name": "after" }))
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::FORBIDDEN).await;
    assert!(problem["detail"].as_str().unwrap().contains("disabled"));
}

#[tokio::test]
async fn an_http2_body_of_unknown_length_is_held_to_the_size_limit() {
    // Arrange
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let big = format!(
        r#"{{"email":"h2@example.com","password":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let stream = futures_stream(big.into_bytes());

    // Act
    let resp = client
        .post(app.url("/users"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
}

/// A body reqwest cannot know the length of, sent in 8 KiB pieces.
fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect();
    futures_util::stream::iter(chunks)
}
