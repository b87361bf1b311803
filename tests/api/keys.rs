//! `/keys`: creating, listing, reading and revoking API keys.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, field_errors, on_sql, spawn_app, www_authenticate, TestApp};

/// `lk_` and 49 base62 characters, as `^lk_[0-9A-Za-z]{49}$` says.
fn has_key_format(key: &str) -> bool {
    key.strip_prefix("lk_")
        .is_some_and(|rest| rest.len() == 49 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

async fn key_count(app: &TestApp) -> i64 {
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM api_keys"
    )
    .fetch_one(pool)
    .await)
    .unwrap()
}

// ---- create ----

#[tokio::test]
async fn create_key_returns_201_with_the_plaintext_once_and_a_location() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let before = Utc::now() - chrono::Duration::seconds(1);

    // Act
    let resp = app
        .create_key_response(&token, json!({ "name": "deploy bot" }))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    Uuid::parse_str(id).expect("the id is a UUID");
    assert_eq!(location, format!("/keys/{id}"));
    let key = body["key"].as_str().unwrap();
    assert!(has_key_format(key), "{key}");
    assert_eq!(body["hint"], format!("lk_…{}", &key[key.len() - 4..]));
    assert_eq!(body["name"], "deploy bot");
    assert_eq!(body["scopes"], json!(["todos:read", "todos:write"]));
    assert!(body["expires_at"].is_null());
    assert!(body["last_used_at"].is_null());
    assert!(body["revoked_at"].is_null());
    let created_at: DateTime<Utc> = body["created_at"].as_str().unwrap().parse().unwrap();
    assert!(created_at >= before && created_at <= Utc::now() + chrono::Duration::seconds(1));
}

#[tokio::test]
async fn the_location_of_a_new_key_serves_its_record() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let resp = app
        .create_key_response(&token, json!({ "name": "deploy bot" }))
        .await;
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();

    // Act
    let resp = app.get(&token, &location).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let record: Value = resp.json().await.unwrap();
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("key");
    assert_eq!(record, expected);
}

#[tokio::test]
async fn create_key_stores_the_scopes_and_expiry_asked_for() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let expires_at = "2999-01-02T03:04:05Z";

    // Act
    let key = app
        .create_key(
            &token,
            json!({
                "name": "reader",
                "scopes": ["todos:read", "keys:manage"],
                "expires_at": expires_at,
            }),
        )
        .await;

    // Assert
    assert_eq!(key.body["scopes"], json!(["todos:read", "keys:manage"]));
    let stored: DateTime<Utc> = key.body["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(stored, expires_at.parse::<DateTime<Utc>>().unwrap());
    let exchanged = app.exchange_response(&key.id, &key.key).await;
    assert_eq!(exchanged.status(), StatusCode::OK);
    let body: Value = exchanged.json().await.unwrap();
    assert_eq!(body["scope"], "todos:read keys:manage");
}

#[tokio::test]
async fn every_new_key_is_different() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let first = app.create_key(&token, json!({ "name": "a" })).await;
    let second = app.create_key(&token, json!({ "name": "a" })).await;

    // Assert
    assert_ne!(first.key, second.key);
    assert_ne!(first.id, second.id);
}

#[tokio::test]
async fn the_plaintext_key_is_not_stored() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let key = app.create_key(&token, json!({ "name": "a" })).await;

    // Assert
    let (hash, hint): (Vec<u8>, String) = on_sql!(app.sql, |pool| sqlx::query_as(
        "SELECT key_hash, hint FROM api_keys WHERE id = $1"
    )
    .bind(Uuid::parse_str(&key.id).unwrap())
    .fetch_one(pool)
    .await)
    .unwrap();
    assert_eq!(hash, blake3::hash(key.key.as_bytes()).as_bytes().to_vec());
    assert!(!hint.contains(&key.key[3..20]));
    let stored = app.stored_bytes().await;
    let needle = key.key.as_bytes();
    assert!(!stored.windows(needle.len()).any(|w| w == needle));
}

// ---- list and get never show the key ----

