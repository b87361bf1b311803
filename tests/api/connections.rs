//! What one connection may hold, and for how long: the header, idle and
//! request timeouts, the connection cap, HTTP/2's stream cap, the header
//! size limit, and a graceful shutdown that no slow client can hold up.
//! Each test sets its limit small and drives the server over raw sockets or
//! a raw HTTP/2 client, which do what a misbehaving client does.

use std::{io, time::Duration};

use futures_util::StreamExt;
use h2::Reason;
use hyper::body::Bytes;
use poem::http::{self, StatusCode as H2Status};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{assert_problem, spawn_app_with, TestApp};

/// Longer than any limit a test sets, shorter than any default: a test
/// whose server ignores its limit fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.unwrap()
}

/// Reads until the server closes the connection, keeping what it sent;
/// a reset counts as closing.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server closes the connection within [`PATIENCE`].
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    tokio::time::timeout(PATIENCE, read_to_close(stream))
        .await
        .is_ok()
}

/// One HTTP/1.1 response read off a keep-alive connection: its status and
/// body (the server's answers carry a `content-length`).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if seen.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&seen[end + 4..end + 4 + length]);
                return (status, body.into_owned());
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

const GET_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: latchkey\r\n\r\n";

// ---- the header timeout ----

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off_while_another_is_served() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.header_timeout = Duration::from_millis(500)).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: latchkey\r\nX-Slow: ")
        .await
        .unwrap();

    // Act: a byte every 100 ms, which would take 10 s to finish the header.
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(b"a").await.is_err() {
                return false;
            }
        }
        slow.write_all(b"\r\n\r\n").await.is_ok()
    };
    let (finished, other) = tokio::join!(trickle, app.get_public("/health"));

    // Assert
    assert_eq!(other.status(), StatusCode::OK);
    assert!(!finished, "the trickling client was never cut off");
    let answered = read_to_close(&mut slow).await;
    assert!(
        !String::from_utf8_lossy(&answered).contains(" 200 "),
        "{answered:?}"
    );
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_after_the_header_timeout() {
    // Arrange: an idle timeout far away, so only the header timeout can act.
    let app = spawn_app_with(|c| c.limits.header_timeout = Duration::from_millis(300)).await;

    // Act
    let mut silent = connect(&app).await;

    // Assert
    assert!(closed_by_server(&mut silent).await);
}

// ---- the idle timeout ----

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.idle_timeout = Duration::from_millis(300)).await;
    let mut conn = connect(&app).await;
    conn.write_all(GET_HEALTH).await.unwrap();
    assert_eq!(read_response(&mut conn).await.0, 200);

    // Act: nothing more is sent.
    let closed = closed_by_server(&mut conn).await;

    // Assert
    assert!(closed, "the idle connection is still open");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_until_the_idle_timeout() {
    // Arrange: a header timeout shorter than the pause between requests.
    let app = spawn_app_with(|c| c.limits.header_timeout = Duration::from_millis(200)).await;
    let mut conn = connect(&app).await;
    conn.write_all(GET_HEALTH).await.unwrap();
    assert_eq!(read_response(&mut conn).await.0, 200);

    // Act
    tokio::time::sleep(Duration::from_secs(1)).await;
    conn.write_all(GET_HEALTH).await.unwrap();

    // Assert: the same connection serves the next request.
    assert_eq!(read_response(&mut conn).await.0, 200);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.idle_timeout = Duration::from_millis(300)).await;
    let (mut client, connection) = h2::client::handshake(connect(&app).await).await.unwrap();
    let connection = tokio::spawn(connection);
    let (response, _) = client.send_request(get("/health"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), H2Status::OK);

    // Act: nothing more is sent.
    let closed = tokio::time::timeout(PATIENCE, connection).await;

    // Assert
    assert!(closed.is_ok(), "the idle HTTP/2 connection is still open");
}

// ---- the connection cap ----

#[tokio::test]
async fn idle_sockets_do_not_starve_new_clients() {
    // Arrange: as many sockets as the cap allows, that never send a byte.
    let app = spawn_app_with(|c| {
        c.limits.max_connections = Some(2);
        c.limits.header_timeout = Duration::from_millis(500);
    })
    .await;
    let mut idle = [connect(&app).await, connect(&app).await];

    // Act
    let served = tokio::time::timeout(PATIENCE, app.get_public("/health")).await;

    // Assert
    assert_eq!(
        served.expect("a new client waited for ever").status(),
        StatusCode::OK
    );
    for socket in &mut idle {
        assert!(closed_by_server(socket).await);
    }
}

#[tokio::test]
async fn a_connection_past_the_cap_waits_until_another_closes() {
    // Arrange: one connection allowed, held by a client that was served.
    let app = spawn_app_with(|c| c.limits.max_connections = Some(1)).await;
    let mut first = connect(&app).await;
    first.write_all(GET_HEALTH).await.unwrap();
    assert_eq!(read_response(&mut first).await.0, 200);

    // Act
    let second = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/health"));
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waited = !second.is_finished();
    drop(first);
    let served = tokio::time::timeout(PATIENCE, second).await;

    // Assert
    assert!(waited, "a second connection was served past the cap");
    assert_eq!(
        served
            .expect("the second connection was never served")
            .unwrap()
            .unwrap(),
        StatusCode::OK
    );
}

// ---- HTTP/2 streams ----

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://latchkey{path}"))
        .body(())
        .unwrap()
}

fn create_todo(token: &str) -> http::Request<()> {
    http::Request::post("http://latchkey/todos")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap()
}

