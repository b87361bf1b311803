//! `/keys`: creating, listing, reading and revoking API keys.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    access_token, assert_problem, field_errors, jwt_parts, on_sql, spawn_app, spawn_app_with,
    www_authenticate, TestApp, TestKey, TestUser,
};

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
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "items": [], "next_cursor": null })
    );
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

// ---- a credential never makes one that outgrows it ----

/// A token minted from a new key of the account `login` belongs to, holding
/// `scopes`, with `expires_at` if given; and the key.
async fn key_token(
    app: &TestApp,
    login: &str,
    scopes: &[&str],
    expires_at: Option<&str>,
) -> (String, TestKey) {
    let mut body = json!({ "name": "parent", "scopes": scopes });
    if let Some(at) = expires_at {
        body["expires_at"] = json!(at);
    }
    let key = app.create_key(login, body).await;
    (app.exchange(&key).await, key)
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a time: {value}"))
        .parse()
        .unwrap()
}

/// Asserts the RFC 6750 refusal of a new key's scopes the token lacks.
async fn assert_insufficient_scope(resp: reqwest::Response, lacking: &[&str]) -> Value {
    let challenge = www_authenticate(&resp).expect("a bearer challenge");
    assert!(
        challenge.starts_with(r#"Bearer realm="latchkey", error="insufficient_scope""#),
        "{challenge}"
    );
    let needed: Vec<&str> = challenge_param(&challenge, "scope").split(' ').collect();
    assert!(needed.contains(&"keys:manage"), "{challenge}");
    let description = challenge_param(&challenge, "error_description");
    let problem = assert_problem(resp, StatusCode::FORBIDDEN).await;
    let detail = problem["detail"].as_str().unwrap();
    for lacked in lacking {
        assert!(needed.contains(lacked), "{challenge}");
        assert!(description.contains(lacked), "{challenge}");
        assert!(detail.contains(lacked), "{problem}");
    }
    problem
}

/// The value of one `name="value"` parameter of a challenge.
fn challenge_param<'a>(challenge: &'a str, name: &str) -> &'a str {
    challenge
        .split_once(&format!(r#" {name}=""#))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value)
        .unwrap_or_else(|| panic!("the challenge has {name}: {challenge}"))
}

#[tokio::test]
async fn a_keys_manage_only_token_cannot_mint_an_admin_or_a_todos_write_key() {
    // Arrange: an admin's key holding only `keys:manage`, as in the review.
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (token, _) = key_token(&app, &admin.token, &["keys:manage"], None).await;
    let before = key_count(&app).await;

    // Act
    let admin_key = app
        .create_key_response(&token, json!({ "name": "escalate", "scopes": ["admin"] }))
        .await;
    let write_key = app
        .create_key_response(
            &token,
            json!({ "name": "escalate", "scopes": ["todos:read", "todos:write"] }),
        )
        .await;

    // Assert
    assert_insufficient_scope(admin_key, &["admin"]).await;
    let problem = assert_insufficient_scope(write_key, &["todos:read", "todos:write"]).await;
    assert!(problem.get("errors").is_none(), "{problem}");
    assert_eq!(key_count(&app).await, before, "no key was stored");
}

#[tokio::test]
async fn a_token_may_hand_on_the_scopes_it_holds_and_no_other() {
    // Arrange: a login narrowed to part of the role is bound the same way.
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let narrowed = access_token(
        app.login_form(&user.email, &user.password)
            .scope("keys:manage todos:read")
            .send()
            .await,
    )
    .await;

    // Act
    let within = app
        .create_key_response(
            &narrowed,
            json!({ "name": "reader", "scopes": ["todos:read", "keys:manage"] }),
        )
        .await;
    let beyond = app
        .create_key_response(
            &narrowed,
            json!({ "name": "writer", "scopes": ["todos:read", "todos:write"] }),
        )
        .await;

    // Assert
    assert_eq!(within.status(), StatusCode::CREATED);
    let created: Value = within.json().await.unwrap();
    assert_eq!(created["scopes"], json!(["todos:read", "keys:manage"]));
    let challenge = www_authenticate(&beyond).unwrap();
    let description = challenge_param(&challenge, "error_description");
    assert!(!description.contains("todos:read"), "{challenge}");
    assert_insufficient_scope(beyond, &["todos:write"]).await;
}

#[tokio::test]
async fn the_default_scopes_are_narrowed_to_what_the_token_holds() {
    // Arrange
    let app = spawn_app().await;
    let login = app.user_token().await;
    let (token, _) = key_token(&app, &login, &["keys:manage", "todos:read"], None).await;

    // Act
    let key = app.create_key(&token, json!({ "name": "child" })).await;

    // Assert
    assert_eq!(key.body["scopes"], json!(["todos:read"]));
    let exchanged = app.exchange_response(&key.id, &key.key).await;
    let body: Value = exchanged.json().await.unwrap();
    assert_eq!(body["scope"], "todos:read");
}

#[tokio::test]
async fn a_token_holding_neither_default_scope_must_name_the_scopes_with_400() {
    // Arrange
    let app = spawn_app().await;
    let login = app.user_token().await;
    let (token, _) = key_token(&app, &login, &["keys:manage"], None).await;
    let before = key_count(&app).await;

    // Act
    let resp = app
        .create_key_response(&token, json!({ "name": "child" }))
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(field_errors(&problem), ["scopes"]);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("`scopes`"), "{problem}");
    assert!(detail.contains("keys:manage"), "{problem}");
    assert_eq!(key_count(&app).await, before);
    // Naming what it holds is enough.
    let key = app
        .create_key(
            &token,
            json!({ "name": "child", "scopes": ["keys:manage"] }),
        )
        .await;
    assert_eq!(key.body["scopes"], json!(["keys:manage"]));
}

