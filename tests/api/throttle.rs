//! Abuse limits: failed logins and bad keys make the address that sent them
//! wait, never the account or the key; registration is throttled per
//! address; the argon2 queue is bounded.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::mpsc,
};

use latchkey::domain::keys::ApiKey;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    access_token, assert_oauth_error, assert_problem, spawn_app_with, TestApp, TestKey, TestUser,
    PASSWORD,
};

const OTHER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A client whose requests come from `address` (any of 127/8 reaches the
/// server on 127.0.0.1 over loopback).
fn client_from(address: IpAddr) -> Client {
    Client::builder().local_address(address).build().unwrap()
}

/// A form posted to `/auth/token` from `client`, through a proxy when
/// `forwarded_for` is given.
async fn token_via(
    client: &Client,
    app: &TestApp,
    form: &[(&str, &str)],
    forwarded_for: Option<&str>,
) -> Response {
    let mut request = client.post(app.url("/auth/token")).form(form);
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request.send().await.unwrap()
}

async fn login_via(
    client: &Client,
    app: &TestApp,
    email: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Response {
    let form = [
        ("grant_type", "password"),
        ("username", email),
        ("password", password),
    ];
    token_via(client, app, &form, forwarded_for).await
}

async fn exchange_via(
    client: &Client,
    app: &TestApp,
    key_id: &str,
    key: &str,
    forwarded_for: Option<&str>,
) -> Response {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", key_id),
        ("client_secret", key),
    ];
    token_via(client, app, &form, forwarded_for).await
}

/// Asserts an OAuth `429`: `too_many_requests`, with a `Retry-After` of
/// whole seconds no longer than `at_most`. Returns the seconds.
async fn assert_too_many_requests(resp: Response, at_most: u64) -> u64 {
    let retry_after = retry_after(&resp);
    assert!((1..=at_most).contains(&retry_after), "{retry_after}");
    assert_oauth_error(resp, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    retry_after
}

fn retry_after(resp: &Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("a Retry-After header on the {}", resp.status()))
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds")
}

/// Sends wrong passwords for `email` until one is refused with 429, and
/// returns how many were answered `invalid_grant` first.
async fn wrong_passwords_until_throttled(app: &TestApp, email: &str) -> usize {
    for attempt in 0..50 {
        let resp = app.login_response(email, "not the password").await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_too_many_requests(resp, 60).await;
            return attempt;
        }
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    panic!("50 wrong passwords and no 429");
}

// ---- password logins ----

#[tokio::test]
async fn wrong_passwords_from_one_address_are_throttled_while_the_owner_logs_in_from_another() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.login_failures = 3).await;
    let user = TestUser::generate().register(&app).await;

    // Act
    let failures = wrong_passwords_until_throttled(&app, &user.email).await;

    // Assert
    assert_eq!(failures, 3);
    // From the throttled address even the right password waits…
    let resp = app.login_response(&user.email, PASSWORD).await;
    assert_too_many_requests(resp, 60).await;
    // …but from another address the owner logs in.
    let elsewhere = client_from(OTHER_ADDRESS);
    let resp = login_via(&elsewhere, &app, &user.email, PASSWORD, None).await;
    access_token(resp).await;
    // Another account from the throttled address is not affected.
    let other = TestUser::generate().register(&app).await;
    other.login(&app).await;
}

