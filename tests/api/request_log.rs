//! Every request's `X-Request-Id`, and the one line each request leaves in
//! the log: with its id, and with no key, password or token of the run.

use reqwest::{header::HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{postgres_server, spawn_app, PgDatabase, ServerProcess, TestApp, PASSWORD};

/// A success, a 404, a 401 and an RFC 6749 error, each sent with `id` (if
/// any) as its `X-Request-Id`.
async fn four_answers(app: &TestApp, id: Option<&[u8]>) -> Vec<(StatusCode, Option<String>)> {
    let requests = [
        app.request(Method::GET, "/health", None),
        app.request(Method::GET, "/no/such/route", None),
        app.request(Method::GET, "/me", None),
        app.request(Method::POST, "/auth/token", None)
            .form(&[("grant_type", "password")]),
    ];
    let mut answers = Vec::new();
    for request in requests {
        let request = match id {
            Some(id) => request.header("x-request-id", HeaderValue::from_bytes(id).unwrap()),
            None => request,
        };
        answers.push(answered(request.send().await.unwrap()));
    }
    answers
}

fn answered(resp: Response) -> (StatusCode, Option<String>) {
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status(), id)
}

const STATUSES: [StatusCode; 4] = [
    StatusCode::OK,
    StatusCode::NOT_FOUND,
    StatusCode::UNAUTHORIZED,
    StatusCode::BAD_REQUEST,
];

fn assert_uuid_v7(id: &str) {
    let uuid = Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id} is not a UUID: {e}"));
    assert_eq!(uuid.get_version_num(), 7, "{id}");
}

#[tokio::test]
async fn a_request_id_of_visible_ascii_up_to_128_characters_is_echoed_on_every_answer() {
    // Arrange
    let app = spawn_app().await;
    let longest = "x".repeat(128);

    for sent in ["req-7f3a", "~a!b#c$d%e&f'g*h+i.j^k_l`m|n", longest.as_str()] {
        // Act
        let answers = four_answers(&app, Some(sent.as_bytes())).await;

        // Assert
        for ((status, id), expected) in answers.into_iter().zip(STATUSES) {
            assert_eq!(status, expected);
            assert_eq!(id.as_deref(), Some(sent), "on a {status}");
        }
    }
}

#[tokio::test]
async fn an_over_long_or_invisible_request_id_is_replaced_with_a_new_one() {
    // Arrange
    let app = spawn_app().await;
    let too_long = "x".repeat(129);

    for sent in [too_long.as_bytes(), b"has space", b"tab\there", b"caf\xe9"] {
        // Act
        let answers = four_answers(&app, Some(sent)).await;

        // Assert
        for ((status, id), expected) in answers.into_iter().zip(STATUSES) {
            assert_eq!(status, expected);
            let id = id.unwrap_or_else(|| panic!("a {status} carries an id"));
            assert_uuid_v7(&id);
        }
    }
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_new_one_on_every_answer() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let answers = four_answers(&app, None).await;

    // Assert
    let mut seen = Vec::new();
    for ((status, id), expected) in answers.into_iter().zip(STATUSES) {
        assert_eq!(status, expected);
        let id = id.unwrap_or_else(|| panic!("a {status} carries an id"));
        assert_uuid_v7(&id);
        assert!(!seen.contains(&id), "{id} is given twice");
        seen.push(id);
    }
}

/// The binary's log, read whole: each request leaves exactly one line
/// (target `request`) with its id, method, route template, status, duration
/// and client address; and no line anywhere holds the run's password, key or
/// tokens, though they travelled in bodies, Basic auth, bearer headers and a
/// query string.
#[tokio::test]
async fn each_request_leaves_one_log_line_with_its_id_and_no_secret_anywhere() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let database = match postgres_server() {
        Some(server) => Some(PgDatabase::create(&server).await),
        None => None,
    };
    let server = ServerProcess::start(
        &dir.path().join("data"),
        database.as_ref().map(|d| d.url.as_str()),
        &[],
    )
    .await;
    let client = reqwest::Client::new();
    let email = format!("log-{}@example.com", Uuid::now_v7().simple());
    let mut sent = Vec::new();
    let mut send = async |request: reqwest::RequestBuilder| {
        let resp = request.send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        sent.push((id, status));
        body
    };

    // Act
    send(
        client
            .post(server.url("/users"))
            .json(&json!({ "email": email, "password": PASSWORD })),
    )
    .await;
    let login = client.post(server.url("/auth/token")).form(&[
        ("grant_type", "password"),
        ("username", &email),
        ("password", PASSWORD),
    ]);
    let login = send(login).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = send(
        client
            .post(server.url("/keys"))
            .bearer_auth(&login)
            .json(&json!({ "name": "ci" })),
    )
    .await;
    let (key_id, key) = (
        key["id"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    );
    let exchange = client
        .post(server.url("/auth/token"))
        .basic_auth(&key_id, Some(&key))
        .form(&[("grant_type", "client_credentials")]);
    let token = send(exchange).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    send(
        client
            .get(server.url(&format!("/todos?cursor={token}")))
            .bearer_auth(&token),
    )
    .await;
    send(
        client
            .get(server.url("/me"))
            .bearer_auth(format!("{token}x")),
    )
    .await;
    send(client.get(server.url(&format!("/{key}")))).await;
    send(
        client
            .get(server.url("/me"))
            .header("x-request-id", "chosen-by-the-client"),
    )
    .await;
    let log = server.kill_and_read_log();

    // Assert
    let lines: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["target"] == "request").collect();
    assert_eq!(requests.len(), sent.len(), "{log:#?}");
    for (id, status) in &sent {
        let mine: Vec<&&Value> = requests
            .iter()
            .filter(|l| l["fields"]["request_id"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "one line for request {id}: {log:#?}");
        let fields = &mine[0]["fields"];
        assert_eq!(fields["status"], status.as_u16(), "{fields}");
        assert_eq!(fields["client"], "127.0.0.1", "{fields}");
        assert!(fields["method"].is_string(), "{fields}");
        assert!(fields["route"].is_string(), "{fields}");
        assert!(fields["duration_ms"].as_f64().unwrap() >= 0.0, "{fields}");
    }
    let routes: Vec<&str> = requests
        .iter()
        .map(|l| l["fields"]["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        [
            "/users",
            "/auth/token",
            "/keys",
            "/auth/token",
            "/todos",
            "/me",
            "unmatched",
            "/me"
        ]
    );
    assert_eq!(sent.last().unwrap().0, "chosen-by-the-client");
    let whole = log.join("\n");
    for (what, secret) in [
        ("password", PASSWORD),
        ("key", key.as_str()),
        ("login token", login.as_str()),
        ("token", token.as_str()),
    ] {
        assert!(
            !whole.contains(secret),
            "the {what} is in the log:\n{whole}"
        );
    }
}