#[tokio::test]
async fn list_and_get_never_include_the_plaintext_key() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let first = app.create_key(&token, json!({ "name": "first" })).await;
    let second = app.create_key(&token, json!({ "name": "second" })).await;

    // Act
    let list = app.get(&token, "/keys").await;
    let one = app.get(&token, &format!("/keys/{}", first.id)).await;

    // Assert
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(one.status(), StatusCode::OK);
    let list_text = list.text().await.unwrap();
    let one_text = one.text().await.unwrap();
    for text in [&list_text, &one_text] {
        assert!(!text.contains(&first.key), "{text}");
        assert!(!text.contains(&second.key), "{text}");
    }
    let list: Value = serde_json::from_str(&list_text).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], first.id);
    assert_eq!(items[1]["id"], second.id);
    for item in items {
        assert!(item.get("key").is_none(), "{item}");
        assert!(item["hint"].as_str().unwrap().starts_with("lk_…"));
    }
    let one: Value = serde_json::from_str(&one_text).unwrap();
    assert!(one.get("key").is_none());
    assert_eq!(one["id"], first.id);
    assert_eq!(one["name"], "first");
    assert_eq!(one["hint"], first.body["hint"]);
}

#[tokio::test]
async fn list_shows_only_the_caller_s_keys() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.user_token().await;
    let bob = app.user_token().await;
    app.create_key(&alice, json!({ "name": "alice's" })).await;

    // Act
    let resp = app.get(&bob, "/keys").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "items": [] }));
}

// ---- validation ----

#[tokio::test]
async fn create_key_refuses_a_name_with_a_control_character_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for name in ["ci\nprod", "tab\tbed", "\u{1b}]0;title\u{7}", "c1\u{9b}2J"] {
        // Act
        let resp = app
            .create_key_response(&token, json!({ "name": name }))
            .await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["name"], "{name:?}");
        let said = problem["errors"][0]["message"].as_str().unwrap();
        assert!(said.contains("control characters"), "{said}");
    }
    assert_eq!(key_count(&app).await, 0);
}

#[tokio::test]
async fn create_key_refuses_a_scope_beyond_the_user_s_role_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .create_key_response(&token, json!({ "name": "x", "scopes": ["admin"] }))
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["scopes"]);
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("admin"));
    assert_eq!(key_count(&app).await, 0);
}

#[tokio::test]
async fn create_key_refuses_an_unknown_scope_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .create_key_response(
            &token,
            json!({ "name": "x", "scopes": ["todos:read", "todos:delete"] }),
        )
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["scopes"]);
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("todos:delete"));
}

#[tokio::test]
async fn create_key_refuses_an_empty_scope_list_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .create_key_response(&token, json!({ "name": "x", "scopes": [] }))
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["scopes"]);
}

#[tokio::test]
async fn create_key_refuses_an_expiry_in_the_past_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();

    // Act
    let resp = app
        .create_key_response(&token, json!({ "name": "x", "expires_at": past }))
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["expires_at"]);
}

#[tokio::test]
async fn create_key_refuses_an_empty_or_blank_name_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for name in ["", "   "] {
        // Act
        let resp = app
            .create_key_response(&token, json!({ "name": name }))
            .await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["name"]);
    }
    assert_eq!(key_count(&app).await, 0);
}

#[tokio::test]
async fn create_key_refuses_a_name_over_100_characters_and_accepts_100() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let too_long = app
        .create_key_response(&token, json!({ "name": "n".repeat(101) }))
        .await;
    let longest = app
        .create_key_response(&token, json!({ "name": "n".repeat(100) }))
        .await;

    // Assert
    let problem = assert_problem(too_long, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["name"]);
    assert_eq!(longest.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn create_key_lists_every_invalid_field_at_once() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();

    // Act
    let resp = app
        .create_key_response(
            &token,
            json!({ "name": "", "scopes": ["nope"], "expires_at": past }),
        )
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut fields = field_errors(&problem);
    fields.sort_unstable();
    assert_eq!(fields, ["expires_at", "name", "scopes"]);
}

#[tokio::test]
async fn create_key_without_a_name_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .create_key_response(&token, json!({ "scopes": ["todos:read"] }))
        .await;

    // Assert
    assert_problem(resp, StatusCode::BAD_REQUEST).await;
}

// ---- revoke ----

