//! The Todo API: CRUD, validation, pagination, owner isolation and the bearer
//! challenges that guard it.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, field_errors, spawn_app, titles, www_authenticate, TestApp, TestUser,
};

fn time(value: &Value) -> DateTime<FixedOffset> {
    let text = value.as_str().expect("a time is a string");
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"))
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let resp = app.get(token, &format!("/todos{query}")).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET /todos{query}");
    resp.json().await.unwrap()
}

// ---- create ----

#[tokio::test]
async fn create_todo_returns_201_with_location_and_the_todo() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .post(&token, "/todos", json!({ "title": "buy milk" }))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id {id} is a UUID");
    assert_eq!(location, format!("/todos/{id}"));
    assert_eq!(body["title"], "buy milk");
    assert_eq!(body["completed"], false);
    let created = time(&body["created_at"]);
    assert_eq!(created.offset().local_minus_utc(), 0, "times are UTC");
    assert_eq!(time(&body["updated_at"]), created);
    let mut fields: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(
        fields,
        ["completed", "created_at", "id", "title", "updated_at"]
    );

    // The Location header points at the todo just created.
    let fetched = app.get(&token, &location).await;
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.json::<Value>().await.unwrap(), body);
}

#[tokio::test]
async fn create_todo_accepts_completed_true() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .post(
            &token,
            "/todos",
            json!({ "title": "already done", "completed": true }),
        )
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["completed"], true);
}

#[tokio::test]
async fn create_todo_trims_the_title() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .post(
            &token,
            "/todos",
            json!({ "title": "  \t water plants \n " }),
        )
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["title"], "water plants");
}

#[tokio::test]
async fn create_todo_rejects_an_empty_or_blank_title_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for title in ["", "   ", "\t\n"] {
        // Act
        let resp = app.post(&token, "/todos", json!({ "title": title })).await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["title"], "title {title:?}");
    }
    assert!(titles(&list(&app, &token, "").await).is_empty());
}

#[tokio::test]
async fn create_todo_rejects_a_501_character_title_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .post(&token, "/todos", json!({ "title": "x".repeat(501) }))
        .await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["title"]);
    assert!(problem["detail"].as_str().unwrap().contains("title"));
}

#[tokio::test]
async fn create_todo_accepts_a_500_character_title_counted_in_characters() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    // 500 characters but 1000 bytes: the limit counts characters.
    let title = "é".repeat(500);

    // Act
    let resp = app
        .post(&token, "/todos", json!({ "title": format!(" {title} ") }))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["title"], title);
}

// ---- read, update, delete ----

#[tokio::test]
async fn get_todo_returns_the_owner_s_todo() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let todo = app.create_todo(&token, "read a book").await;

    // Act
    let resp = app
        .get(&token, &format!("/todos/{}", todo["id"].as_str().unwrap()))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), todo);
}

#[tokio::test]
async fn get_todo_for_an_unknown_id_is_404() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .get(&token, &format!("/todos/{}", uuid::Uuid::now_v7()))
        .await;

    // Assert
    assert_problem(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn patch_with_only_completed_keeps_the_title_and_moves_updated_at() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let todo = app.create_todo(&token, "write tests").await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());
    // Times are stored to the millisecond; make sure one has passed.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;

    // Act
    let resp = app.patch(&token, &path, json!({ "completed": true })).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], todo["id"]);
    assert_eq!(body["title"], "write tests");
    assert_eq!(body["completed"], true);
    assert_eq!(body["created_at"], todo["created_at"]);
    assert!(time(&body["updated_at"]) > time(&todo["updated_at"]));
    // And it was stored, not only echoed.
    let stored: Value = app.get(&token, &path).await.json().await.unwrap();
    assert_eq!(stored, body);
}

#[tokio::test]
async fn patch_with_only_title_keeps_completed_and_trims() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let created = app
        .post(
            &token,
            "/todos",
            json!({ "title": "draft", "completed": true }),
        )
        .await;
    let todo: Value = created.json().await.unwrap();
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;

    // Act
    let resp = app
        .patch(&token, &path, json!({ "title": "  final  " }))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["title"], "final");
    assert_eq!(body["completed"], true);
    assert!(time(&body["updated_at"]) > time(&todo["updated_at"]));
    let stored: Value = app.get(&token, &path).await.json().await.unwrap();
    assert_eq!(stored, body);
}

#[tokio::test]
async fn patch_rejects_a_blank_or_too_long_title_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let todo = app.create_todo(&token, "keep me").await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());

    for title in ["  ".to_owned(), "y".repeat(501)] {
        // Act
        let resp = app
            .patch(&token, &path, json!({ "title": title, "completed": true }))
            .await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["title"]);
    }
    let stored: Value = app.get(&token, &path).await.json().await.unwrap();
    assert_eq!(stored, todo);
}

/// Titles with a control character inside: a newline, a tab, a terminal
/// escape sequence, a C1 control.
const CONTROLLED: [&str; 4] = [
    "first line\nsecond line",
    "tab\tbed",
    "\u{1b}[31mred\u{1b}[0m",
    "next\u{85}line",
];

