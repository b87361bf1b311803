//! `POST /users`: registration, its validation and its problem responses.

use chrono::{DateTime, Utc};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_problem, assert_problem_body, assert_problem_head, field_errors, on_sql, spawn_app,
    spawn_app_with, TestApp, PASSWORD,
};

/// Sends `body` to `POST /users` as raw JSON text.
async fn register_raw(app: &TestApp, body: &str) -> Response {
    app.request(Method::POST, "/users", None)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn user_count(app: &TestApp) -> i64 {
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM users"
    )
    .fetch_one(pool)
    .await)
    .unwrap()
}

#[tokio::test]
async fn register_returns_201_with_the_new_account() {
    // Arrange
    let app = spawn_app().await;
    let before = Utc::now();

    // Act
    let resp = app.register("ada@example.com", PASSWORD).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = resp.json().await.unwrap();
    let object = body.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "disabled", "email", "id", "role"]);
    Uuid::parse_str(body["id"].as_str().unwrap()).expect("the id is a UUID");
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["role"], "user");
    assert_eq!(body["disabled"], false);
    let created_at: DateTime<Utc> = body["created_at"].as_str().unwrap().parse().unwrap();
    assert!(created_at >= before - chrono::Duration::seconds(1));
    assert!(created_at <= Utc::now() + chrono::Duration::seconds(1));
}

#[tokio::test]
async fn register_trims_and_lower_cases_the_email() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.register("  Ada.Lovelace@Example.COM ", PASSWORD).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["email"], "ada.lovelace@example.com");
    let login = app
        .login_response("ada.lovelace@example.com", PASSWORD)
        .await;
    assert_eq!(login.status(), StatusCode::OK);
}

#[tokio::test]
async fn register_rejects_a_duplicate_email_in_another_case_with_409() {
    // Arrange
    let app = spawn_app().await;
    let first = app.register("grace@example.com", PASSWORD).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    // Act
    let resp = app.register("Grace@EXAMPLE.com", "another password").await;

    // Assert
    let problem = assert_problem(resp, StatusCode::CONFLICT).await;
    assert_eq!(problem["title"], "Conflict");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn register_lists_an_invalid_email_and_a_short_password_together_with_422() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.register("not-an-email", "short").await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut fields = field_errors(&problem);
    fields.sort_unstable();
    assert_eq!(fields, ["email", "password"]);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("`email`") && detail.contains("`password`"),
        "{detail}"
    );
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_rejects_a_password_longer_than_128_characters_with_422() {
    // Arrange
    let app = spawn_app().await;
    let long = "x".repeat(129);

    // Act
    let resp = app.register("ada@example.com", &long).await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["password"]);
    assert!(!problem.to_string().contains(&long));
}

