//! `--metrics-bind`: the Prometheus series, on a listener of their own, each
//! server counting for itself, with no id, email, address or secret in them.

use latchkey::db::Backend;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    assert_oauth_error, assert_problem, spawn_app, spawn_app_on, spawn_app_with, test_backend,
    with_metrics, Scrape, TestApp, TestUser,
};

/// The HTTP histogram's count for one method, route and status.
fn requests(method: &str, route: &str, status: u16) -> String {
    format!(
        r#"http_server_request_duration_seconds_count{{method="{method}",route="{route}",status="{status}"}}"#
    )
}

/// Every counter (`…_total`) that moved between two scrapes, and by how much.
fn counters_moved(before: &Scrape, after: &Scrape) -> Vec<(String, f64)> {
    after
        .moved_since(before, "")
        .into_iter()
        .filter(|(sample, _)| sample.split('{').next().unwrap().ends_with("_total"))
        .collect()
}

fn moved(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

async fn revoke(app: &TestApp, token: &str) {
    let resp = app
        .request(Method::POST, "/auth/revoke", None)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_exchange_a_failed_exchange_a_verification_and_a_revocation_move_exactly_their_counters()
{
    // Arrange
    let app = spawn_app_with(with_metrics).await;
    let user = TestUser::generate().register(&app).await;
    let login = user.login(&app).await;
    let key = app.create_key(&login, json!({ "name": "ci" })).await;
    let before = app.scrape().await;

    // Act
    let token = app.exchange(&key).await;
    let refused = app
        .exchange_response(&Uuid::now_v7().to_string(), &key.key)
        .await;
    let me = app.get(&token, "/me").await;
    revoke(&app, &key.key).await;
    let after = app.scrape().await;

    // Assert
    assert_oauth_error(refused, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        counters_moved(&before, &after),
        moved(&[
            // The wrong client id is found out from the record the first
            // exchange left in the key cache.
            (r#"latchkey_key_cache_lookups_total{result="hit"}"#, 1.0),
            (r#"latchkey_key_cache_lookups_total{result="miss"}"#, 1.0),
            (r#"latchkey_revocations_total{kind="key"}"#, 1.0),
            (
                r#"latchkey_token_exchanges_total{grant_type="client_credentials",outcome="invalid_client"}"#,
                1.0
            ),
            (
                r#"latchkey_token_exchanges_total{grant_type="client_credentials",outcome="issued"}"#,
                1.0
            ),
            (
                r#"latchkey_token_verifications_total{outcome="valid"}"#,
                1.0
            ),
        ])
    );
    assert_eq!(
        after.moved_since(&before, "http_server_request_duration_seconds_count"),
        moved(&[
            (&requests("GET", "/me", 200), 1.0),
            (&requests("POST", "/auth/revoke", 200), 1.0),
            (&requests("POST", "/auth/token", 200), 1.0),
            (&requests("POST", "/auth/token", 401), 1.0),
        ])
    );
}

#[tokio::test]
async fn each_verification_is_counted_once_by_its_outcome() {
    // Arrange
    let app = spawn_app_with(with_metrics).await;
    let token = app.user_token().await;
    let before = app.scrape().await;

    // Act
    let signed_out = app
        .request(Method::POST, "/me/sign-out", Some(&token))
        .send()
        .await
        .unwrap();
    let revoked = app.get(&token, "/me").await;
    let missing = app.get_public("/me").await;
    let invalid = app.get("not-a-jwt", "/me").await;
    let after = app.scrape().await;

    // Assert
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    for resp in [revoked, missing, invalid] {
        assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(
        counters_moved(&before, &after),
        moved(&[
            (r#"latchkey_revocations_total{kind="sign_out"}"#, 1.0),
            (
                r#"latchkey_token_verifications_total{outcome="invalid"}"#,
                1.0
            ),
            (
                r#"latchkey_token_verifications_total{outcome="missing"}"#,
                1.0
            ),
            (
                r#"latchkey_token_verifications_total{outcome="revoked"}"#,
                1.0
            ),
            (
                r#"latchkey_token_verifications_total{outcome="valid"}"#,
                1.0
            ),
        ])
    );
}

#[tokio::test]
async fn a_refused_token_is_verified_once() {
    // Arrange: a token whose signature does not verify, one from another
    // server, and one that is not a JWT at all.
    let app = spawn_app_with(with_metrics).await;
    let other = spawn_app().await;
    let genuine = app.user_token().await;
    let (signed, signature) = genuine.rsplit_once('.').unwrap();
    let swapped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{swapped}{}", &signature[1..]);
    let foreign = other.user_token().await;
    let before = app.scrape().await;

    // Act
    let mut answers = Vec::new();
    for token in [forged.as_str(), &foreign, "not-a-jwt"] {
        answers.push(app.get(token, "/me").await);
    }
    let after = app.scrape().await;

    // Assert: each is checked once, by the one scheme that checks, though
    // the spec offers two that carry it.
    for resp in answers {
        assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(
        counters_moved(&before, &after),
        moved(&[(
            r#"latchkey_token_verifications_total{outcome="invalid"}"#,
            3.0
        )])
    );
}

#[tokio::test]
async fn a_throttled_exchange_is_counted_as_an_exchange_and_by_its_limiter() {
    // Arrange
    let app = spawn_app_with(|c| {
        with_metrics(c);
        c.limits.key_failures_per_minute = 1;
    })
    .await;
    let user = TestUser::generate().register(&app).await;
    let key = app
        .create_key(&user.login(&app).await, json!({ "name": "ci" }))
        .await;
    let wrong_id = Uuid::now_v7().to_string();
    let before = app.scrape().await;

    // Act
    let failed = app.exchange_response(&wrong_id, &key.key).await;
    let throttled = app.exchange_response(&wrong_id, &key.key).await;
    let after = app.scrape().await;

    // Assert
    assert_oauth_error(failed, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_oauth_error(
        throttled,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    assert_eq!(
        counters_moved(&before, &after),
        moved(&[
            // The throttled exchange is refused before any lookup.
            (r#"latchkey_key_cache_lookups_total{result="miss"}"#, 1.0),
            (
                r#"latchkey_throttled_requests_total{limiter="key_failures"}"#,
                1.0
            ),
            (
                r#"latchkey_token_exchanges_total{grant_type="client_credentials",outcome="invalid_client"}"#,
                1.0
            ),
            (
                r#"latchkey_token_exchanges_total{grant_type="client_credentials",outcome="throttled"}"#,
                1.0
            ),
        ])
    );
}

#[tokio::test]
async fn requests_the_database_fails_are_counted_as_database_errors() {
    // Arrange
    let app = spawn_app_with(with_metrics).await;
    let user = TestUser::generate().register(&app).await;
    let token = user.login(&app).await;
    app.server_db.close().await;
    let before = app.scrape().await;

    // Act
    let todo = app.post(&token, "/todos", json!({ "title": "milk" })).await;
    let login = app.login_response(&user.email, &user.password).await;
    let after = app.scrape().await;

    // Assert
    assert_problem(todo, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_oauth_error(
        login,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    assert_eq!(
        counters_moved(&before, &after),
        moved(&[
            ("latchkey_database_errors_total", 2.0),
            (
                r#"latchkey_token_exchanges_total{grant_type="password",outcome="unavailable"}"#,
                1.0
            ),
            (
                r#"latchkey_token_verifications_total{outcome="valid"}"#,
                1.0
            ),
        ])
    );
}

#[tokio::test]
async fn two_apps_in_one_process_keep_separate_counts() {
    // Arrange: two instances on one database.
    let one = spawn_app_with(with_metrics).await;
    let two = spawn_app_on(&one, with_metrics).await;

    // Act
    let token = one.user_token().await;
    assert_eq!(one.get(&token, "/me").await.status(), StatusCode::OK);
    let (on_one, on_two) = (one.scrape().await, two.scrape().await);

    // Assert
    let issued = r#"latchkey_token_exchanges_total{grant_type="password",outcome="issued"}"#;
    let valid = r#"latchkey_token_verifications_total{outcome="valid"}"#;
    assert_eq!((on_one.value(issued), on_two.value(issued)), (1.0, 0.0));
    assert_eq!((on_one.value(valid), on_two.value(valid)), (1.0, 0.0));
    let registered = requests("POST", "/users", 201);
    assert_eq!(on_one.value(&registered), 1.0);
    assert!(!on_two.has(&registered), "{}", on_two.text);
}

#[tokio::test]
async fn the_scrape_names_no_user_key_client_email_address_or_secret() {
    // Arrange: everything a label could be tempted to carry.
    let app = spawn_app_with(with_metrics).await;
    let user = TestUser::generate().register(&app).await;
    let login = user.login(&app).await;
    let key = app.create_key(&login, json!({ "name": "ci" })).await;
    let token = app
        .token_form()
        .grant("client_credentials")
        .basic(&key.id, &key.key)
        .send()
        .await;
    let token = crate::helpers::access_token(token).await;
    let todo = app.create_todo(&token, "milk").await;
    let todo_id = todo["id"].as_str().unwrap();
    app.get(&token, &format!("/todos/{todo_id}")).await;
    app.exchange_response(&key.id, "lk_not-a-key").await;
    revoke(&app, &token).await;

    // Act
    let scrape = app.scrape().await;

    // Assert
    for (what, value) in [
        ("user id", user.id.to_string()),
        ("user id", user.id.simple().to_string()),
        ("key id (the client id)", key.id.clone()),
        ("todo id", todo_id.to_owned()),
        ("email", user.email.clone()),
        ("password", user.password.clone()),
        ("key", key.key.clone()),
        ("login token", login),
        ("token", token),
        ("client address", "127.0.0.1".to_owned()),
    ] {
        assert!(
            !scrape.text.contains(&value),
            "the {what} is in:\n{}",
            scrape.text
        );
    }
    assert!(
        scrape.value(&requests("GET", "/todos/{id}", 200)) == 1.0,
        "{}",
        scrape.text
    );
}

#[tokio::test]
async fn the_request_histogram_names_the_route_template_and_unmatched_for_an_unknown_path() {
    // Arrange
    let app = spawn_app_with(with_metrics).await;
    let token = app.user_token().await;
    let id = app.create_todo(&token, "milk").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = Uuid::now_v7();

    // Act
    let found = app.get(&token, &format!("/todos/{id}")).await;
    let missing = app.get(&token, &format!("/todos/{unknown}")).await;
    let nowhere = app.get_public(&format!("/no/such/{unknown}")).await;
    let not_allowed = app
        .request(Method::DELETE, "/todos", Some(&token))
        .send()
        .await
        .unwrap();
    let scrape = app.scrape().await;

    // Assert
    assert_eq!(found.status(), StatusCode::OK);
    assert_problem(missing, StatusCode::NOT_FOUND).await;
    assert_problem(nowhere, StatusCode::NOT_FOUND).await;
    assert_problem(not_allowed, StatusCode::METHOD_NOT_ALLOWED).await;
    for (sample, count) in [
        (requests("POST", "/todos", 201), 1.0),
        (requests("GET", "/todos/{id}", 200), 1.0),
        (requests("GET", "/todos/{id}", 404), 1.0),
        (requests("GET", "unmatched", 404), 1.0),
        (requests("DELETE", "/todos", 405), 1.0),
    ] {
        assert_eq!(
            scrape.value(&sample),
            count,
            "{sample} in:\n{}",
            scrape.text
        );
    }
    let bucket = r#"http_server_request_duration_seconds_bucket{le="+Inf",method="GET",route="/todos/{id}",status="200"}"#;
    assert_eq!(scrape.value(bucket), 1.0, "{}", scrape.text);
    assert!(!scrape.text.contains(&id), "{}", scrape.text);
    assert!(
        !scrape.text.contains(&unknown.to_string()),
        "{}",
        scrape.text
    );
}

#[tokio::test]
async fn the_scrape_tells_the_revocation_lag_and_each_pools_connections() {
    // Arrange
    let app = spawn_app_with(with_metrics).await;

    // Act
    let scrape = app.scrape().await;

    // Assert
    let lag = scrape.value("latchkey_revocation_lag_seconds");
    assert!(
        scrape.has("latchkey_revocation_lag_seconds"),
        "{}",
        scrape.text
    );
    assert!((0.0..60.0).contains(&lag), "{lag}");
    let pools: &[(&str, Option<f64>)] = match test_backend() {
        Backend::Sqlite => &[("reader", None), ("writer", Some(1.0))],
        Backend::Postgres => &[("main", None)],
    };
    for (pool, max) in pools {
        let most = scrape.value(&format!(
            r#"latchkey_database_connections_max{{pool="{pool}"}}"#
        ));
        assert!(most >= 1.0, "{pool}: {}", scrape.text);
        if let Some(max) = max {
            assert_eq!(most, *max, "{pool}");
        }
        let open: f64 = ["in_use", "idle"]
            .iter()
            .map(|state| {
                let sample =
                    format!(r#"latchkey_database_connections{{pool="{pool}",state="{state}"}}"#);
                assert!(scrape.has(&sample), "{sample} in:\n{}", scrape.text);
                scrape.value(&sample)
            })
            .sum();
        assert!(open <= most, "{pool}: {open} open of {most}");
    }
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_nowhere_else() {
    // Arrange
    let app = spawn_app_with(with_metrics).await;
    let without = spawn_app().await;
    let metrics = format!("http://{}", app.metrics_addr.unwrap());

    // Act
    let on_the_api = app.get_public("/metrics").await;
    let api_on_metrics = app
        .client
        .get(format!("{metrics}/health"))
        .send()
        .await
        .unwrap();
    let posted = app
        .client
        .post(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_problem(on_the_api, StatusCode::NOT_FOUND).await;
    assert_problem(api_on_metrics, StatusCode::NOT_FOUND).await;
    assert_eq!(posted.headers()["allow"], "GET");
    assert_problem(posted, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(without.metrics_addr, None);
}
