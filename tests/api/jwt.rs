//! Access tokens: their shape (RFC 9068), `GET /me`, and forged or broken
//! tokens against the bearer-protected API (RFC 6750).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_problem, jwt_parts, kid_of, spawn_app, spawn_app_with, with_metrics, www_authenticate,
    TestApp, TestUser,
};

const SECRET: &str = "an-hs256-secret-for-tests-0123456789abcdef";
const ISSUER: &str = "http://issuer.test";

/// An app whose signing secret and issuer the test knows, with its metrics.
async fn spawn_app_with_known_secret() -> TestApp {
    spawn_app_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.issuer = Some(ISSUER.into());
        with_metrics(c);
    })
    .await
}

fn encode_segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Signs `claims` with the header the server uses, but the given algorithm and secret.
fn sign(claims: &Value, alg: Algorithm, secret: &[u8], kid: &str) -> String {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// The claims of a real token, re-dated to now, ready to be changed and re-signed.
fn fresh_claims(real: &str) -> Value {
    let (_, mut claims) = jwt_parts(real);
    let now = Utc::now().timestamp();
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 60);
    claims["jti"] = json!(Uuid::now_v7());
    claims
}

/// Asserts an RFC 6750 `invalid_token` answer with a problem+json body.
async fn assert_invalid_token(resp: Response) {
    let challenge = www_authenticate(&resp).expect("a WWW-Authenticate header");
    assert!(
        challenge.starts_with(r#"Bearer realm="latchkey""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;
}

/// Sends `token` to both a read-only endpoint and the Todo API: each must refuse it.
async fn assert_refused_everywhere(app: &TestApp, token: &str) {
    assert_invalid_token(app.get(token, "/me").await).await;
    assert_invalid_token(app.get(token, "/todos").await).await;
}

// ---- a token's shape ----

#[tokio::test]
async fn an_access_token_is_an_rfc_9068_jwt() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let token = user.login(&app).await;

    // Assert
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "at+jwt");
    assert!(!header["kid"].as_str().unwrap().is_empty());
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["aud"], "latchkey");
    assert_eq!(claims["sub"], user.id.to_string());
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - Utc::now().timestamp()).abs() <= 5, "{iat}");
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 60);
    Uuid::parse_str(claims["jti"].as_str().unwrap()).expect("jti is a UUID");
    assert_eq!(claims["client_id"], "password");
    assert_eq!(claims["scope"], "todos:read todos:write keys:manage");
    assert_eq!(claims["role"], "user");
}

#[tokio::test]
async fn each_token_has_its_own_jti() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let first = user.login(&app).await;
    let second = user.login(&app).await;

    // Assert
    assert_ne!(jwt_parts(&first).1["jti"], jwt_parts(&second).1["jti"]);
}

// ---- GET /me ----

#[tokio::test]
async fn me_returns_a_login_token_s_claims() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let token = user.login(&app).await;

    // Act
    let resp = app.get(&token, "/me").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let me: Value = resp.json().await.unwrap();
    let mut fields: Vec<&str> = me.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "client_id",
            "expires_at",
            "issued_at",
            "role",
            "scopes",
            "user_id"
        ]
    );
    assert_eq!(me["user_id"], user.id.to_string());
    assert_eq!(me["role"], "user");
    assert_eq!(
        me["scopes"],
        json!(["todos:read", "todos:write", "keys:manage"])
    );
    assert_eq!(me["client_id"], "password");
    let issued_at: DateTime<Utc> = me["issued_at"].as_str().unwrap().parse().unwrap();
    let expires_at: DateTime<Utc> = me["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires_at - issued_at).num_seconds(), 60);
    assert!((issued_at - Utc::now()).num_seconds().abs() <= 5);
    let (_, claims) = jwt_parts(&token);
    assert_eq!(issued_at.timestamp(), claims["iat"].as_i64().unwrap());
}

#[tokio::test]
async fn me_names_the_key_a_token_came_from() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let key = app
        .create_key(&token, json!({ "name": "ci", "scopes": ["todos:read"] }))
        .await;
    let key_token = app.exchange(&key).await;

    // Act
    let resp = app.get(&key_token, "/me").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["client_id"], key.id);
    assert_eq!(me["scopes"], json!(["todos:read"]));
    assert_eq!(me["role"], "user");
}

// ---- missing token and missing scope ----