#[tokio::test]
async fn register_accepts_passwords_of_exactly_8_and_128_characters() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let shortest = app.register("eight@example.com", "0a1b2c3d").await;
    let longest = app.register("long@example.com", &"é".repeat(128)).await;

    // Assert
    assert_eq!(shortest.status(), StatusCode::CREATED);
    assert_eq!(longest.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn register_rejects_a_common_password_in_any_case_with_422() {
    // Arrange
    let app = spawn_app().await;

    for (i, common) in ["12345678", "PassWord1", "QWERTYUIOP", "iloveyou"]
        .into_iter()
        .enumerate()
    {
        // Act
        let resp = app
            .register(&format!("common{i}@example.com"), common)
            .await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["password"]);
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("most common passwords"),
            "{problem}"
        );
        assert!(!problem.to_string().contains(common), "{problem}");
    }
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_rejects_a_password_of_only_whitespace_with_422() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.register("ada@example.com", " \t  \u{a0}    ").await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["password"]);
    assert_eq!(
        problem["errors"][0]["message"],
        "must not be only whitespace"
    );
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_answers_403_when_registration_is_closed() {
    // Arrange
    let app = spawn_app_with(|c| c.registration = latchkey::config::Registration::Closed).await;

    // Act
    let resp = app.register("ada@example.com", PASSWORD).await;

    // Assert
    let problem = assert_problem(resp, StatusCode::FORBIDDEN).await;
    assert!(problem["detail"].as_str().unwrap().contains("closed"));
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_answers_400_problem_for_malformed_json() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = register_raw(&app, r#"{"email": "ada@example.com", "password": "#).await;

    // Assert
    assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_answers_400_problem_for_a_missing_field() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = register_raw(&app, r#"{"email": "ada@example.com"}"#).await;

    // Assert
    assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_names_the_missing_field_in_the_400_problem() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = register_raw(&app, r#"{"email": "ada@example.com"}"#).await;

    // Assert
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("password"),
        "{problem}"
    );
}

#[tokio::test]
async fn register_answers_400_problem_for_a_non_json_content_type() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .request(Method::POST, "/users", None)
        .header("content-type", "text/plain")
        .body(r#"{"email": "ada@example.com", "password": "correct horse"}"#)
        .send()
        .await
        .unwrap();

    // Assert
    assert_problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_does_not_echo_a_password_sent_as_an_array_or_object() {
    // Arrange
    let app = spawn_app().await;
    let secret = "s3cret-value-4711";

    for password in [json!([secret]), json!({ "value": secret })] {
        let body = json!({ "email": "ada@example.com", "password": password }).to_string();

        // Act
        let resp = register_raw(&app, &body).await;

        // Assert
        assert_problem_head(&resp, StatusCode::BAD_REQUEST);
        let text = resp.text().await.unwrap();
        assert!(!text.contains(secret), "{text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_problem_body(&problem, StatusCode::BAD_REQUEST);
    }
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn register_does_not_echo_a_password_sent_as_a_number() {
    // Arrange
    let app = spawn_app().await;
    let body = json!({ "email": "ada@example.com", "password": 98765432123_u64 }).to_string();

    // Act
    let resp = register_raw(&app, &body).await;

    // Assert
    assert_problem_head(&resp, StatusCode::BAD_REQUEST);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("98765432123"), "{text}");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_problem_body(&problem, StatusCode::BAD_REQUEST);
    assert_eq!(user_count(&app).await, 0);
}

// ---- one mailbox, one account ----

/// `user@exämple.com`, its domain in IDNA ASCII form.
const FOLDED: &str = "user@xn--exmple-cua.com";

async fn login_subject(app: &TestApp, email: &str) -> String {
    let resp = app.login_response(email, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::OK, "{email}");
    let token = crate::helpers::access_token(resp).await;
    crate::helpers::jwt_parts(&token).1["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn stored_email(app: &TestApp, id: &str) -> String {
    on_sql!(app.sql, |pool| sqlx::query_scalar(
        "SELECT email FROM users WHERE id = $1"
    )
    .bind(Uuid::parse_str(id).unwrap())
    .fetch_one(pool)
    .await)
    .unwrap()
}

#[tokio::test]
async fn an_internationalised_domain_and_its_ascii_form_are_one_account() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let first = app.register("User@Exämple.com", PASSWORD).await;
    let again = app.register(FOLDED, "another password").await;
    // The same, with the `ä` as `a` and a combining diaeresis.
    let decomposed = app.register("user@exa\u{308}mple.com", PASSWORD).await;

    // Assert
    assert_eq!(first.status(), StatusCode::CREATED);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["email"], FOLDED);
    assert_problem(again, StatusCode::CONFLICT).await;
    assert_problem(decomposed, StatusCode::CONFLICT).await;
    assert_eq!(user_count(&app).await, 1);
    let id = body["id"].as_str().unwrap();
    for spelling in ["user@exämple.com", FOLDED, "USER@EXÄMPLE.COM"] {
        assert_eq!(login_subject(&app, spelling).await, id, "{spelling}");
    }
}

#[tokio::test]
async fn a_look_alike_domain_from_another_script_is_another_account() {
    // Arrange
    let app = spawn_app().await;
    let latin = app.register("user@example.com", PASSWORD).await;
    assert_eq!(latin.status(), StatusCode::CREATED);
    let latin: Value = latin.json().await.unwrap();

    // Act: the `а` is U+0430, CYRILLIC SMALL LETTER A.
    let cyrillic = app.register("user@ex\u{430}mple.com", PASSWORD).await;

    // Assert
    assert_eq!(cyrillic.status(), StatusCode::CREATED);
    let cyrillic: Value = cyrillic.json().await.unwrap();
    assert_ne!(cyrillic["id"], latin["id"]);
    let address = cyrillic["email"].as_str().unwrap();
    assert!(address.starts_with("user@xn--"), "{address}");
    assert_ne!(address, FOLDED);
    assert_eq!(
        login_subject(&app, "user@ex\u{430}mple.com").await,
        cyrillic["id"].as_str().unwrap()
    );
    assert_eq!(
        login_subject(&app, "user@example.com").await,
        latin["id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn a_stored_email_an_earlier_version_only_lower_cased_is_folded_at_start() {
    // Arrange: accounts stored as an earlier version stored them.
    let app = spawn_app().await;
    let created: Value = app
        .register("someone@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let uuid = Uuid::parse_str(&id).unwrap();
    app.execute(
        "UPDATE users SET email = 'jo\u{308}rg@exämple.com' WHERE id = $1",
        uuid,
    )
    .await;
    let refused = app.login_response("jörg@exämple.com", PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "not yet folded");

    // Act
    let app = app.restart().await;

    // Assert
    assert_eq!(stored_email(&app, &id).await, "jörg@xn--exmple-cua.com");
    for spelling in [
        "jörg@exämple.com",
        "jo\u{308}rg@xn--exmple-cua.com",
        "JÖRG@EXÄMPLE.COM",
    ] {
        assert_eq!(login_subject(&app, spelling).await, id, "{spelling}");
    }
    // Once folded, a restart changes nothing more.
    let app = app.restart().await;
    assert_eq!(stored_email(&app, &id).await, "jörg@xn--exmple-cua.com");
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn stored_emails_that_fold_to_one_address_are_all_left_as_they_are() {
    // Arrange: one account in folded form, and one of an earlier version
    // whose address folds to the same.
    let app = spawn_app().await;
    let folded: Value = app.register(FOLDED, PASSWORD).await.json().await.unwrap();
    let other: Value = app
        .register("other@example.com", "another password")
        .await
        .json()
        .await
        .unwrap();
    let other_id = other["id"].as_str().unwrap().to_owned();
    app.execute(
        "UPDATE users SET email = 'user@exämple.com' WHERE id = $1",
        Uuid::parse_str(&other_id).unwrap(),
    )
    .await;

    // Act
    let app = app.restart().await;

    // Assert: no account is lost or merged; the folded one keeps its login.
    assert_eq!(user_count(&app).await, 2);
    assert_eq!(stored_email(&app, &other_id).await, "user@exämple.com");
    let folded_id = folded["id"].as_str().unwrap();
    assert_eq!(stored_email(&app, folded_id).await, FOLDED);
    assert_eq!(login_subject(&app, "user@exämple.com").await, folded_id);
}

#[tokio::test]
async fn two_stored_emails_that_fold_to_one_unheld_address_are_both_left_as_they_are() {
    // Arrange: two accounts of an earlier version, the `ä` precomposed in
    // one and decomposed in the other; neither is in folded form.
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for (n, stored) in ["user@exämple.com", "user@exa\u{308}mple.com"]
        .into_iter()
        .enumerate()
    {
        let created: Value = app
            .register(&format!("placeholder{n}@example.com"), PASSWORD)
            .await
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        app.execute(
            &format!("UPDATE users SET email = '{stored}' WHERE id = $1"),
            Uuid::parse_str(&id).unwrap(),
        )
        .await;
        ids.push((id, stored));
    }

    // Act
    let app = app.restart().await;

    // Assert: neither is preferred to the other; both are still there.
    assert_eq!(user_count(&app).await, 2);
    for (id, stored) in &ids {
        assert_eq!(stored_email(&app, id).await, *stored);
    }
    let login = app.login_response(FOLDED, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::BAD_REQUEST);
}
