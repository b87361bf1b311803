//! The framework's own rejections (unknown route, wrong method, bad JSON, wrong
//! content type, bad path parameter, oversized body) come back as RFC 9457
//! problems like the handlers' errors, and nothing leaks internals.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use reqwest::{header::CONTENT_TYPE, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem_body, assert_problem_head, field_errors, spawn_app};

/// Text that must never reach a client: SQL, the database driver, a panic.
const LEAKS: [&str; 5] = ["sqlx", "SELECT", "panicked", "sqlite", "postgres"];

/// The request body limit the server documents (64 KiB).
const LIMIT: usize = 64 * 1024;

fn assert_no_leak(text: &str) {
    for leak in LEAKS {
        assert!(
            !text.to_lowercase().contains(&leak.to_lowercase()),
            "the response mentions {leak:?}: {text}"
        );
    }
}

/// Asserts an RFC 9457 problem with `status` that leaks nothing; returns it.
async fn problem(resp: Response, status: StatusCode) -> Value {
    assert_problem_head(&resp, status);
    // The text as sent, not as parsed: a leak may sit anywhere in it.
    let text = resp.text().await.unwrap();
    assert_no_leak(&text);
    let body: Value = serde_json::from_str(&text).expect("a problem is JSON");
    check_problem_body(&body, status);
    body
}

/// The framework's own rejections are held to more than any problem: the
/// standard reason phrase, and a detail that helps.
fn check_problem_body(body: &Value, status: StatusCode) {
    assert_problem_body(body, status);
    assert_eq!(
        body["title"],
        status.canonical_reason().unwrap(),
        "the title is the reason phrase: {body}"
    );
    let detail = body["detail"].as_str().expect("a detail");
    assert!(detail.len() > 10, "the detail says something: {body}");
}

/// A response read off a raw HTTP/1.1 connection.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` and then each of `chunks` as written, on a plain TCP
/// connection, and reads the response to the end. reqwest always frames a body
/// itself; this lets a test choose chunked encoding or no framing at all.
/// Write errors are ignored: a server may answer (and close) before it has
/// read everything, which is what a size limit is for.
async fn raw_request(addr: SocketAddr, head: String, chunks: Vec<Vec<u8>>) -> RawResponse {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(head.as_bytes());
        for chunk in chunks {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
        let mut raw = Vec::new();
        // A reset after the response was sent still leaves the response read.
        let _ = stream.read_to_end(&mut raw);
        parse_response(&raw)
    })
    .await
    .unwrap()
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn chunked(data: &[u8], chunk_size: usize) -> Vec<Vec<u8>> {
    let mut chunks: Vec<Vec<u8>> = data
        .chunks(chunk_size)
        .map(|c| {
            let mut framed = format!("{:x}\r\n", c.len()).into_bytes();
            framed.extend_from_slice(c);
            framed.extend_from_slice(b"\r\n");
            framed
        })
        .collect();
    chunks.push(b"0\r\n\r\n".to_vec());
    chunks
}

// ---- routing ----

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get_public("/no/such/thing").await;

    // Assert
    let body = problem(resp, StatusCode::NOT_FOUND).await;
    assert!(body["detail"].as_str().unwrap().contains("/no/such/thing"));
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem() {
    // Arrange
    let app = spawn_app().await;

    for (method, path) in [
        (Method::PUT, "/todos"),
        (Method::DELETE, "/users"),
        (Method::GET, "/auth/token"),
        (Method::POST, "/health"),
    ] {
        // Act
        let resp = app
            .request(method.clone(), path, None)
            .send()
            .await
            .unwrap();

        // Assert
        let body = problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains(path) && detail.contains(method.as_str()),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn a_405_lists_the_allowed_methods_in_allow() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .request(Method::PUT, "/todos", None)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = resp
        .headers()
        .get("allow")
        .expect("RFC 9110: a 405 must carry Allow")
        .to_str()
        .unwrap();
    let mut methods: Vec<_> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["GET", "POST"]);
}

