//! `POST /auth/token`: the OAuth 2.0 token endpoint, both grants and every
//! RFC 6749 §5.2 error it answers with.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_oauth_error, spawn_app, www_authenticate, TestApp, TestKey, TestUser, PASSWORD,
};

/// A new user's login token and a key of theirs with the default scopes.
async fn user_with_key(app: &TestApp) -> (String, TestKey) {
    let token = app.user_token().await;
    let key = app.create_key(&token, json!({ "name": "ci" })).await;
    (token, key)
}

/// Asserts a successful token response and returns its body.
async fn assert_issued(resp: Response, scope: &str) -> Value {
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 60);
    assert_eq!(body["scope"], scope);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    body
}

/// Asserts the issued token is accepted and returns `GET /me`.
async fn me(app: &TestApp, body: &Value) -> Value {
    let resp = app.get(body["access_token"].as_str().unwrap(), "/me").await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// Rewrites one character of the random part of a key, keeping its shape.
fn one_character_typo(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let i = 10;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

// ---- client_credentials: success ----

#[tokio::test]
async fn exchange_with_the_key_in_the_body_and_its_id_issues_a_bearer_token() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app.exchange_response(&key.id, &key.key).await;

    // Assert
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body = assert_issued(resp, "todos:read todos:write").await;
    let me = me(&app, &body).await;
    assert_eq!(me["client_id"], key.id);
    assert_eq!(me["scopes"], json!(["todos:read", "todos:write"]));
}

#[tokio::test]
async fn exchange_with_the_key_in_the_body_and_no_client_id_issues_a_token() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .send()
        .await;

    // Assert
    let body = assert_issued(resp, "todos:read todos:write").await;
    assert_eq!(me(&app, &body).await["client_id"], key.id);
}

#[tokio::test]
async fn exchange_by_http_basic_with_the_key_id_issues_a_token() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .basic(&key.id, &key.key)
        .grant("client_credentials")
        .send()
        .await;

    // Assert
    assert!(www_authenticate(&resp).is_none());
    let body = assert_issued(resp, "todos:read todos:write").await;
    assert_eq!(me(&app, &body).await["client_id"], key.id);
}

#[tokio::test]
async fn exchange_by_http_basic_with_an_empty_user_name_issues_a_token() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .basic("", &key.key)
        .grant("client_credentials")
        .send()
        .await;

    // Assert
    let body = assert_issued(resp, "todos:read todos:write").await;
    assert_eq!(me(&app, &body).await["client_id"], key.id);
}

#[tokio::test]
async fn exchange_accepts_a_json_body() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app.exchange_form(&key.id, &key.key).json().send().await;

    // Assert
    assert_issued(resp, "todos:read todos:write").await;
}

#[tokio::test]
async fn exchange_accepts_a_form_body_with_a_charset_parameter() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .send()
        .await;

    // Assert
    assert_issued(resp, "todos:read todos:write").await;
}

// ---- scope ----

#[tokio::test]
async fn exchange_narrows_the_grant_to_the_scope_asked_for() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .scope("todos:read")
        .send()
        .await;

    // Assert
    let body = assert_issued(resp, "todos:read").await;
    assert_eq!(me(&app, &body).await["scopes"], json!(["todos:read"]));
}

#[tokio::test]
async fn exchange_treats_an_empty_scope_as_none_asked_for() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .scope("")
        .send()
        .await;

    // Assert
    assert_issued(resp, "todos:read todos:write").await;
}

#[tokio::test]
async fn exchange_narrows_a_scope_beyond_the_key_to_what_the_key_holds() {
    // Arrange: what Postman's imported OAuth2 settings ask for.
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .scope("todos:read todos:write keys:manage admin")
        .send()
        .await;

    // Assert: RFC 6749 §3.3, the response names the narrower grant.
    assert_issued(resp, "todos:read todos:write").await;
}

#[tokio::test]
async fn exchange_refuses_a_scope_the_key_holds_none_of_with_invalid_scope() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .scope("keys:manage")
        .send()
        .await;

    // Assert
    let body = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("keys:manage"), "{description}");
}

#[tokio::test]
async fn exchange_rejects_an_unknown_scope_with_invalid_scope() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .scope("todos:read todos:delete")
        .send()
        .await;

    // Assert
    let body = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("todos:delete"), "{description}");
}

#[tokio::test]
async fn login_narrows_the_grant_to_the_scope_asked_for_and_to_the_role() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let narrowed = app
        .login_form(&user.email, &user.password)
        .scope("keys:manage")
        .send()
        .await;
    let beyond = app
        .login_form(&user.email, &user.password)
        .scope("todos:read admin")
        .send()
        .await;
    let outside = app
        .login_form(&user.email, &user.password)
        .scope("admin")
        .send()
        .await;

    // Assert
    let body = assert_issued(narrowed, "keys:manage").await;
    let me = me(&app, &body).await;
    assert_eq!(me["client_id"], "password");
    assert_eq!(me["role"], "user");
    assert_issued(beyond, "todos:read").await;
    assert_oauth_error(outside, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

#[tokio::test]
async fn login_grants_every_scope_of_the_role() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let resp = app.login_response(&user.email, &user.password).await;

    // Assert
    assert_issued(resp, "todos:read todos:write keys:manage").await;
}