#[tokio::test]
async fn create_todo_rejects_a_title_with_a_control_character_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for title in CONTROLLED {
        // Act
        let resp = app.post(&token, "/todos", json!({ "title": title })).await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["title"], "{title:?}");
        let said = problem["errors"][0]["message"].as_str().unwrap();
        assert!(said.contains("control characters"), "{said}");
    }
    assert!(titles(&list(&app, &token, "").await).is_empty());
}

#[tokio::test]
async fn patch_rejects_a_title_with_a_control_character_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let todo = app.create_todo(&token, "keep me").await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());

    for title in CONTROLLED {
        // Act
        let resp = app.patch(&token, &path, json!({ "title": title })).await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["title"], "{title:?}");
    }
    let stored: Value = app.get(&token, &path).await.json().await.unwrap();
    assert_eq!(stored, todo);
}

#[tokio::test]
async fn patch_an_unknown_todo_is_404() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app
        .patch(
            &token,
            &format!("/todos/{}", uuid::Uuid::now_v7()),
            json!({ "completed": true }),
        )
        .await;

    // Assert
    assert_problem(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn delete_todo_returns_204_then_the_todo_is_gone() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let todo = app.create_todo(&token, "throw away").await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());

    // Act
    let resp = app.delete(&token, &path).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_problem(app.get(&token, &path).await, StatusCode::NOT_FOUND).await;
    // A second delete finds nothing to delete.
    assert_problem(app.delete(&token, &path).await, StatusCode::NOT_FOUND).await;
    assert!(titles(&list(&app, &token, "").await).is_empty());
}

// ---- list ----

#[tokio::test]
async fn list_todos_returns_them_oldest_first() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    for title in ["first", "second", "third"] {
        app.create_todo(&token, title).await;
    }

    // Act
    let page = list(&app, &token, "").await;

    // Assert
    assert_eq!(titles(&page), ["first", "second", "third"]);
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn list_todos_filters_by_completed() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    app.create_todo(&token, "open one").await;
    let done = app.create_todo(&token, "done one").await;
    app.create_todo(&token, "open two").await;
    let resp = app
        .patch(
            &token,
            &format!("/todos/{}", done["id"].as_str().unwrap()),
            json!({ "completed": true }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Act
    let completed = list(&app, &token, "?completed=true").await;
    let open = list(&app, &token, "?completed=false").await;
    let all = list(&app, &token, "").await;

    // Assert
    assert_eq!(titles(&completed), ["done one"]);
    assert_eq!(titles(&open), ["open one", "open two"]);
    assert_eq!(titles(&all), ["open one", "done one", "open two"]);
}

#[tokio::test]
async fn list_todos_pages_through_every_todo_exactly_once() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let mut created = Vec::new();
    for i in 0..5 {
        let todo = app.create_todo(&token, &format!("todo {i}")).await;
        created.push(todo["id"].as_str().unwrap().to_owned());
    }

    // Act
    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = list(&app, &token, &query).await;
        let items = page["items"].as_array().unwrap();
        page_sizes.push(items.len());
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
        assert!(page_sizes.len() < 10, "pagination does not end");
    }

    // Assert
    assert_eq!(page_sizes, [2, 2, 1]);
    assert_eq!(seen, created, "every todo once, oldest first");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
}

#[tokio::test]
async fn a_page_that_ends_on_the_last_todo_has_no_next_cursor() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    for i in 0..4 {
        app.create_todo(&token, &format!("todo {i}")).await;
    }

    // Act
    let first = list(&app, &token, "?limit=2").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second = list(&app, &token, &format!("?limit=2&cursor={cursor}")).await;

    // Assert
    assert_eq!(titles(&first), ["todo 0", "todo 1"]);
    assert_eq!(titles(&second), ["todo 2", "todo 3"]);
    assert!(second["next_cursor"].is_null());
}

#[tokio::test]
async fn list_todos_defaults_to_20_per_page() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    for i in 0..21 {
        app.create_todo(&token, &format!("todo {i}")).await;
    }

    // Act
    let page = list(&app, &token, "").await;

    // Assert
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    assert!(page["next_cursor"].is_string());
}

#[tokio::test]
async fn list_todos_rejects_a_limit_out_of_range_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for limit in ["0", "101", "-1"] {
        // Act
        let resp = app.get(&token, &format!("/todos?limit={limit}")).await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["limit"], "limit={limit}");
    }
    // The bounds themselves are accepted.
    list(&app, &token, "?limit=1").await;
    list(&app, &token, "?limit=100").await;
}

#[tokio::test]
async fn list_todos_rejects_a_non_numeric_limit_with_400() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app.get(&token, "/todos?limit=abc").await;

    // Assert
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("limit"),
        "the detail names the parameter: {problem}"
    );
}

#[tokio::test]
async fn list_todos_rejects_a_garbage_cursor_with_422() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for cursor in ["not-a-cursor", "AAAA", "%21%21%21"] {
        // Act
        let resp = app.get(&token, &format!("/todos?cursor={cursor}")).await;

        // Assert
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(field_errors(&problem), ["cursor"], "cursor={cursor}");
    }
}