// ---- bodies ----

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for (path, auth) in [("/users", None), ("/todos", Some(token.as_str()))] {
        // Act
        let resp = app
            .request(Method::POST, path, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"title": "unterminated"#)
            .send()
            .await
            .unwrap();

        // Assert
        problem(resp, StatusCode::BAD_REQUEST).await;
    }
    // Nothing was created.
    let page: Value = app.get(&token, "/todos").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_400_problem_that_does_not_echo_the_value() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let missing = app.post(&token, "/todos", json!({ "done": true })).await;
    let wrong_type = app
        .request(Method::POST, "/users", None)
        .json(&json!({ "email": "x@example.com", "password": { "pw": "hunter2hunter2" } }))
        .send()
        .await
        .unwrap();
    let not_an_object = app.post(&token, "/todos", json!(["title"])).await;

    // Assert
    problem(missing, StatusCode::BAD_REQUEST).await;
    let body = problem(wrong_type, StatusCode::BAD_REQUEST).await;
    assert!(
        !body.to_string().contains("hunter2hunter2"),
        "a value sent in the wrong field may be a secret: {body}"
    );
    problem(not_an_object, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_missing_or_mistyped_field_is_named_in_the_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    // Act
    let missing = app.post(&token, "/todos", json!({ "done": true })).await;
    let mistyped = app.post(&token, "/todos", json!({ "title": ["a"] })).await;

    // Assert
    for resp in [missing, mistyped] {
        let body = problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(
            body["detail"].as_str().unwrap().contains("title"),
            "the detail should name the field: {body}"
        );
        assert_eq!(field_errors(&body), ["title"], "{body}");
    }
}

#[tokio::test]
async fn a_wrong_content_type_is_a_415_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let body = r#"{"title": "hello"}"#;

    for content_type in ["text/plain", "application/xml"] {
        // Act
        let resp = app
            .request(Method::POST, "/todos", Some(&token))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();

        // Assert
        problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    // No content type at all.
    let resp = app
        .request(Method::POST, "/todos", Some(&token))
        .body(body)
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

// ---- parameters ----

#[tokio::test]
async fn a_non_uuid_id_in_the_path_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for path in ["/todos/not-a-uuid", "/todos/123", "/keys/abc"] {
        // Act
        let resp = app.get(&token, path).await;

        // Assert
        let body = problem(resp, StatusCode::BAD_REQUEST).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("UUID"), "{path}: {detail}");
    }
    let resp = app
        .patch(&token, "/todos/nope", json!({ "completed": true }))
        .await;
    problem(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_query_parameter_of_the_wrong_type_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for query in [
        "limit=abc",
        "limit=99999999999999999999999",
        "completed=maybe",
    ] {
        // Act
        let resp = app.get(&token, &format!("/todos?{query}")).await;

        // Assert
        problem(resp, StatusCode::BAD_REQUEST).await;
    }
}

// ---- size limit ----

#[tokio::test]
async fn a_body_over_64_kib_with_content_length_is_a_413_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let title = "x".repeat(LIMIT);
    let body = json!({ "title": title }).to_string();
    assert!(body.len() > LIMIT);

    // Act
    let resp = app
        .request(Method::POST, "/todos", Some(&token))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();

    // Assert
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    // Arrange
    let app = spawn_app().await;
    let head = format!(
        "POST /users HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        app.addr,
        LIMIT + 1
    );

    // Act: only the head; the server must not wait for the body.
    let resp = raw_request(app.addr, head, Vec::new()).await;

    // Assert
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    let body: Value = serde_json::from_str(&resp.body).unwrap();
    check_problem_body(&body, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_is_a_413_problem() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let body = json!({ "title": "x".repeat(2 * LIMIT) }).to_string();
    let head = format!(
        "POST /todos HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        app.addr
    );

    // Act
    let resp = raw_request(app.addr, head, chunked(body.as_bytes(), 8 * 1024)).await;

    // Assert
    assert_eq!(resp.status, 413, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    assert_no_leak(&resp.body);
    let body: Value = serde_json::from_str(&resp.body).unwrap();
    check_problem_body(&body, StatusCode::PAYLOAD_TOO_LARGE);
    let page: Value = app.get(&token, "/todos").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
}

/// Every operation of the served spec that takes a body, as (method, path
/// with a fresh id in it, documented responses).
fn operations_with_a_body(spec: &Value) -> Vec<(Method, String, Value)> {
    let mut found = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                let path = template.replace("{id}", &uuid::Uuid::now_v7().to_string());
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                found.push((method, path, op["responses"].clone()));
            }
        }
    }
    found
}

/// The media type a documented response's body has.
fn documented_media_type(response: &Value) -> &str {
    response["content"]
        .as_object()
        .and_then(|content| content.keys().next())
        .map_or("", |media| media.split(';').next().unwrap())
}