// ---- invalid_client ----

#[tokio::test]
async fn exchange_rejects_a_client_id_that_is_not_the_key_s_with_invalid_client() {
    // Arrange
    let app = spawn_app().await;
    let (token, key) = user_with_key(&app).await;
    let other = app.create_key(&token, json!({ "name": "other" })).await;

    // Act
    let resp = app.exchange_response(&other.id, &key.key).await;

    // Assert
    assert!(www_authenticate(&resp).is_none());
    let body = assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("client_id"));
}

#[tokio::test]
async fn exchange_rejects_a_client_id_that_is_not_a_uuid_with_invalid_client() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app.exchange_response("my-app", &key.key).await;

    // Assert
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn invalid_client_by_http_basic_carries_a_basic_challenge() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;
    let wrong_id = uuid::Uuid::now_v7().to_string();

    // Act
    let resp = app
        .token_form()
        .basic(&wrong_id, &key.key)
        .grant("client_credentials")
        .send()
        .await;

    // Assert
    let challenge = www_authenticate(&resp).expect("a WWW-Authenticate header");
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert!(challenge.contains(r#"realm="latchkey""#), "{challenge}");
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn invalid_client_by_basic_from_a_page_script_carries_no_challenge() {
    // Arrange: what Swagger UI sends; a Basic challenge would make the browser
    // open its own login prompt instead of letting the page show the error.
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;
    let wrong_id = uuid::Uuid::now_v7().to_string();

    // Act
    let resp = app
        .token_form()
        .basic(&wrong_id, &key.key)
        .header("X-Requested-With", "XMLHttpRequest")
        .grant("client_credentials")
        .send()
        .await;

    // Assert
    assert!(www_authenticate(&resp).is_none());
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn invalid_client_in_the_body_carries_no_challenge() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret("lk_nope")
        .send()
        .await;

    // Assert
    assert!(www_authenticate(&resp).is_none());
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn exchange_without_any_client_secret_is_invalid_client() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.token_form().grant("client_credentials").send().await;

    // Assert
    assert!(www_authenticate(&resp).is_none());
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn exchange_rejects_malformed_keys_with_invalid_client() {
    // Arrange
    let app = spawn_app().await;
    let well_shaped = format!("lk_{}", "A".repeat(49));

    for secret in ["lk_nope", "not a key", "", well_shaped.as_str()] {
        // Act
        let resp = app
            .token_form()
            .grant("client_credentials")
            .secret(secret)
            .send()
            .await;

        // Assert
        let body = assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
        assert!(!body.to_string().contains(&well_shaped));
    }
}

#[tokio::test]
async fn exchange_rejects_a_one_character_typo_of_a_real_key_by_its_checksum() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;
    let typo = one_character_typo(&key.key);
    assert_ne!(typo, key.key);

    // Act
    let resp = app.exchange_response(&key.id, &typo).await;

    // Assert
    let body = assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("checksum"), "{description}");
    assert!(!description.contains(&typo));
}

#[tokio::test]
async fn exchange_rejects_a_revoked_key_with_invalid_client() {
    // Arrange
    let app = spawn_app().await;
    let (token, key) = user_with_key(&app).await;
    app.exchange(&key).await;
    let revoked = app.delete(&token, &format!("/keys/{}", key.id)).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    // Act
    let resp = app.exchange_response(&key.id, &key.key).await;

    // Assert
    let body = assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("revoked"));
}

#[tokio::test]
async fn exchange_rejects_an_expired_key_with_invalid_client() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let key = app
        .create_key(
            &token,
            json!({ "name": "short-lived", "expires_at": expires_at.to_rfc3339() }),
        )
        .await;
    app.exchange(&key).await;
    let until_expired = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(until_expired + Duration::from_millis(500)).await;

    // Act
    let resp = app.exchange_response(&key.id, &key.key).await;

    // Assert
    let body = assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn a_disabled_user_can_neither_exchange_a_key_nor_log_in() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let token = user.login(&app).await;
    let key = app.create_key(&token, json!({ "name": "ci" })).await;
    app.exchange(&key).await;
    let admin = app.admin().await.token;

    // Act
    let disabled = app
        .patch(
            &admin,
            &format!("/admin/users/{}", user.id),
            json!({ "disabled": true }),
        )
        .await;
    let exchange = app.exchange_response(&key.id, &key.key).await;
    let login = app.login_response(&user.email, &user.password).await;

    // Assert
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(disabled.json::<Value>().await.unwrap()["disabled"], true);
    let body = assert_oauth_error(exchange, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("disabled"));
    assert_oauth_error(login, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

/// What a client sees of an answer: its status, its headers but the date
/// and the request id (each answer's own), and its body's bytes.
async fn seen(resp: Response) -> (StatusCode, Vec<(String, Vec<u8>)>, Vec<u8>) {
    let status = resp.status();
    let mut headers: Vec<_> = resp
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_disabled_account_s_right_password_is_answered_exactly_as_a_wrong_one() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let admin = app.admin().await.token;
    let disabled = app
        .patch(
            &admin,
            &format!("/admin/users/{}", user.id),
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);

    // Act
    let right = app.login_response(&user.email, &user.password).await;
    let wrong = app
        .login_response(&user.email, "not the password at all")
        .await;

    // Assert
    let (right, wrong) = (seen(right).await, seen(wrong).await);
    assert_eq!(right.0, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&right.2).unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(body["error_description"], "the email or password is wrong");
    assert_eq!(right, wrong);
}

// ---- invalid_request and unsupported_grant_type ----

#[tokio::test]
async fn exchange_rejects_a_secret_sent_both_by_basic_and_in_the_body_with_invalid_request() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .basic(&key.id, &key.key)
        .grant("client_credentials")
        .secret(&key.key)
        .send()
        .await;

    // Assert
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn token_request_without_grant_type_is_invalid_request() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app.token_form().secret(&key.key).send().await;

    // Assert
    let body = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(!body.to_string().contains(&key.key));
}