#[tokio::test]
async fn revoke_is_idempotent_and_keeps_the_row_with_revoked_at() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let key = app.create_key(&token, json!({ "name": "old" })).await;
    let path = format!("/keys/{}", key.id);

    // Act
    let first = app.delete(&token, &path).await;
    let after_first: Value = app.get(&token, &path).await.json().await.unwrap();
    let second = app.delete(&token, &path).await;

    // Assert
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert!(first.text().await.unwrap().is_empty());
    assert_eq!(second.status(), StatusCode::NO_CONTENT);
    let resp = app.get(&token, &path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let record: Value = resp.json().await.unwrap();
    let revoked_at: DateTime<Utc> = record["revoked_at"]
        .as_str()
        .expect("revoked_at is set")
        .parse()
        .unwrap();
    assert!(revoked_at <= Utc::now());
    assert_eq!(record["revoked_at"], after_first["revoked_at"]);
    let list: Value = app.get(&token, "/keys").await.json().await.unwrap();
    assert_eq!(list["items"][0]["id"], key.id);
    assert_eq!(list["items"][0]["revoked_at"], record["revoked_at"]);
}

// ---- ownership and ids ----

#[tokio::test]
async fn another_user_s_key_is_404_to_get_and_to_revoke() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.user_token().await;
    let bob = app.user_token().await;
    let key = app.create_key(&alice, json!({ "name": "alice's" })).await;
    let path = format!("/keys/{}", key.id);

    // Act
    let get = app.get(&bob, &path).await;
    let delete = app.delete(&bob, &path).await;

    // Assert
    assert_problem(get, StatusCode::NOT_FOUND).await;
    assert_problem(delete, StatusCode::NOT_FOUND).await;
    let still: Value = app.get(&alice, &path).await.json().await.unwrap();
    assert!(still["revoked_at"].is_null());
    assert_eq!(
        app.exchange_response(&key.id, &key.key).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unknown_key_id_is_404() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let path = format!("/keys/{}", Uuid::now_v7());

    // Act
    let get = app.get(&token, &path).await;
    let delete = app.delete(&token, &path).await;

    // Assert
    assert_problem(get, StatusCode::NOT_FOUND).await;
    assert_problem(delete, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_key_id_that_is_not_a_uuid_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let get = app.get(&token, "/keys/not-a-uuid").await;
    let delete = app.delete(&token, "/keys/not-a-uuid").await;

    // Assert
    let problem = assert_problem(get, StatusCode::BAD_REQUEST).await;
    assert!(problem["detail"].as_str().unwrap().contains("UUID"));
    assert_problem(delete, StatusCode::BAD_REQUEST).await;
}

// ---- scopes and roles ----

#[tokio::test]
async fn key_management_needs_the_keys_manage_scope() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let key = app
        .create_key(&token, json!({ "name": "todos only" }))
        .await;
    let key_token = app.exchange(&key).await;
    let path = format!("/keys/{}", key.id);

    // Act
    let responses = vec![
        app.get(&key_token, "/keys").await,
        app.create_key_response(&key_token, json!({ "name": "escalate" }))
            .await,
        app.get(&key_token, &path).await,
        app.delete(&key_token, &path).await,
    ];

    // Assert
    for resp in responses {
        let challenge = www_authenticate(&resp).expect("a WWW-Authenticate header");
        assert!(
            challenge.starts_with(r#"Bearer realm="latchkey""#),
            "{challenge}"
        );
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        assert!(challenge.contains(r#"scope="keys:manage""#), "{challenge}");
        assert_problem(resp, StatusCode::FORBIDDEN).await;
    }
    assert_eq!(key_count(&app).await, 1);
    let record: Value = app.get(&token, &path).await.json().await.unwrap();
    assert!(record["revoked_at"].is_null());
}

#[tokio::test]
async fn an_admin_may_create_a_key_with_the_admin_scope() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;

    // Act
    let key = app
        .create_key(
            &admin,
            json!({ "name": "ops", "scopes": ["admin", "todos:read"] }),
        )
        .await;

    // Assert
    assert_eq!(key.body["scopes"], json!(["todos:read", "admin"]));
    let token = app.exchange(&key).await;
    let users = app.get(&token, "/admin/users").await;
    assert_eq!(users.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_expires_at_is_a_400_that_names_the_field() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .create_key_response(
            &token,
            json!({ "name": "ci", "expires_at": "next tuesday" }),
        )
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(field_errors(&problem), ["expires_at"]);
    assert!(problem["detail"].as_str().unwrap().contains("RFC 3339"));
}