#[tokio::test]
async fn every_operation_that_takes_a_body_answers_an_oversized_one_with_its_documented_413() {
    // Arrange
    let app = spawn_app().await;
    let spec: Value = app.get_public("/openapi.json").await.json().await.unwrap();
    let body = format!(r#"{{"title": "{}"}}"#, "x".repeat(LIMIT));

    for (method, path, documented) in operations_with_a_body(&spec) {
        // Act: no token, as the limit comes before anything else.
        let resp = app
            .request(method.clone(), &path, None)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();

        // Assert
        let media_type = documented_media_type(&documented["413"]);
        assert_eq!(
            resp.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}"
        );
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(media_type),
            "{method} {path}: documented {media_type}, sent {:?}",
            resp.headers()["content-type"]
        );
        if media_type == "application/problem+json" {
            problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
        } else {
            // RFC 6749 §5.2, as every answer of the OAuth endpoints.
            assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
            let error: Value = resp.json().await.unwrap();
            assert_eq!(error["error"], "invalid_request", "{path}: {error}");
            assert!(
                error["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("64 KiB"),
                "{path}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn every_operation_that_takes_a_json_body_answers_another_content_type_with_its_documented_415(
) {
    // Arrange: a token with every scope, so each reaches its body.
    let app = spawn_app().await;
    let admin = app.admin().await;
    let spec: Value = app.get_public("/openapi.json").await.json().await.unwrap();

    for (method, path, documented) in operations_with_a_body(&spec) {
        // Act
        let resp = app
            .request(method.clone(), &path, Some(&admin.token))
            .header(CONTENT_TYPE, "text/plain")
            .body(r#"{"title": "hello"}"#)
            .send()
            .await
            .unwrap();

        // Assert
        if documented.get("415").is_some() {
            problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        } else {
            // The OAuth endpoints take forms as well: a wrong type is RFC 6749's.
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{method} {path}");
            let error: Value = resp.json().await.unwrap();
            assert_eq!(error["error"], "invalid_request", "{path}: {error}");
        }
    }
}

#[tokio::test]
async fn a_chunked_body_under_the_limit_reaches_the_handler_intact() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let title = "chunked ".repeat(60);
    let body = json!({ "title": title }).to_string();
    let head = format!(
        "POST /todos HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        app.addr
    );

    // Act
    let resp = raw_request(app.addr, head, chunked(body.as_bytes(), 100)).await;

    // Assert
    assert_eq!(resp.status, 201, "{}", resp.body);
    let created: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(created["title"], title.trim());
    let location = resp.header("location").unwrap();
    assert_eq!(
        location,
        format!("/todos/{}", created["id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn a_get_without_a_body_or_content_length_works() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    app.create_todo(&token, "listed").await;
    let head = format!(
        "GET /todos HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n",
        app.addr
    );

    // Act
    let resp = raw_request(app.addr, head, Vec::new()).await;

    // Assert
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let page: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(page["items"][0]["title"], "listed");
}

// ---- odd but valid input ----

#[tokio::test]
async fn titles_with_quotes_sql_and_any_script_are_stored_verbatim() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;

    for title in [
        "'; DROP TABLE todos; --",
        "Robert\"); SELECT * FROM users; --",
        "no-break\u{a0}space and 👩\u{200d}💻 joined",
        "emoji 🦀 and ünïcödé",
    ] {
        // Act
        let resp = app.post(&token, "/todos", json!({ "title": title })).await;

        // Assert
        assert_eq!(resp.status(), StatusCode::CREATED, "{title:?}");
        let todo: Value = resp.json().await.unwrap();
        assert_eq!(todo["title"], title);
        let fetched: Value = app
            .get(&token, &format!("/todos/{}", todo["id"].as_str().unwrap()))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(fetched["title"], title);
    }
    let page: Value = app.get(&token, "/todos").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_nul_character_in_stored_text_is_a_422_naming_its_field_on_every_backend() {
    // Arrange: PostgreSQL's text cannot hold NUL, so neither backend takes it.
    let app = spawn_app().await;
    let token = app.user_token().await;
    let todo = app.create_todo(&token, "kept").await;

    // Act
    let created = app
        .post(&token, "/todos", json!({ "title": "nul \u{0} inside" }))
        .await;
    let updated = app
        .patch(
            &token,
            &format!("/todos/{}", todo["id"].as_str().unwrap()),
            json!({ "title": "\u{0}" }),
        )
        .await;
    let key = app
        .create_key_response(&token, json!({ "name": "nul \u{0}" }))
        .await;
    let registered = app
        .register("nul\u{0}@example.com", "correct horse battery")
        .await;

    // Assert
    for (resp, field) in [
        (created, "title"),
        (updated, "title"),
        (key, "name"),
        (registered, "email"),
    ] {
        assert_problem_head(&resp, StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(field_errors(&problem), [field], "{problem}");
    }
    let page: Value = app.get(&token, "/todos").await.json().await.unwrap();
    assert_eq!(crate::helpers::titles(&page), ["kept"]);
}