#[tokio::test]
async fn a_request_without_a_token_gets_a_bare_bearer_challenge() {
    // Arrange
    let app = spawn_app().await;

    for path in ["/me", "/todos", "/keys"] {
        // Act
        let resp = app.get_public(path).await;

        // Assert
        assert_eq!(
            www_authenticate(&resp).as_deref(),
            Some(r#"Bearer realm="latchkey""#),
            "{path}"
        );
        assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn a_token_without_the_needed_scope_gets_insufficient_scope() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let resp = app
        .login_form(&user.email, &user.password)
        .scope("todos:read")
        .send()
        .await;
    let read_only = crate::helpers::access_token(resp).await;

    // Act
    let resp = app
        .post(&read_only, "/todos", json!({ "title": "buy milk" }))
        .await;

    // Assert
    let challenge = www_authenticate(&resp).expect("a WWW-Authenticate header");
    assert!(
        challenge.starts_with(r#"Bearer realm="latchkey""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.contains(r#"scope="todos:write""#), "{challenge}");
    let problem = assert_problem(resp, StatusCode::FORBIDDEN).await;
    assert!(problem["detail"].as_str().unwrap().contains("todos:write"));
    let list = app.get(&read_only, "/todos").await;
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(list.json::<Value>().await.unwrap()["items"], json!([]));
}

// ---- forged and broken tokens ----

#[tokio::test]
async fn a_hand_signed_token_with_the_real_secret_is_accepted() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let claims = fresh_claims(&real);
    assert_eq!(claims["iss"], ISSUER);
    let forged = sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real));

    // Act
    let me = app.get(&forged, "/me").await;
    let todos = app.get(&forged, "/todos").await;

    // Assert
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["user_id"], claims["sub"]);
    assert_eq!(todos.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_secret_file_signs_the_tokens_with_its_secret_less_the_trailing_newline() {
    // Arrange: the file as `openssl rand -base64 48 > file` writes it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt-secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let app = spawn_app_with(|c| {
        c.jwt_secret_file = Some(path);
        c.issuer = Some(ISSUER.into());
    })
    .await;
    let real = app.user_token().await;
    let claims = fresh_claims(&real);
    let with_secret = sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real));
    let with_newline = format!("{SECRET}\n");
    let with_file_bytes = sign(
        &claims,
        Algorithm::HS256,
        with_newline.as_bytes(),
        &kid_of(&real),
    );

    // Act
    let issued = app.get(&real, "/me").await;
    let hand_signed = app.get(&with_secret, "/me").await;

    // Assert
    assert_eq!(issued.status(), StatusCode::OK);
    assert_eq!(hand_signed.status(), StatusCode::OK);
    assert_refused_everywhere(&app, &with_file_bytes).await;
}

#[tokio::test]
async fn a_token_with_alg_none_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let header = json!({ "alg": "none", "typ": "at+jwt", "kid": kid_of(&real) });
    let claims = fresh_claims(&real);
    let unsigned = format!("{}.{}.", encode_segment(&header), encode_segment(&claims));

    // Act and Assert
    assert_refused_everywhere(&app, &unsigned).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let forged = sign(
        &fresh_claims(&real),
        Algorithm::HS256,
        b"not-the-server-secret-but-just-as-long-0123",
        &kid_of(&real),
    );

    // Act and Assert
    assert_refused_everywhere(&app, &forged).await;
}

#[tokio::test]
async fn a_token_signed_with_hs512_and_the_right_secret_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let forged = sign(
        &fresh_claims(&real),
        Algorithm::HS512,
        SECRET.as_bytes(),
        &kid_of(&real),
    );

    // Act and Assert
    assert_refused_everywhere(&app, &forged).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let mut claims = fresh_claims(&real);
    let ten_minutes_ago = Utc::now().timestamp() - 600;
    claims["iat"] = json!(ten_minutes_ago - 60);
    claims["exp"] = json!(ten_minutes_ago);
    let expired = sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real));

    // Act
    let resp = app.get(&expired, "/me").await;

    // Assert
    let challenge = www_authenticate(&resp).unwrap();
    assert!(challenge.contains("expired"), "{challenge}");
    assert_invalid_token(resp).await;
    assert_refused_everywhere(&app, &expired).await;
    let expired = r#"latchkey_token_verifications_total{outcome="expired"}"#;
    assert_eq!(app.scrape().await.value(expired), 3.0);
}