#[tokio::test]
async fn a_key_made_with_a_five_minute_key_s_token_expires_when_that_key_does() {
    // Arrange
    let app = spawn_app().await;
    let login = app.user_token().await;
    let in_five_minutes = (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let (token, parent) = key_token(
        &app,
        &login,
        &["keys:manage", "todos:read"],
        Some(&in_five_minutes),
    )
    .await;

    // Act
    let child = app.create_key(&token, json!({ "name": "child" })).await;

    // Assert
    let parent_expires = time(&parent.body["expires_at"]);
    assert_eq!(time(&child.body["expires_at"]), parent_expires);
    let record: Value = app
        .get(&login, &format!("/keys/{}", child.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(time(&record["expires_at"]), parent_expires);
    let minted = app.exchange_response(&child.id, &child.key).await;
    let body: Value = minted.json().await.unwrap();
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert!(claims["exp"].as_i64().unwrap() <= parent_expires.timestamp());
}

#[tokio::test]
async fn a_key_outliving_the_key_whose_token_makes_it_is_a_400_naming_expires_at() {
    // Arrange
    let app = spawn_app().await;
    let login = app.user_token().await;
    let in_five_minutes = Utc::now() + chrono::Duration::minutes(5);
    let (token, parent) = key_token(
        &app,
        &login,
        &["keys:manage", "todos:read"],
        Some(&in_five_minutes.to_rfc3339()),
    )
    .await;
    let before = key_count(&app).await;

    // Act
    let later = app
        .create_key_response(
            &token,
            json!({
                "name": "child",
                "expires_at": (in_five_minutes + chrono::Duration::seconds(1)).to_rfc3339(),
            }),
        )
        .await;
    let never = app
        .create_key_response(&token, json!({ "name": "child", "expires_at": null }))
        .await;
    let sooner = app
        .create_key_response(
            &token,
            json!({
                "name": "child",
                "expires_at": (in_five_minutes - chrono::Duration::minutes(1)).to_rfc3339(),
            }),
        )
        .await;
    let same = app
        .create_key_response(
            &token,
            json!({ "name": "child", "expires_at": parent.body["expires_at"] }),
        )
        .await;

    // Assert
    let problem = assert_problem(later, StatusCode::BAD_REQUEST).await;
    assert_eq!(field_errors(&problem), ["expires_at"]);
    assert!(
        problem["detail"].as_str().unwrap().contains("`expires_at`"),
        "{problem}"
    );
    assert_eq!(
        key_count(&app).await,
        before + 3,
        "the inherited, the sooner and the same"
    );
    // `null` is the field left out: the child inherits the parent's expiry.
    assert_eq!(never.status(), StatusCode::CREATED);
    let never: Value = never.json().await.unwrap();
    assert_eq!(time(&never["expires_at"]), time(&parent.body["expires_at"]));
    assert_eq!(sooner.status(), StatusCode::CREATED);
    assert_eq!(same.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_login_and_a_never_expiring_key_s_token_make_keys_that_never_expire() {
    // Arrange
    let app = spawn_app().await;
    let login = app.user_token().await;
    let (token, _) = key_token(&app, &login, &["keys:manage", "todos:read"], None).await;

    // Act
    let from_login = app.create_key(&login, json!({ "name": "a" })).await;
    let from_key = app.create_key(&token, json!({ "name": "b" })).await;

    // Assert
    assert!(from_login.body["expires_at"].is_null());
    assert!(from_key.body["expires_at"].is_null());
}

#[tokio::test]
async fn a_child_key_is_not_revoked_with_the_key_that_made_it() {
    // Arrange
    let app = spawn_app().await;
    let login = app.user_token().await;
    let (token, parent) = key_token(&app, &login, &["keys:manage", "todos:read"], None).await;
    let child = app.create_key(&token, json!({ "name": "child" })).await;

    // Act
    let revoked = app.delete(&login, &format!("/keys/{}", parent.id)).await;

    // Assert
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.exchange_response(&parent.id, &parent.key)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "the parent is revoked"
    );
    assert_eq!(
        app.exchange_response(&child.id, &child.key).await.status(),
        StatusCode::OK
    );
    let record: Value = app
        .get(&login, &format!("/keys/{}", child.id))
        .await
        .json()
        .await
        .unwrap();
    assert!(record["revoked_at"].is_null(), "{record}");
}

#[tokio::test]
async fn a_token_whose_key_was_revoked_or_expired_unseen_is_refused_with_401() {
    // Arrange: the key's row is changed behind the server's back, so no
    // revocation reaches the instance and the token still verifies.
    let app = spawn_app().await;
    let login = app.user_token().await;
    let (revoked_token, revoked) =
        key_token(&app, &login, &["keys:manage", "todos:read"], None).await;
    let (expired_token, expired) =
        key_token(&app, &login, &["keys:manage", "todos:read"], None).await;
    app.execute(
        "UPDATE api_keys SET revoked_at = created_at WHERE id = $1",
        Uuid::parse_str(&revoked.id).unwrap(),
    )
    .await;
    app.execute(
        "UPDATE api_keys SET expires_at = created_at WHERE id = $1",
        Uuid::parse_str(&expired.id).unwrap(),
    )
    .await;
    let before = key_count(&app).await;

    for token in [revoked_token, expired_token] {
        // Act
        assert_eq!(app.get(&token, "/me").await.status(), StatusCode::OK);
        let resp = app
            .create_key_response(&token, json!({ "name": "child" }))
            .await;

        // Assert
        let challenge = www_authenticate(&resp).expect("a bearer challenge");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(key_count(&app).await, before);
}

// ---- pages ----

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page has items: {page}"))
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_keys_pages_with_limit_and_cursor_until_next_cursor_is_null() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            app.create_key(&token, json!({ "name": format!("k{i}") }))
                .await
                .id,
        );
    }
    app.delete(&token, &format!("/keys/{}", created[1])).await;

    // Act
    let mut pages = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let resp = app.get(&token, &format!("/keys{query}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let page: Value = resp.json().await.unwrap();
        let next = page["next_cursor"].clone();
        pages.push(page);
        match next.as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }

    // Assert
    let sizes: Vec<usize> = pages.iter().map(|p| ids(p).len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert!(pages[2]["next_cursor"].is_null());
    let seen: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(
        seen, created,
        "every key once, oldest first, revoked included"
    );
    assert!(pages[0]["items"][1]["revoked_at"].is_string());
}

#[tokio::test]
async fn list_keys_defaults_to_100_per_page() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.max_keys_per_user = 200).await;
    let token = app.user_token().await;
    for i in 0..101 {
        app.create_key(&token, json!({ "name": format!("k{i}") }))
            .await;
    }

    // Act
    let first: Value = app.get(&token, "/keys").await.json().await.unwrap();
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second: Value = app
        .get(&token, &format!("/keys?cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(ids(&first).len(), 100);
    assert_eq!(ids(&second).len(), 1);
    assert!(second["next_cursor"].is_null());
}

#[tokio::test]
async fn list_keys_refuses_a_bad_limit_or_cursor_as_the_other_lists_do() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let zero = app.get(&token, "/keys?limit=0").await;
    let over = app.get(&token, "/keys?limit=101").await;
    let garbage = app.get(&token, "/keys?cursor=not-a-cursor").await;
    let both = app.get(&token, "/keys?limit=0&cursor=AAAA").await;
    let not_a_number = app.get(&token, "/keys?limit=abc").await;

    // Assert
    for resp in [zero, over] {
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["limit"]);
    }
    let problem = assert_problem(garbage, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["cursor"]);
    let problem = assert_problem(both, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["limit", "cursor"]);
    let problem = assert_problem(not_a_number, StatusCode::BAD_REQUEST).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("limit"),
        "{problem}"
    );
}
