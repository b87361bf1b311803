//! The admin API: listing accounts, changing roles, disabling, the last-admin
//! guard, and seeing and revoking anyone's keys.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    access_token, assert_oauth_error, assert_problem, field_errors, spawn_app, www_authenticate,
    TestUser, PASSWORD,
};

fn scope_set(scope: &str) -> HashSet<&str> {
    scope.split(' ').filter(|s| !s.is_empty()).collect()
}

fn admin_challenge() -> &'static str {
    r#"Bearer realm="latchkey", error="insufficient_scope", scope="admin""#
}

// ---- listing accounts ----

#[tokio::test]
async fn list_users_pages_through_every_account() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut expected = vec![admin.email];
    for _ in 0..4 {
        expected.push(TestUser::generate().register(&app).await.email);
    }

    // Act
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut query = "?limit=2".to_owned();
    loop {
        let resp = app.get(&admin.token, &format!("/admin/users{query}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let page: Value = resp.json().await.unwrap();
        pages += 1;
        for user in page["items"].as_array().unwrap() {
            let mut fields: Vec<_> = user.as_object().unwrap().keys().cloned().collect();
            fields.sort();
            assert_eq!(fields, ["created_at", "disabled", "email", "id", "role"]);
            seen.push(user["email"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }

    // Assert: oldest first, each once, in three pages of 2, 2 and 1.
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn list_users_shows_roles_and_never_password_hashes() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let resp = app.get(&admin.token, "/admin/users").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("argon2"), "{text}");
    assert!(!text.contains("password"), "{text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], admin.id.to_string());
    assert_eq!(items[0]["role"], "admin");
    assert_eq!(items[1]["email"], user.email);
    assert_eq!(items[1]["role"], "user");
    assert_eq!(items[1]["disabled"], false);
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn list_users_rejects_a_bad_limit_or_cursor_with_422() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;

    // Act
    let limit = app.get(&admin, "/admin/users?limit=101").await;
    let cursor = app.get(&admin, "/admin/users?cursor=garbage").await;

    // Assert
    let problem = assert_problem(limit, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["limit"]);
    let problem = assert_problem(cursor, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["cursor"]);
}

#[tokio::test]
async fn a_user_without_the_admin_scope_gets_403_insufficient_scope() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;
    let user = app.user_token().await;
    let bearer = Some(user.as_str());
    let requests = [
        app.request(Method::GET, "/admin/users", bearer),
        app.request(Method::PATCH, &format!("/admin/users/{}", admin.id), bearer)
            .json(&json!({ "role": "user" })),
        app.request(
            Method::GET,
            &format!("/admin/users/{}/keys", admin.id),
            bearer,
        ),
        app.request(
            Method::DELETE,
            &format!("/admin/keys/{}", Uuid::now_v7()),
            bearer,
        ),
    ];

    for request in requests {
        // Act
        let resp = request.send().await.unwrap();

        // Assert
        assert_eq!(www_authenticate(&resp).as_deref(), Some(admin_challenge()));
        let problem = assert_problem(resp, StatusCode::FORBIDDEN).await;
        assert!(problem["detail"].as_str().unwrap().contains("admin"));
    }
}

#[tokio::test]
async fn an_admin_token_without_the_admin_scope_gets_403() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;
    let resp = app
        .login_form(&admin.email, PASSWORD)
        .scope("todos:read keys:manage")
        .send()
        .await;
    let narrowed = access_token(resp).await;

    // Act
    let resp = app.get(&narrowed, "/admin/users").await;

    // Assert
    assert_eq!(www_authenticate(&resp).as_deref(), Some(admin_challenge()));
    assert_problem(resp, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn admin_endpoints_without_a_token_are_401() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/admin/users").await;

    // Assert
    assert_eq!(
        www_authenticate(&resp).as_deref(),
        Some(r#"Bearer realm="latchkey""#)
    );
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;
}

// ---- changing accounts ----

#[tokio::test]
async fn patch_user_changes_role_and_disabled_and_returns_the_account() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;
    let user = TestUser::generate().register(&app).await;
    let path = format!("/admin/users/{}", user.id);

    // Act
    let promoted = app.patch(&admin, &path, json!({ "role": "admin" })).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let promoted: Value = promoted.json().await.unwrap();
    let disabled = app.patch(&admin, &path, json!({ "disabled": true })).await;
    assert_eq!(disabled.status(), StatusCode::OK);
    let disabled: Value = disabled.json().await.unwrap();

    // Assert
    assert_eq!(promoted["id"], user.id.to_string());
    assert_eq!(promoted["email"], user.email);
    assert_eq!(promoted["role"], "admin");
    assert_eq!(promoted["disabled"], false);
    assert_eq!(disabled["role"], "admin", "a partial update keeps the role");
    assert_eq!(disabled["disabled"], true);
    assert_eq!(disabled["created_at"], promoted["created_at"]);
    // A disabled account cannot log in.
    let login = app.login_response(&user.email, &user.password).await;
    assert_oauth_error(login, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn disabling_a_user_stops_their_keys_exchanging_at_once() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;
    let user = TestUser::generate().register(&app).await;
    let key = app
        .create_key(&user.login(&app).await, json!({ "name": "ci" }))
        .await;
    app.exchange(&key).await;
    let id = user.id;

    // Act
    let resp = app
        .patch(
            &admin,
            &format!("/admin/users/{id}"),
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let exchange = app.exchange_response(&key.id, &key.key).await;

    // Assert
    assert_oauth_error(exchange, StatusCode::UNAUTHORIZED, "invalid_client").await;

    // And re-enabling lets the key work again.
    let resp = app
        .patch(
            &admin,
            &format!("/admin/users/{id}"),
            json!({ "disabled": false }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    app.exchange(&key).await;
}

#[tokio::test]
async fn patch_an_unknown_user_is_404() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;

    // Act
    let resp = app
        .patch(
            &admin,
            &format!("/admin/users/{}", Uuid::now_v7()),
            json!({ "disabled": true }),
        )
        .await;

    // Assert
    assert_problem(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn patch_user_with_an_unknown_role_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;
    let user = TestUser::generate().register(&app).await;

    // Act
    let resp = app
        .patch(
            &admin,
            &format!("/admin/users/{}", user.id),
            json!({ "role": "superuser" }),
        )
        .await;

    // Assert
    assert_problem(resp, StatusCode::BAD_REQUEST).await;
    let page: Value = app.get(&admin, "/admin/users").await.json().await.unwrap();
    assert_eq!(page["items"][1]["role"], "user");
}

#[tokio::test]
async fn the_last_active_admin_cannot_demote_or_disable_themselves() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;
    let path = format!("/admin/users/{}", admin.id);

    for body in [
        json!({ "role": "user" }),
        json!({ "disabled": true }),
        json!({ "role": "user", "disabled": true }),
    ] {
        // Act
        let resp = app.patch(&admin.token, &path, body.clone()).await;

        // Assert
        let problem = assert_problem(resp, StatusCode::CONFLICT).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("admin"),
            "{body}: {problem}"
        );
    }
    let page: Value = app
        .get(&admin.token, "/admin/users")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["role"], "admin");
    assert_eq!(page["items"][0]["disabled"], false);
    // A no-op change of the last admin is fine.
    let resp = app
        .patch(
            &admin.token,
            &path,
            json!({ "role": "admin", "disabled": false }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_second_admin_does_not_count_as_an_active_admin() {
    // Arrange
    let app = spawn_app().await;
    let first = app.admin().await;
    let second = app.admin().await;
    let resp = app
        .patch(
            &first.token,
            &format!("/admin/users/{}", second.id),
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Act
    let resp = app
        .patch(
            &first.token,
            &format!("/admin/users/{}", first.id),
            json!({ "role": "user" }),
        )
        .await;

    // Assert
    assert_problem(resp, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn with_two_admins_one_can_demote_the_other_but_not_then_itself() {
    // Arrange
    let app = spawn_app().await;
    let first = app.admin().await;
    let second = app.admin().await;

    // Act
    let resp = app
        .patch(
            &first.token,
            &format!("/admin/users/{}", second.id),
            json!({ "role": "user" }),
        )
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], second.id.to_string());
    assert_eq!(body["role"], "user");
    // The first is now the last admin.
    let resp = app
        .patch(
            &first.token,
            &format!("/admin/users/{}", first.id),
            json!({ "role": "user" }),
        )
        .await;
    assert_problem(resp, StatusCode::CONFLICT).await;
    // The demoted admin's token still says admin until it expires (no lookup
    // per request: the design's trade), but a new login does not.
    let email = body["email"].as_str().unwrap();
    let resp = app.login_form(email, PASSWORD).scope("admin").send().await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let fresh = app.login(email).await;
    let resp = app.get(&fresh, "/admin/users").await;
    assert_problem(resp, StatusCode::FORBIDDEN).await;
}

// ---- anyone's keys ----

#[tokio::test]
async fn list_user_keys_shows_that_user_s_keys_without_plaintext() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;
    let owner = TestUser::generate().register(&app).await;
    let owner_token = owner.login(&app).await;
    let first = app
        .create_key(&owner_token, json!({ "name": "laptop" }))
        .await;
    let second = app
        .create_key(
            &owner_token,
            json!({ "name": "ci", "scopes": ["todos:read"] }),
        )
        .await;
    // Someone else's key must not show up.
    let other = app.user_token().await;
    let others_key = app.create_key(&other, json!({ "name": "other" })).await;

    // Act
    let resp = app
        .get(&admin, &format!("/admin/users/{}/keys", owner.id))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    for key in [&first, &second, &others_key] {
        assert!(!text.contains(&key.key), "a key's plaintext is listed");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let items = body["items"].as_array().unwrap();
    let ids: Vec<_> = items.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
    for (item, key) in items.iter().zip([&first, &second]) {
        assert!(item.get("key").is_none());
        assert_eq!(item["name"], key.body["name"]);
        assert_eq!(item["hint"], key.body["hint"]);
        assert_eq!(item["scopes"], key.body["scopes"]);
        assert!(item["revoked_at"].is_null());
    }
    assert_eq!(items[1]["scopes"], json!(["todos:read"]));
}

#[tokio::test]
async fn list_user_keys_pages_with_limit_and_cursor_until_next_cursor_is_null() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;
    let owner = TestUser::generate().register(&app).await;
    let owner_token = owner.login(&app).await;
    let mut created = Vec::new();
    for i in 0..3 {
        let key = app
            .create_key(&owner_token, json!({ "name": format!("k{i}") }))
            .await;
        created.push(key.id);
    }
    let path = format!("/admin/users/{}/keys", owner.id);

    // Act
    let whole: Value = app.get(&admin, &path).await.json().await.unwrap();
    let first: Value = app
        .get(&admin, &format!("{path}?limit=2"))
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second: Value = app
        .get(&admin, &format!("{path}?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let bad_limit = app.get(&admin, &format!("{path}?limit=101")).await;
    let bad_cursor = app.get(&admin, &format!("{path}?cursor=nope")).await;

    // Assert
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&whole), created, "a page holds up to 100 by default");
    assert!(whole["next_cursor"].is_null());
    assert_eq!(ids(&first), created[..2]);
    assert_eq!(ids(&second), created[2..]);
    assert!(second["next_cursor"].is_null());
    let problem = assert_problem(bad_limit, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["limit"]);
    let problem = assert_problem(bad_cursor, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["cursor"]);
}

#[tokio::test]
async fn list_user_keys_for_an_unknown_user_is_404() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;

    // Act
    let resp = app
        .get(&admin, &format!("/admin/users/{}/keys", Uuid::now_v7()))
        .await;

    // Assert
    assert_problem(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn list_user_keys_for_a_user_without_keys_is_empty() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;

    // Act
    let resp = app
        .get(&admin.token, &format!("/admin/users/{}/keys", admin.id))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "items": [], "next_cursor": null })
    );
}

#[tokio::test]
async fn admin_revoke_key_is_204_twice_and_the_key_stops_exchanging() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;
    let owner = TestUser::generate().register(&app).await;
    let key = app
        .create_key(&owner.login(&app).await, json!({ "name": "leaked" }))
        .await;
    app.exchange(&key).await;
    let path = format!("/admin/keys/{}", key.id);

    // Act
    let first = app.delete(&admin, &path).await;
    let second = app.delete(&admin, &path).await;

    // Assert
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert!(first.bytes().await.unwrap().is_empty());
    assert_eq!(second.status(), StatusCode::NO_CONTENT);
    let exchange = app.exchange_response(&key.id, &key.key).await;
    assert_oauth_error(exchange, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // The row stays, with its revocation time.
    let keys: Value = app
        .get(&admin, &format!("/admin/users/{}/keys", owner.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["items"][0]["id"], key.id.as_str());
    assert!(keys["items"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn admin_revoke_of_an_unknown_key_is_404() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await.token;

    // Act
    let resp = app
        .delete(&admin, &format!("/admin/keys/{}", Uuid::now_v7()))
        .await;

    // Assert
    assert_problem(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_demoted_admin_s_key_no_longer_grants_the_admin_scope() {
    // Arrange
    let app = spawn_app().await;
    let first = app.admin().await.token;
    let second = app.admin().await;
    let key = app
        .create_key(
            &second.token,
            json!({ "name": "ops", "scopes": ["admin", "todos:read"] }),
        )
        .await;
    let before = app.exchange_response(&key.id, &key.key).await;
    assert_eq!(before.status(), StatusCode::OK);
    let before: Value = before.json().await.unwrap();
    assert_eq!(
        scope_set(before["scope"].as_str().unwrap()),
        HashSet::from(["admin", "todos:read"])
    );

    // Act
    let resp = app
        .patch(
            &first,
            &format!("/admin/users/{}", second.id),
            json!({ "role": "user" }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let after = app.exchange_response(&key.id, &key.key).await;

    // Assert
    assert_eq!(after.status(), StatusCode::OK);
    let after: Value = after.json().await.unwrap();
    assert_eq!(
        scope_set(after["scope"].as_str().unwrap()),
        HashSet::from(["todos:read"])
    );
    let token = after["access_token"].as_str().unwrap();
    let resp = app.get(token, "/admin/users").await;
    assert_eq!(www_authenticate(&resp).as_deref(), Some(admin_challenge()));
    assert_problem(resp, StatusCode::FORBIDDEN).await;
    // Asking for the lost scope explicitly is refused.
    let resp = app
        .exchange_form(&key.id, &key.key)
        .scope("admin")
        .send()
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

// ---- latchkey admin create ----

/// Runs `latchkey admin create EMAIL` on a data directory of its own (a
/// SQLite database), with `password` on standard input as a script gives it.
fn admin_create(data_dir: &std::path::Path, email: &str, password: &str) -> std::process::Output {
    use std::{io::Write, process::Stdio};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["admin", "create", "--email", email, "--data-dir"])
        .arg(data_dir)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the latchkey binary runs");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn admin_create_refuses_a_common_password_and_takes_a_good_one() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Act
    let common = admin_create(&data, "root@example.com", "Password123");
    let good = admin_create(&data, "root@example.com", PASSWORD);

    // Assert
    assert!(!common.status.success());
    let stderr = String::from_utf8(common.stderr).unwrap();
    assert!(stderr.contains("password"), "{stderr}");
    assert!(stderr.contains("most common passwords"), "{stderr}");
    assert!(!stderr.contains("Password123"), "{stderr}");
    let stdout = String::from_utf8(good.stdout).unwrap();
    assert!(good.status.success(), "{stdout}");
    assert!(
        stdout.contains("created admin root@example.com"),
        "{stdout}"
    );
}