#[tokio::test]
async fn a_token_expired_beyond_the_leeway_is_refused() {
    // Arrange: the library's default leeway is 60 s; the server's must be a few seconds.
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let mut claims = fresh_claims(&real);
    let now = Utc::now().timestamp();
    claims["iat"] = json!(now - 90);
    claims["exp"] = json!(now - 30);
    let expired = sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real));

    // Act and Assert
    assert_refused_everywhere(&app, &expired).await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_beyond_the_leeway_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let now = Utc::now().timestamp();
    let at = |iat: i64| {
        let mut claims = fresh_claims(&real);
        claims["iat"] = json!(iat);
        claims["exp"] = json!(iat + 60);
        sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real))
    };
    let skewed = at(now + 2);
    let future = at(now + 120);

    // Act
    let resp = app.get(&future, "/me").await;

    // Assert: a skew within the leeway passes; a minute beyond it does not.
    assert_eq!(app.get(&skewed, "/me").await.status(), StatusCode::OK);
    let challenge = www_authenticate(&resp).unwrap();
    assert!(challenge.contains("invalid"), "{challenge}");
    let problem = assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not valid yet"),
        "{problem}"
    );
    assert_refused_everywhere(&app, &future).await;
}

#[tokio::test]
async fn a_token_whose_nbf_lies_in_the_future_beyond_the_leeway_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let now = Utc::now().timestamp();
    let starting = |nbf: i64| {
        let mut claims = fresh_claims(&real);
        claims["nbf"] = json!(nbf);
        sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real))
    };
    let started = starting(now - 1);
    let skewed = starting(now + 2);
    let later = starting(now + 30);

    // Act and Assert
    assert_eq!(app.get(&started, "/me").await.status(), StatusCode::OK);
    assert_eq!(app.get(&skewed, "/me").await.status(), StatusCode::OK);
    assert_refused_everywhere(&app, &later).await;
}

#[tokio::test]
async fn a_token_living_longer_than_the_configured_lifetime_is_refused() {
    // Arrange: tokens of five minutes.
    let app = spawn_app_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.issuer = Some(ISSUER.into());
        c.token_ttl = std::time::Duration::from_secs(300);
    })
    .await;
    let real = app.user_token().await;
    let now = Utc::now().timestamp();
    let living = |iat: i64, exp: i64| {
        let mut claims = fresh_claims(&real);
        claims["iat"] = json!(iat);
        claims["exp"] = json!(exp);
        sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real))
    };
    let (iat, exp) = {
        let (_, claims) = jwt_parts(&real);
        (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        )
    };
    assert_eq!(exp - iat, 300, "the server issues five-minute tokens");

    // Act and Assert: the lifetime passes, a second more does not, nor does
    // a long-lived token back-dated to look young.
    let whole = living(now, now + 300);
    assert_eq!(app.get(&whole, "/me").await.status(), StatusCode::OK);
    assert_refused_everywhere(&app, &living(now, now + 301)).await;
    assert_refused_everywhere(&app, &living(now - 3600, now + 60)).await;
    let day = living(now, now + 86_400);
    let resp = app.get(&day, "/todos").await;
    let problem = assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("longer life"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let mut claims = fresh_claims(&real);
    claims["aud"] = json!("another-service");
    let forged = sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real));

    // Act and Assert
    assert_refused_everywhere(&app, &forged).await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let mut claims = fresh_claims(&real);
    claims["iss"] = json!("http://evil.test");
    let forged = sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real));

    // Act and Assert
    assert_refused_everywhere(&app, &forged).await;
}

#[tokio::test]
async fn a_token_without_sub_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let mut claims = fresh_claims(&real);
    claims.as_object_mut().unwrap().remove("sub");
    let forged = sign(&claims, Algorithm::HS256, SECRET.as_bytes(), &kid_of(&real));

    // Act and Assert
    assert_refused_everywhere(&app, &forged).await;
}

#[tokio::test]
async fn a_token_without_the_at_jwt_type_is_refused() {
    // Arrange
    let app = spawn_app_with_known_secret().await;
    let real = app.user_token().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid_of(&real));
    let forged = jsonwebtoken::encode(
        &header,
        &fresh_claims(&real),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    // Act and Assert
    assert_refused_everywhere(&app, &forged).await;
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let real = app.user_token().await;
    let segments: Vec<&str> = real.split('.').collect();
    let (_, mut claims) = jwt_parts(&real);
    claims["scope"] = json!("todos:read todos:write keys:manage admin");
    claims["role"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        segments[0],
        encode_segment(&claims),
        segments[2]
    );
    assert_eq!(app.get(&real, "/me").await.status(), StatusCode::OK);

    // Act and Assert
    assert_refused_everywhere(&app, &tampered).await;
    let admin = app.get(&tampered, "/admin/users").await;
    assert_invalid_token(admin).await;
}

#[tokio::test]
async fn a_garbage_bearer_token_is_refused() {
    // Arrange
    let app = spawn_app().await;

    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "lk_notatoken"] {
        // Act and Assert
        assert_refused_everywhere(&app, garbage).await;
    }
}