#[tokio::test]
async fn http2_streams_past_the_cap_are_refused_while_finished_streams_still_work() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.http2_max_streams = 2).await;
    let token = app.user_token().await;
    let (mut client, connection) = h2::client::Builder::new()
        .initial_max_send_streams(100)
        .handshake::<_, Bytes>(connect(&app).await)
        .await
        .unwrap();

    // Act: three streams opened before the server's settings are read, as
    // a client that ignores them would; the first two hold their bodies.
    let (first, mut first_body) = client.send_request(create_todo(&token), false).unwrap();
    let (_second, _second_body) = client.send_request(create_todo(&token), false).unwrap();
    let (third, _) = client.send_request(get("/health"), true).unwrap();
    tokio::spawn(connection);
    let refused = third.await;
    first_body
        .send_data(Bytes::from(r#"{"title":"held"}"#), true)
        .unwrap();
    let finished = first.await.unwrap();
    let mut client = client.ready().await.unwrap();
    let (next, _) = client.send_request(get("/health"), true).unwrap();
    let next = next.await.unwrap();

    // Assert
    let refusal = refused.expect_err("a stream past the cap was served");
    assert_eq!(refusal.reason(), Some(Reason::REFUSED_STREAM), "{refusal}");
    assert_eq!(finished.status(), H2Status::CREATED);
    assert_eq!(next.status(), H2Status::OK);
}

// ---- the header size limit ----

#[tokio::test]
async fn headers_over_16_kib_are_answered_431_over_http1() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;
    let send = |size: usize| {
        app.request(reqwest::Method::GET, "/health", None)
            .header("x-large", "a".repeat(size))
            .send()
    };

    // Act
    let within = send(12 * 1024).await.unwrap();
    let beyond = send(latchkey::server::MAX_HEADERS_SIZE + 1).await.unwrap();
    let far_beyond = send(350 * 1024).await.unwrap();

    // Assert: the answer comes before the request reaches the app, so it
    // has a status and no body.
    assert_eq!(within.status(), StatusCode::OK);
    for large in [beyond, far_beyond] {
        assert_eq!(large.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(large.bytes().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn headers_over_16_kib_are_answered_431_over_http2() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;
    let (mut client, connection) = h2::client::handshake(connect(&app).await).await.unwrap();
    let mut large = get("/health");
    large.headers_mut().insert(
        "x-large",
        "a".repeat(latchkey::server::MAX_HEADERS_SIZE + 1)
            .parse()
            .unwrap(),
    );

    // Act: sent before the server's settings are read, which would have
    // told the client not to.
    let (large, _) = client.send_request(large, true).unwrap();
    tokio::spawn(connection);
    let large = large.await.unwrap();

    // Assert
    assert_eq!(large.status(), H2Status::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

// ---- the request timeout ----

/// A body that sends `start` and then nothing, never ending.
fn stalled_body(start: &'static str) -> reqwest::Body {
    let start = futures_util::stream::once(async move { Ok::<_, io::Error>(Bytes::from(start)) });
    reqwest::Body::wrap_stream(start.chain(futures_util::stream::pending()))
}

#[tokio::test]
async fn a_request_that_outlives_the_request_timeout_is_a_503_problem() {
    // Arrange: long enough for the registration and login (argon2, on a
    // busy machine) the token takes; the stalled body never finishes anyway.
    let app = spawn_app_with(|c| c.limits.request_timeout = Duration::from_secs(3)).await;
    let token = app.user_token().await;

    // Act: a body sent slowly enough never to finish in time.
    let resp = app
        .request(reqwest::Method::POST, "/todos", Some(&token))
        .header("content-type", "application/json")
        .body(stalled_body(r#"{"title": "#))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.headers()["retry-after"], "5");
    let problem = assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("took longer"),
        "{problem}"
    );
    let page: Value = app.get(&token, "/todos").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]), "{page}");
}

#[tokio::test]
async fn a_token_request_that_outlives_the_request_timeout_is_an_oauth_503() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.request_timeout = Duration::from_millis(300)).await;

    // Act
    let resp = app
        .request(reqwest::Method::POST, "/auth/token", None)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(stalled_body("grant_type=client_credentials&client_secret="))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("took longer"));
}

// ---- graceful shutdown ----

#[tokio::test]
async fn a_half_sent_request_does_not_hold_up_a_graceful_shutdown() {
    // Arrange: a client stopped in the middle of its headers, accepted.
    let mut app = spawn_app_with(|c| c.limits.header_timeout = Duration::from_millis(500)).await;
    let mut half = connect(&app).await;
    half.write_all(b"GET /health HTTP/1.1\r\nHost: lat")
        .await
        .unwrap();
    assert_eq!(app.get_public("/health").await.status(), StatusCode::OK);

    // Act
    let stopped = tokio::time::timeout(PATIENCE, app.stop()).await;

    // Assert: well before the 30 s drain timeout.
    assert!(
        stopped.is_ok(),
        "the server waited for the half-sent request"
    );
    assert!(closed_by_server(&mut half).await);
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_begins_is_still_answered() {
    // Arrange: a request whose headers are in and whose body is not.
    let mut app = spawn_app_with(|_| {}).await;
    let token = app.user_token().await;
    let body = r#"{"title": "finished during the drain"}"#;
    let mut conn = connect(&app).await;
    let head = format!(
        "POST /todos HTTP/1.1\r\nHost: latchkey\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act
    app.begin_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.write_all(&body.as_bytes()[5..]).await.unwrap();
    let (status, answer) = read_response(&mut conn).await;

    // Assert
    assert_eq!(status, 201, "{answer}");
    assert!(answer.contains("finished during the drain"), "{answer}");
    assert!(closed_by_server(&mut conn).await);
    app.stop().await;
}