#[tokio::test]
async fn a_right_password_resets_the_count_of_failures() {
    let app = spawn_app_with(|c| c.limits.login_failures = 3).await;
    let user = TestUser::generate().register(&app).await;

    for _ in 0..2 {
        let resp = app.login_response(&user.email, "not the password").await;
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    user.login(&app).await;

    // Three more failures are allowed again before the wait.
    assert_eq!(wrong_passwords_until_throttled(&app, &user.email).await, 3);
}

/// A stolen token is no faster a way to guess an account's password than
/// the token endpoint: wrong `current_password`s at `PUT /me/password` are
/// failed logins of the account from that address.
#[tokio::test]
async fn wrong_current_passwords_count_as_failed_logins() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.login_failures = 3).await;
    let user = TestUser::generate().register(&app).await;
    let token = user.login(&app).await;
    const NEW: &str = "a brand new passphrase";

    // Act: two wrong current passwords, then one wrong login.
    for _ in 0..2 {
        let resp = app.change_password(&token, "not the password", NEW).await;
        let problem = assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            problem["errors"][0]["field"], "current_password",
            "{problem}"
        );
    }
    let resp = app.login_response(&user.email, "not the password").await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // Assert: the budget of three is spent, at both endpoints, even for the
    // right password…
    let resp = app.change_password(&token, PASSWORD, NEW).await;
    let wait = retry_after(&resp);
    assert!((1..=60).contains(&wait), "{wait}");
    let problem = assert_problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("Retry-After"),
        "{problem}"
    );
    let resp = app.login_response(&user.email, PASSWORD).await;
    assert_too_many_requests(resp, 60).await;
    // …and the password was not changed.
    let elsewhere = client_from(OTHER_ADDRESS);
    let resp = login_via(&elsewhere, &app, &user.email, PASSWORD, None).await;
    access_token(resp).await;
}