#[tokio::test]
async fn list_todos_reports_a_bad_limit_and_a_bad_cursor_together() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let resp = app.get(&token, "/todos?limit=0&cursor=nope").await;

    // Assert
    let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["limit", "cursor"]);
}

// ---- isolation ----

#[tokio::test]
async fn another_user_s_todo_is_404_for_get_patch_and_delete() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.user_token().await;
    let bob = app.user_token().await;
    let todo = app.create_todo(&alice, "alice's secret").await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());

    // Act
    let get = app.get(&bob, &path).await;
    let patch = app
        .patch(&bob, &path, json!({ "title": "pwned", "completed": true }))
        .await;
    let delete = app.delete(&bob, &path).await;

    // Assert: 404 exactly as for an id that does not exist, never 403.
    let unknown = app
        .get(&bob, &format!("/todos/{}", uuid::Uuid::now_v7()))
        .await;
    let unknown = assert_problem(unknown, StatusCode::NOT_FOUND).await;
    assert_eq!(assert_problem(get, StatusCode::NOT_FOUND).await, unknown);
    assert_problem(patch, StatusCode::NOT_FOUND).await;
    assert_problem(delete, StatusCode::NOT_FOUND).await;
    // Alice's todo is untouched.
    let stored = app.get(&alice, &path).await;
    assert_eq!(stored.status(), StatusCode::OK);
    assert_eq!(stored.json::<Value>().await.unwrap(), todo);
}

#[tokio::test]
async fn list_todos_shows_only_your_own() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.user_token().await;
    let bob = app.user_token().await;
    app.create_todo(&alice, "alice 1").await;
    app.create_todo(&bob, "bob 1").await;
    app.create_todo(&alice, "alice 2").await;

    // Act
    let alices = list(&app, &alice, "").await;
    let bobs = list(&app, &bob, "").await;

    // Assert
    assert_eq!(titles(&alices), ["alice 1", "alice 2"]);
    assert_eq!(titles(&bobs), ["bob 1"]);
}

// ---- authentication and scopes ----

#[tokio::test]
async fn todos_without_a_token_are_401_with_a_bearer_challenge() {
    // Arrange
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    let path = format!("/todos/{id}");
    let requests = [
        app.request(Method::GET, "/todos", None),
        app.request(Method::POST, "/todos", None)
            .json(&json!({ "title": "x" })),
        app.request(Method::GET, &path, None),
        app.request(Method::PATCH, &path, None)
            .json(&json!({ "completed": true })),
        app.request(Method::DELETE, &path, None),
    ];

    for request in requests {
        // Act
        let resp = request.send().await.unwrap();

        // Assert
        assert_eq!(
            www_authenticate(&resp).as_deref(),
            Some(r#"Bearer realm="latchkey""#)
        );
        assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn todos_with_a_garbage_token_are_401_invalid_token() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get("not.a.jwt", "/todos").await;

    // Assert
    let challenge = www_authenticate(&resp).expect("a bearer challenge");
    assert!(
        challenge.starts_with(r#"Bearer realm="latchkey", error="invalid_token""#),
        "{challenge}"
    );
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_read_only_token_can_list_but_not_create_todos() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let writer = user.login(&app).await;
    let todo = app.create_todo(&writer, "visible").await;
    let resp = app
        .login_form(&user.email, &user.password)
        .scope("todos:read")
        .send()
        .await;
    let reader = crate::helpers::access_token(resp).await;
    let path = format!("/todos/{}", todo["id"].as_str().unwrap());

    // Act
    let listed = app.get(&reader, "/todos").await;
    let created = app
        .post(&reader, "/todos", json!({ "title": "nope" }))
        .await;
    let patched = app
        .patch(&reader, &path, json!({ "completed": true }))
        .await;
    let deleted = app.delete(&reader, &path).await;

    // Assert
    assert_eq!(listed.status(), StatusCode::OK);
    let insufficient =
        r#"Bearer realm="latchkey", error="insufficient_scope", scope="todos:write""#;
    for resp in [created, patched, deleted] {
        assert_eq!(www_authenticate(&resp).as_deref(), Some(insufficient));
        let problem = assert_problem(resp, StatusCode::FORBIDDEN).await;
        assert!(problem["detail"].as_str().unwrap().contains("todos:write"));
    }
    assert_eq!(titles(&list(&app, &writer, "").await), ["visible"]);
}

#[tokio::test]
async fn a_write_only_token_cannot_read_todos() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let resp = app
        .login_form(&user.email, &user.password)
        .scope("todos:write")
        .send()
        .await;
    let writer = crate::helpers::access_token(resp).await;

    // Act
    let created = app.post(&writer, "/todos", json!({ "title": "ok" })).await;
    let listed = app.get(&writer, "/todos").await;

    // Assert
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        www_authenticate(&listed).as_deref(),
        Some(r#"Bearer realm="latchkey", error="insufficient_scope", scope="todos:read""#)
    );
    assert_problem(listed, StatusCode::FORBIDDEN).await;
}
