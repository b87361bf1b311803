//! `PUT /me/password`: the current password checked, the new one judged by
//! the same rules as at registration, and every earlier token of the account
//! refused afterwards, on every instance.
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use latchkey::db::Backend;

use crate::helpers::{
    access_token, assert_oauth_error, assert_problem, assert_revoked, field_errors, holder,
    refused_within, spawn_app, spawn_app_on, spawn_app_with, test_backend, www_authenticate,
    TestApp, ELSEWHERE, ISSUER,
};

const NEW: &str = "a much better passphrase";

async fn me(app: &TestApp, token: &str) -> Response {
    app.get(token, "/me").await
}

#[tokio::test]
async fn a_new_password_replaces_the_old_and_refuses_every_earlier_token() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let bob = holder(&app).await;

    // Act
    let resp = app
        .change_password(&ada.from_key, &ada.user.password, NEW)
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_revoked(me(&app, &ada.login).await).await;
    assert_revoked(me(&app, &ada.from_key).await).await;
    assert_eq!(me(&app, &bob.login).await.status(), StatusCode::OK);
    let old = app
        .login_response(&ada.user.email, &ada.user.password)
        .await;
    assert_oauth_error(old, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let fresh = access_token(app.login_response(&ada.user.email, NEW).await).await;
    assert_eq!(me(&app, &fresh).await.status(), StatusCode::OK);
    // The keys are the account's, not the password's: they still exchange.
    let from_key = app.exchange(&ada.key).await;
    assert_eq!(me(&app, &from_key).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_new_password_is_stored_as_an_argon2id_hash_only() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;

    // Act
    let resp = app
        .change_password(&ada.login, &ada.user.password, NEW)
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let stored = app.stored_bytes().await;
    assert!(
        !stored.windows(NEW.len()).any(|w| w == NEW.as_bytes()),
        "the new password is stored in plaintext"
    );
    let hash: String = crate::helpers::on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT password_hash FROM users WHERE id = $1"
    )
    .bind(ada.user.id)
    .fetch_one(pool)
    .await)
    .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[tokio::test]
async fn a_password_change_at_one_instance_refuses_the_earlier_tokens_at_the_others() {
    // Arrange: two instances sharing a database (and, on SQLite, the keyring;
    // on PostgreSQL the keyring is the database's).
    let one = spawn_app_with(|c| c.issuer = Some(ISSUER.into())).await;
    let other = if test_backend() == Backend::Postgres {
        spawn_app_on(&one, |c| c.issuer = Some(ISSUER.into())).await
    } else {
        one.another_instance().await
    };
    let ada = holder(&one).await;
    for token in [&ada.login, &ada.from_key] {
        assert_eq!(me(&other, token).await.status(), StatusCode::OK);
    }

    // Act
    let resp = one
        .change_password(&ada.login, &ada.user.password, NEW)
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    refused_within(&other, &ada.login, ELSEWHERE).await;
    refused_within(&other, &ada.from_key, ELSEWHERE).await;
    let old = other
        .login_response(&ada.user.email, &ada.user.password)
        .await;
    assert_oauth_error(old, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let fresh = access_token(other.login_response(&ada.user.email, NEW).await).await;
    assert_eq!(me(&one, &fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_current_password_is_refused_with_422_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;

    // Act
    let resp = app
        .change_password(&ada.login, "not the password at all", NEW)
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["current_password"]);
    assert_eq!(
        problem["errors"][0]["message"],
        "is not this account's password"
    );
    let text = problem.to_string();
    assert!(!text.contains("not the password at all"), "{text}");
    assert!(!text.contains(NEW), "{text}");
    assert_eq!(me(&app, &ada.login).await.status(), StatusCode::OK);
    assert_eq!(me(&app, &ada.from_key).await.status(), StatusCode::OK);
    let new = app.login_response(&ada.user.email, NEW).await;
    assert_oauth_error(new, StatusCode::BAD_REQUEST, "invalid_grant").await;
    ada.user.login(&app).await;
}

#[tokio::test]
async fn an_unacceptable_new_password_is_refused_with_422_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;

    for (new, message) in [
        ("short", "must be at least 8 characters"),
        ("          ", "must not be only whitespace"),
        ("Sunshine1", "most common passwords"),
    ] {
        // Act: with a wrong current password too, which is not even looked at.
        let right = app
            .change_password(&ada.login, &ada.user.password, new)
            .await;
        let wrong = app.change_password(&ada.login, "wrong password", new).await;

        // Assert
        for resp in [right, wrong] {
            let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(field_errors(&problem), ["new_password"], "{new:?}");
            let said = problem["errors"][0]["message"].as_str().unwrap();
            assert!(said.contains(message), "{new:?}: {said}");
        }
    }
    assert_eq!(me(&app, &ada.login).await.status(), StatusCode::OK);
    ada.user.login(&app).await;
}

#[tokio::test]
async fn changing_the_password_needs_a_bearer_token() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .request(Method::PUT, "/me/password", None)
        .json(&json!({ "current_password": "x", "new_password": NEW }))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(
        www_authenticate(&resp).as_deref(),
        Some(r#"Bearer realm="latchkey""#)
    );
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_body_without_a_field_or_with_a_non_string_is_a_400_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;

    for (body, field) in [
        (
            json!({ "current_password": ada.user.password }),
            "new_password",
        ),
        (json!({ "new_password": NEW }), "current_password"),
        (
            json!({ "current_password": ada.user.password, "new_password": 918273645 }),
            "new_password",
        ),
    ] {
        // Act
        let resp = app
            .request(Method::PUT, "/me/password", Some(&ada.login))
            .json(&body)
            .send()
            .await
            .unwrap();

        // Assert
        let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
        assert_eq!(field_errors(&problem), [field], "{problem}");
        assert!(!problem.to_string().contains("918273645"), "{problem}");
    }
    assert_eq!(me(&app, &ada.login).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_account_cannot_change_its_password() {
    // Arrange: disabled behind the server's back, so its token still verifies.
    let app = spawn_app().await;
    let ada = holder(&app).await;
    app.execute(
        "UPDATE users SET disabled = TRUE WHERE id = $1",
        ada.user.id,
    )
    .await;

    // Act
    let resp = app
        .change_password(&ada.login, &ada.user.password, NEW)
        .await;

    // Assert
    let problem: Value = assert_problem(resp, StatusCode::FORBIDDEN).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("disabled"),
        "{problem}"
    );
    app.execute(
        "UPDATE users SET disabled = FALSE WHERE id = $1",
        ada.user.id,
    )
    .await;
    ada.user.login(&app).await;
}