#[tokio::test]
async fn the_right_password_of_a_disabled_account_counts_as_a_failure() {
    let app = spawn_app_with(|c| c.limits.login_failures = 2).await;
    let admin = app.admin().await;
    let user = TestUser::generate().register(&app).await;
    let path = format!("/admin/users/{}", user.id);
    let resp = app
        .patch(&admin.token, &path, json!({ "disabled": true }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    for _ in 0..2 {
        let resp = app.login_response(&user.email, PASSWORD).await;
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    let resp = app.login_response(&user.email, PASSWORD).await;
    assert_too_many_requests(resp, 60).await;
}

#[tokio::test]
async fn an_unknown_email_is_throttled_like_a_known_one() {
    let app = spawn_app_with(|c| c.limits.login_failures = 3).await;

    let failures = wrong_passwords_until_throttled(&app, "nobody@example.com").await;
    assert_eq!(failures, 3);
    // Its other spellings are the same account.
    let resp = app
        .login_response(" Nobody@Example.COM", "not the password")
        .await;
    assert_too_many_requests(resp, 60).await;
}

#[tokio::test]
async fn a_throttled_login_is_refused_before_argon2_runs() {
    // With every core held and no queue, any login that reached argon2
    // would be answered 503.
    let app = spawn_app_with(|c| {
        c.limits.login_failures = 1;
        c.limits.argon2_queue = 0;
    })
    .await;
    let user = TestUser::generate().register(&app).await;
    let resp = app.login_response(&user.email, "not the password").await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let held = Cores::hold(&app).await;

    let resp = app.login_response(&user.email, PASSWORD).await;

    assert_too_many_requests(resp, 60).await;
    held.release().await;
}

// ---- bad keys ----

/// Attempts that each fail to authenticate a client, of every kind.
fn bad_clients(key: &TestKey, revoked: &TestKey) -> Vec<(String, String)> {
    vec![
        (key.id.clone(), "lk_malformed".into()),
        (key.id.clone(), ApiKey::generate().expose().to_owned()),
        (revoked.id.clone(), revoked.key.clone()),
        (revoked.id.clone(), key.key.clone()),
    ]
}

async fn two_keys(app: &TestApp) -> (TestKey, TestKey) {
    let token = app.user_token().await;
    let key = app.create_key(&token, json!({ "name": "good" })).await;
    let revoked = app.create_key(&token, json!({ "name": "revoked" })).await;
    let resp = app.delete(&token, &format!("/keys/{}", revoked.id)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    (key, revoked)
}

#[tokio::test]
async fn a_flood_of_bad_keys_is_throttled_even_for_a_valid_key_and_only_from_its_address() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.key_failures_per_minute = 4).await;
    let (key, revoked) = two_keys(&app).await;

    // Act: malformed, unknown, revoked, and a key under another's id.
    for (id, secret) in bad_clients(&key, &revoked) {
        let resp = app.exchange_response(&id, &secret).await;
        assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
    let resp = app.exchange_response(&key.id, "lk_malformed").await;

    // Assert
    assert_too_many_requests(resp, 60).await;
    // A valid key from the throttled address is refused too…
    let resp = app.exchange_response(&key.id, &key.key).await;
    assert_too_many_requests(resp, 60).await;
    // …while from another address it works, and the key is not locked.
    let elsewhere = client_from(OTHER_ADDRESS);
    let resp = exchange_via(&elsewhere, &app, &key.id, &key.key, None).await;
    access_token(resp).await;
    // The refusal comes before any lookup: with the database gone, the
    // throttled address still gets its 429.
    app.server_db.close().await;
    let resp = app.exchange_response(&key.id, &key.key).await;
    assert_too_many_requests(resp, 60).await;
}

#[tokio::test]
async fn bad_keys_at_introspection_are_throttled() {
    let app = spawn_app_with(|c| c.limits.key_failures_per_minute = 2).await;
    let (key, _) = two_keys(&app).await;
    let token = app.exchange(&key).await;
    let introspect = |secret: String| {
        app.client
            .post(app.url("/auth/introspect"))
            .form(&[
                ("token", token.as_str()),
                ("client_secret", secret.as_str()),
            ])
            .send()
    };

    for _ in 0..2 {
        let resp = introspect(ApiKey::generate().expose().to_owned())
            .await
            .unwrap();
        assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
    let resp = introspect(ApiKey::generate().expose().to_owned())
        .await
        .unwrap();
    assert_too_many_requests(resp, 60).await;
    // A valid client from the throttled address waits as well.
    let resp = introspect(key.key.clone()).await.unwrap();
    assert_too_many_requests(resp, 60).await;
    // The token endpoint shares the budget.
    let resp = app.exchange_response(&key.id, &key.key).await;
    assert_too_many_requests(resp, 60).await;
}

#[tokio::test]
async fn unknown_keys_at_revocation_are_throttled() {
    let app = spawn_app_with(|c| c.limits.key_failures_per_minute = 2).await;
    let (key, _) = two_keys(&app).await;
    let revoke = |token: String| {
        app.client
            .post(app.url("/auth/revoke"))
            .form(&[("token", token)])
            .send()
    };

    for _ in 0..2 {
        let resp = revoke(ApiKey::generate().expose().to_owned())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = revoke(ApiKey::generate().expose().to_owned())
        .await
        .unwrap();
    assert_too_many_requests(resp, 60).await;
    // Nothing is looked up for this address now, not even a live key…
    let resp = revoke(key.key.clone()).await.unwrap();
    assert_too_many_requests(resp, 60).await;
    let elsewhere = client_from(OTHER_ADDRESS);
    access_token(exchange_via(&elsewhere, &app, &key.id, &key.key, None).await).await;
    // …which another address can still revoke.
    let resp = elsewhere
        .post(app.url("/auth/revoke"))
        .form(&[("token", key.key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = exchange_via(&elsewhere, &app, &key.id, &key.key, None).await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

// ---- the client address ----

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    // Arrange: the test's connections come from the trusted proxy.
    let app = spawn_app_with(|c| {
        c.limits.key_failures_per_minute = 2;
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (key, _) = two_keys(&app).await;
    let bad = ApiKey::generate().expose().to_owned();
    let via = Some("192.0.2.1, 203.0.113.7");

    // Act
    for _ in 0..2 {
        let resp = exchange_via(&app.client, &app, &key.id, &bad, via).await;
        assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }

    // Assert: 203.0.113.7 waits, whatever it claims to the left of it…
    let resp = exchange_via(&app.client, &app, &key.id, &key.key, via).await;
    assert_too_many_requests(resp, 60).await;
    let resp = exchange_via(&app.client, &app, &key.id, &key.key, Some("203.0.113.7")).await;
    assert_too_many_requests(resp, 60).await;
    // …while another forwarded client and the proxy itself do not.
    let resp = exchange_via(&app.client, &app, &key.id, &key.key, Some("203.0.113.8")).await;
    access_token(resp).await;
    let resp = exchange_via(&app.client, &app, &key.id, &key.key, None).await;
    access_token(resp).await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_escape_its_throttle_with_x_forwarded_for() {
    let app = spawn_app_with(|c| c.limits.key_failures_per_minute = 2).await;
    let (key, _) = two_keys(&app).await;
    let bad = ApiKey::generate().expose().to_owned();

    // Each failure claims another address: all count for the peer.
    for claimed in ["203.0.113.1", "203.0.113.2"] {
        let resp = exchange_via(&app.client, &app, &key.id, &bad, Some(claimed)).await;
        assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }

    let resp = exchange_via(&app.client, &app, &key.id, &key.key, Some("203.0.113.3")).await;
    assert_too_many_requests(resp, 60).await;
    let resp = exchange_via(&app.client, &app, &key.id, &key.key, None).await;
    assert_too_many_requests(resp, 60).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_password_guesses_count_per_forwarded_client() {
    let app = spawn_app_with(|c| {
        c.limits.login_failures = 2;
        c.limits.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let user = TestUser::generate().register(&app).await;
    for _ in 0..2 {
        let resp = login_via(
            &app.client,
            &app,
            &user.email,
            "nope-nope",
            Some("198.51.100.9"),
        )
        .await;
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }

    let resp = login_via(
        &app.client,
        &app,
        &user.email,
        PASSWORD,
        Some("198.51.100.9"),
    )
    .await;
    assert_too_many_requests(resp, 60).await;
    let resp = login_via(
        &app.client,
        &app,
        &user.email,
        PASSWORD,
        Some("198.51.100.10"),
    )
    .await;
    access_token(resp).await;
}

// ---- registration ----

#[tokio::test]
async fn registrations_are_throttled_per_address_counting_every_attempt() {
    // Arrange
    let app = spawn_app_with(|c| c.limits.registrations_per_hour = 2).await;

    // Act: one refused attempt and one account spend the budget.
    let resp = app.register("not an email", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    TestUser::generate().register(&app).await;
    let new = TestUser::generate();
    let resp = app.register(&new.email, &new.password).await;

    // Assert
    let retry_after = retry_after(&resp);
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("Retry-After"),
        "{problem}"
    );
    // Another address registers.
    let elsewhere = client_from(OTHER_ADDRESS);
    let resp = elsewhere
        .post(app.url("/users"))
        .json(&json!({ "email": new.email, "password": new.password }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

// ---- the argon2 queue ----

/// Every core of an app's argon2 queue, held by work of the test's until
/// released.
struct Cores {
    release: Vec<mpsc::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cores {
    async fn hold(app: &TestApp) -> Cores {
        let (mut release, mut tasks) = (Vec::new(), Vec::new());
        for _ in 0..app.argon2.cores() {
            let (started, running) = tokio::sync::oneshot::channel();
            let (stop, stopped) = mpsc::channel::<()>();
            let queue = std::sync::Arc::clone(&app.argon2);
            tasks.push(tokio::spawn(async move {
                queue
                    .run(move || {
                        let _ = started.send(());
                        let _ = stopped.recv();
                    })
                    .await
                    .expect("a core is free");
            }));
            running.await.unwrap();
            release.push(stop);
        }
        Cores { release, tasks }
    }

    async fn release(self) {
        for stop in self.release {
            let _ = stop.send(());
        }
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

#[tokio::test]
async fn past_the_argon2_queue_logins_and_registrations_get_503_at_once() {
    // Arrange: every core busy, room for one login to wait.
    let app = spawn_app_with(|c| c.limits.argon2_queue = 1).await;
    let user = TestUser::generate().register(&app).await;
    let held = Cores::hold(&app).await;
    let waiting = {
        let (client, url, email) = (
            app.client.clone(),
            app.url("/auth/token"),
            user.email.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .form(&[
                    ("grant_type", "password"),
                    ("username", email.as_str()),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap()
        })
    };
    while app.argon2.waiting() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    // Act
    let login = app.login_response(&user.email, PASSWORD).await;
    let new = TestUser::generate();
    let registration = app.register(&new.email, &new.password).await;

    // Assert
    assert!(retry_after(&login) >= 1);
    let body: Value = assert_oauth_error(
        login,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("password checks"),
        "{body}"
    );
    assert!(retry_after(&registration) >= 1);
    assert_problem(registration, StatusCode::SERVICE_UNAVAILABLE).await;
    // The login that waited gets its token once a core is free.
    held.release().await;
    access_token(waiting.await.unwrap()).await;
    user.login(&app).await;
}