#[tokio::test]
async fn token_request_with_an_empty_grant_type_is_invalid_request() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.token_form().grant("").send().await;

    // Assert
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn token_request_with_an_unknown_grant_type_is_unsupported_grant_type() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .token_form()
        .grant("authorization_code")
        .field("code", "abc")
        .send()
        .await;

    // Assert
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
}

#[tokio::test]
async fn token_request_with_a_text_plain_body_is_invalid_request() {
    // Arrange
    let app = spawn_app().await;
    let (_, key) = user_with_key(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("client_credentials")
        .secret(&key.key)
        .header("content-type", "text/plain")
        .send()
        .await;

    // Assert
    let body = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("application/x-www-form-urlencoded"),
        "{description}"
    );
}

#[tokio::test]
async fn a_json_token_request_with_a_number_or_a_boolean_where_a_string_belongs_is_invalid_request()
{
    // Arrange: a number was taken as its digits, as a password or a key.
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    for body in [
        json!({ "grant_type": "password", "username": user.email, "password": 12345678 }),
        json!({ "grant_type": "client_credentials", "client_secret": 42 }),
        json!({ "grant_type": true }),
        json!({ "grant_type": "password", "username": user.email, "password": user.password, "scope": 7 }),
    ] {
        // Act
        let resp = app
            .request(reqwest::Method::POST, "/auth/token", None)
            .json(&body)
            .send()
            .await
            .unwrap();

        // Assert
        let error = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains("as strings"),
            "{body}: {error}"
        );
    }
}

// ---- password grant ----// ---- password grant ----

#[tokio::test]
async fn login_with_a_wrong_password_or_an_unknown_email_is_the_same_invalid_grant() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let wrong_password = app.login_response(&user.email, "not the password").await;
    let unknown_email = app.login_response("nobody@example.com", PASSWORD).await;

    // Assert
    let wrong_password =
        assert_oauth_error(wrong_password, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let unknown_email =
        assert_oauth_error(unknown_email, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(
        wrong_password["error_description"],
        unknown_email["error_description"]
    );
    assert!(!wrong_password.to_string().contains("not the password"));
}

#[tokio::test]
async fn login_without_a_password_is_invalid_request() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let resp = app
        .token_form()
        .grant("password")
        .username(&user.email)
        .send()
        .await;

    // Assert
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn login_accepts_the_email_in_another_case() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let resp = app
        .login_response(&user.email.to_uppercase(), &user.password)
        .await;

    // Assert
    assert_issued(resp, "todos:read todos:write keys:manage").await;
}

// ---- last_used_at ----

#[tokio::test]
async fn exchange_records_last_used_at_within_a_few_seconds() {
    // Arrange
    let app = spawn_app().await;
    let (token, key) = user_with_key(&app).await;
    assert!(key.body["last_used_at"].is_null());
    let path = format!("/keys/{}", key.id);
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);

    // Act
    app.exchange(&key).await;

    // Assert
    let mut last_used_at = Value::Null;
    for _ in 0..30 {
        let resp = app.get(&token, &path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        last_used_at = resp.json::<Value>().await.unwrap()["last_used_at"].clone();
        if !last_used_at.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at: chrono::DateTime<chrono::Utc> = last_used_at
        .as_str()
        .expect("last_used_at is set within 3 s")
        .parse()
        .unwrap();
    assert!(at >= before, "{at}");
    assert!(
        at <= chrono::Utc::now() + chrono::Duration::seconds(1),
        "{at}"
    );
}

#[tokio::test]
async fn an_unknown_grant_type_is_named_before_the_scope_is_looked_at() {
    // Arrange
    let app = spawn_app().await;

    // Act: what an importer's placeholder request sends.
    let resp = app
        .token_form()
        .grant("<string>")
        .scope("<string>")
        .send()
        .await;

    // Assert
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
}
