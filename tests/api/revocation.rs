//! Revocation: what ends live tokens before they expire (a revoked key, a
//! disabled account, a new role, a sign-out, RFC 7009), checked in memory on
//! every instance; and RFC 7662 introspection.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use latchkey::db::Backend;

use crate::helpers::{
    assert_oauth_error, assert_problem, assert_revoked, holder, refused_within, spawn_app,
    spawn_app_on, spawn_app_with, test_backend, with_metrics, www_authenticate, TestApp, TestKey,
    ELSEWHERE, ISSUER,
};

/// Instances that share a database share their issuer too: without one
/// configured, each would name itself by its own port.
async fn spawn_shared() -> TestApp {
    spawn_app_with(|c| c.issuer = Some(ISSUER.into())).await
}

async fn me(app: &TestApp, token: &str) -> Response {
    app.get(token, "/me").await
}

async fn revoke(app: &TestApp, body: &[(&str, &str)]) -> Response {
    app.request(Method::POST, "/auth/revoke", None)
        .form(body)
        .send()
        .await
        .unwrap()
}

async fn assert_revocation_answered(resp: Response) {
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.bytes().await.unwrap().is_empty());
}

// ---- each kind of revocation, on one instance ----

#[tokio::test]
async fn revoking_a_key_refuses_the_tokens_it_minted_at_once() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let other = app.create_key(&ada.login, json!({ "name": "other" })).await;
    let other_token = app.exchange(&other).await;
    assert_eq!(me(&app, &ada.from_key).await.status(), StatusCode::OK);

    // Act
    let resp = app
        .delete(&ada.login, &format!("/keys/{}", ada.key.id))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_revoked(me(&app, &ada.from_key).await).await;
    assert_eq!(me(&app, &other_token).await.status(), StatusCode::OK);
    assert_eq!(me(&app, &ada.login).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_admin_revoking_a_key_refuses_its_tokens_at_once() {
    // Arrange
    let app = spawn_app().await;
    let root = app.admin().await.token;
    let bob = holder(&app).await;

    // Act
    let resp = app
        .delete(&root, &format!("/admin/keys/{}", bob.key.id))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_revoked(me(&app, &bob.from_key).await).await;
    let again = app
        .delete(&root, &format!("/admin/keys/{}", bob.key.id))
        .await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "idempotent");
}

#[tokio::test]
async fn disabling_an_account_refuses_its_tokens_and_re_enabling_lets_new_ones_in_at_once() {
    // Arrange
    let app = spawn_app().await;
    let root = app.admin().await.token;
    let bob = holder(&app).await;
    let path = format!("/admin/users/{}", bob.user.id);

    // Act
    let disabled = app.patch(&root, &path, json!({ "disabled": true })).await;

    // Assert
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_revoked(me(&app, &bob.login).await).await;
    assert_revoked(me(&app, &bob.from_key).await).await;

    // Act: enabled again, and signed in within the same second.
    let enabled = app.patch(&root, &path, json!({ "disabled": false })).await;
    let fresh_login = bob.user.login(&app).await;
    let fresh_exchange = app.exchange(&bob.key).await;

    // Assert
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_eq!(me(&app, &fresh_login).await.status(), StatusCode::OK);
    assert_eq!(me(&app, &fresh_exchange).await.status(), StatusCode::OK);
    assert_revoked(me(&app, &bob.login).await).await;
    assert_revoked(me(&app, &bob.from_key).await).await;
}

#[tokio::test]
async fn a_new_role_refuses_the_tokens_issued_under_the_old_one() {
    // Arrange
    let app = spawn_app().await;
    let root = app.admin().await.token;
    let ada = app.admin().await;

    // Act
    let demoted = app
        .patch(
            &root,
            &format!("/admin/users/{}", ada.id),
            json!({ "role": "user" }),
        )
        .await;

    // Assert
    assert_eq!(demoted.status(), StatusCode::OK);
    let stale = app
        .patch(
            &ada.token,
            &format!("/admin/users/{}", ada.id),
            json!({ "role": "admin" }),
        )
        .await;
    assert_revoked(stale).await;
    let fresh = app.login(&ada.email).await;
    let claims: Value = me(&app, &fresh).await.json().await.unwrap();
    assert_eq!(claims["role"], "user");
    assert_eq!(me(&app, &root).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn signing_out_refuses_every_token_of_the_account_and_a_new_login_works_at_once() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let bob = holder(&app).await;

    // Act
    let resp = app
        .request(Method::POST, "/me/sign-out", Some(&ada.from_key))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_revoked(me(&app, &ada.login).await).await;
    assert_revoked(me(&app, &ada.from_key).await).await;
    assert_eq!(me(&app, &bob.login).await.status(), StatusCode::OK);
    let signed_out_again = app
        .request(Method::POST, "/me/sign-out", Some(&ada.login))
        .send()
        .await
        .unwrap();
    assert_revoked(signed_out_again).await;

    // The cut-off is exact: sign out and back in, over and over, each new
    // token working at once (most rounds fall within one second).
    let mut token = ada.user.login(&app).await;
    for _ in 0..5 {
        assert_eq!(me(&app, &token).await.status(), StatusCode::OK);
        let out = app
            .request(Method::POST, "/me/sign-out", Some(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        assert_revoked(me(&app, &token).await).await;
        token = app.exchange(&ada.key).await;
    }
}

#[tokio::test]
async fn a_token_that_has_verified_before_is_refused_once_revoked_whichever_way() {
    // Arrange: tokens used over and over, as a client that keeps its token
    // does, so the server has verified each before.
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let bob = holder(&app).await;
    let carol = holder(&app).await;
    for token in [&ada.from_key, &bob.from_key, &carol.login] {
        for _ in 0..3 {
            assert_eq!(me(&app, token).await.status(), StatusCode::OK);
        }
    }

    // Act: one token revoked by itself, one with its key, one by a sign-out.
    let revoked = revoke(&app, &[("token", &ada.from_key)]).await;
    let deleted = app
        .delete(&bob.login, &format!("/keys/{}", bob.key.id))
        .await;
    let signed_out = app
        .request(Method::POST, "/me/sign-out", Some(&carol.from_key))
        .send()
        .await
        .unwrap();

    // Assert
    assert_revocation_answered(revoked).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    for token in [&ada.from_key, &bob.from_key, &carol.login] {
        assert_revoked(me(&app, token).await).await;
    }
    assert_eq!(me(&app, &ada.login).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_sign_out_without_a_token_is_refused() {
    let app = spawn_app().await;
    let resp = app
        .request(Method::POST, "/me/sign-out", None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        www_authenticate(&resp).as_deref(),
        Some(r#"Bearer realm="latchkey""#)
    );
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;
}

// ---- RFC 7009 ----

#[tokio::test]
async fn revoking_an_access_token_refuses_that_token_only() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let sibling = app.exchange(&ada.key).await;

    // Act
    let resp = revoke(
        &app,
        &[
            ("token", &ada.from_key),
            ("token_type_hint", "access_token"),
        ],
    )
    .await;

    // Assert
    assert_revocation_answered(resp).await;
    assert_revoked(me(&app, &ada.from_key).await).await;
    assert_eq!(me(&app, &sibling).await.status(), StatusCode::OK);
    assert_eq!(me(&app, &ada.login).await.status(), StatusCode::OK);
    let again = revoke(&app, &[("token", &ada.from_key)]).await;
    assert_revocation_answered(again).await;
}

#[tokio::test]
async fn revoking_an_api_key_ends_the_key_and_its_tokens() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;

    // Act: as JSON, with a hint that is wrong, which changes nothing.
    let resp = app
        .request(Method::POST, "/auth/revoke", None)
        .json(&json!({ "token": ada.key.key, "token_type_hint": "access_token" }))
        .send()
        .await
        .unwrap();

    // Assert
    assert_revocation_answered(resp).await;
    assert_revoked(me(&app, &ada.from_key).await).await;
    let exchange = app.exchange_response(&ada.key.id, &ada.key.key).await;
    assert_oauth_error(exchange, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let record: Value = app
        .get(&ada.login, &format!("/keys/{}", ada.key.id))
        .await
        .json()
        .await
        .unwrap();
    assert!(record["revoked_at"].is_string(), "{record}");
}

#[tokio::test]
async fn revoking_what_is_not_a_live_credential_answers_the_same() {
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let (head, _) = ada.from_key.rsplit_once('.').unwrap();
    let forged = format!("{head}.c2lnbmF0dXJl");
    let unknown_key = latchkey::domain::keys::ApiKey::generate();
    for token in ["not a token", forged.as_str(), unknown_key.expose()] {
        assert_revocation_answered(revoke(&app, &[("token", token)]).await).await;
    }
    assert_eq!(me(&app, &ada.from_key).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_revocation_without_a_token_is_an_invalid_request() {
    let app = spawn_app().await;
    for resp in [
        revoke(&app, &[("token_type_hint", "access_token")]).await,
        revoke(&app, &[("token", "")]).await,
        app.request(Method::POST, "/auth/revoke", None)
            .header("content-type", "text/plain")
            .body("token=x")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(!body["error_description"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn json_revocation_and_introspection_with_a_number_where_a_string_belongs_are_invalid_requests(
) {
    // Arrange: a number was taken as its digits, and a revocation of them answered 200.
    let app = spawn_app().await;
    let ada = holder(&app).await;

    for (path, body) in [
        ("/auth/revoke", json!({ "token": 12345678 })),
        (
            "/auth/revoke",
            json!({ "token": ada.from_key, "token_type_hint": 1 }),
        ),
        (
            "/auth/introspect",
            json!({ "token": ada.from_key, "client_secret": 12345678 }),
        ),
        (
            "/auth/introspect",
            json!({ "token": true, "client_secret": ada.key.key }),
        ),
    ] {
        // Act
        let resp = app
            .request(Method::POST, path, None)
            .json(&body)
            .send()
            .await
            .unwrap();

        // Assert
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path} {body}");
        let error = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains("as strings"),
            "{error}"
        );
    }
    assert_eq!(me(&app, &ada.from_key).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_account_s_many_token_revocations_become_a_sign_out() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let cap = latchkey::revocations::TOKEN_REVOCATIONS_PER_ACCOUNT;
    for _ in 0..cap {
        let token = app.exchange(&ada.key).await;
        assert_revocation_answered(revoke(&app, &[("token", &token)]).await).await;
    }
    let untouched = app.exchange(&ada.key).await;
    let in_memory = app.revocations.len();

    // Act: one more than the cap.
    let last = app.exchange(&ada.key).await;
    assert_revocation_answered(revoke(&app, &[("token", &last)]).await).await;

    // Assert: the account is signed out, which covers the token that was
    // never revoked by itself, and the window grew by one entry only.
    assert_revoked(me(&app, &last).await).await;
    assert_revoked(me(&app, &untouched).await).await;
    assert_eq!(app.revocations.len(), in_memory + 1);
    let fresh = app.exchange(&ada.key).await;
    assert_eq!(me(&app, &fresh).await.status(), StatusCode::OK);
}

// ---- what a token's life is bounded by ----

#[tokio::test]
async fn a_token_expires_no_later_than_its_key() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(20);
    let key = app
        .create_key(
            &token,
            json!({ "name": "short", "expires_at": expires_at.to_rfc3339() }),
        )
        .await;

    // Act
    let resp = app.exchange_response(&key.id, &key.key).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let grant: Value = resp.json().await.unwrap();
    let expires_in = grant["expires_in"].as_u64().unwrap();
    assert!((18..=20).contains(&expires_in), "{grant}");
    let (_, claims) = crate::helpers::jwt_parts(grant["access_token"].as_str().unwrap());
    assert!(claims["exp"].as_i64().unwrap() <= expires_at.timestamp());
}

#[tokio::test]
async fn a_restart_forgets_no_revocation() {
    // Arrange
    let app = spawn_shared().await;
    let ada = holder(&app).await;
    app.delete(&ada.login, &format!("/keys/{}", ada.key.id))
        .await;
    let bob = holder(&app).await;
    app.request(Method::POST, "/me/sign-out", Some(&bob.login))
        .send()
        .await
        .unwrap();

    // Act
    let app = app.restart().await;

    // Assert
    assert_revoked(me(&app, &ada.from_key).await).await;
    assert_revoked(me(&app, &bob.login).await).await;
    assert_revoked(me(&app, &bob.from_key).await).await;
}

// ---- another instance on the same database ----

/// Two more instances on `one`'s database, as a load balancer would spread
/// clients over them: on PostgreSQL each with a data directory of its own
/// (the keyring is in the database); on SQLite they share `one`'s, file and
/// keyring.
async fn others(one: &TestApp) -> [TestApp; 2] {
    if test_backend() == Backend::Postgres {
        let issuer = || one.config.issuer.clone();
        [
            spawn_app_on(one, |c| c.issuer = issuer()).await,
            spawn_app_on(one, |c| c.issuer = issuer()).await,
        ]
    } else {
        [one.another_instance().await, one.another_instance().await]
    }
}

/// Polls each of `apps` until it refuses `token`.
async fn refused_by_all(apps: &[TestApp], token: &str) {
    for app in apps {
        refused_within(app, token, ELSEWHERE).await;
    }
}

#[tokio::test]
async fn every_kind_of_revocation_made_at_one_instance_is_refused_at_the_others() {
    // Arrange: three instances, and tokens that each verify at all of them.
    let one = spawn_shared().await;
    let others = others(&one).await;
    let root = one.admin().await.token;
    let owner = holder(&one).await;
    let admin = holder(&one).await;
    let disable = holder(&one).await;
    let demote = holder(&one).await;
    let sign_out = holder(&one).await;
    let jti = holder(&one).await;
    let key = holder(&one).await;
    for h in [&owner, &admin, &disable, &demote, &sign_out, &jti, &key] {
        for app in &others {
            assert_eq!(me(app, &h.from_key).await.status(), StatusCode::OK);
            assert_eq!(me(app, &h.login).await.status(), StatusCode::OK);
        }
    }
    let promoted = one
        .patch(
            &root,
            &format!("/admin/users/{}", demote.user.id),
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let as_admin = demote.user.login(&one).await;

    // Act and assert: each kind of revocation, made at one, reaches both.
    let resp = one
        .delete(&owner.login, &format!("/keys/{}", owner.key.id))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    refused_by_all(&others, &owner.from_key).await;

    let resp = one
        .delete(&root, &format!("/admin/keys/{}", admin.key.id))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    refused_by_all(&others, &admin.from_key).await;

    let path = format!("/admin/users/{}", disable.user.id);
    let resp = one.patch(&root, &path, json!({ "disabled": true })).await;
    assert_eq!(resp.status(), StatusCode::OK);
    refused_by_all(&others, &disable.login).await;
    refused_by_all(&others, &disable.from_key).await;

    let path = format!("/admin/users/{}", demote.user.id);
    let resp = one.patch(&root, &path, json!({ "role": "user" })).await;
    assert_eq!(resp.status(), StatusCode::OK);
    refused_by_all(&others, &as_admin).await;

    let resp = one
        .request(Method::POST, "/me/sign-out", Some(&sign_out.from_key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    refused_by_all(&others, &sign_out.login).await;
    refused_by_all(&others, &sign_out.from_key).await;

    assert_revocation_answered(revoke(&one, &[("token", &jti.login)]).await).await;
    refused_by_all(&others, &jti.login).await;

    assert_revocation_answered(revoke(&one, &[("token", &key.key.key)]).await).await;
    refused_by_all(&others, &key.from_key).await;

    // What was not revoked still verifies everywhere.
    for app in &others {
        assert_eq!(me(app, &jti.from_key).await.status(), StatusCode::OK);
        assert_eq!(me(app, &key.login).await.status(), StatusCode::OK);
        assert_eq!(me(app, &root).await.status(), StatusCode::OK);
    }
}

/// Exchanges `key` at `app` until it is refused, which must happen within
/// [`ELSEWHERE`]; meanwhile it must be exchanged.
async fn exchange_refused_within(app: &TestApp, key: &TestKey) {
    let start = Instant::now();
    loop {
        let resp = app.exchange_response(&key.id, &key.key).await;
        if resp.status() != StatusCode::OK {
            assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
            return;
        }
        assert!(
            start.elapsed() < ELSEWHERE,
            "still exchanged after {ELSEWHERE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_key_cached_at_another_instance_is_refused_there_once_revoked_or_its_owner_disabled() {
    // Arrange: keys exchanged twice at the other instance, so that its
    // cache holds them.
    let one = spawn_shared().await;
    let [other, _] = others(&one).await;
    let root = one.admin().await.token;
    let revoked = holder(&one).await;
    let disabled = holder(&one).await;
    let kept = holder(&one).await;
    for h in [&revoked, &disabled, &kept] {
        for _ in 0..2 {
            let resp = other.exchange_response(&h.key.id, &h.key.key).await;
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }

    // Act
    let resp = one
        .delete(&revoked.login, &format!("/keys/{}", revoked.key.id))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let path = format!("/admin/users/{}", disabled.user.id);
    let resp = one.patch(&root, &path, json!({ "disabled": true })).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Assert: the other instance hears both through the feed.
    exchange_refused_within(&other, &revoked.key).await;
    exchange_refused_within(&other, &disabled.key).await;
    let resp = other.exchange_response(&kept.key.id, &kept.key.key).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

// ---- --revocation-max-lag ----

#[tokio::test]
async fn out_of_touch_with_the_database_tokens_are_refused_with_503_only_past_the_max_lag() {
    // Arrange
    let app = spawn_app_with(|c| {
        c.revocation_max_lag = Some(Duration::from_secs(2));
        with_metrics(c);
    })
    .await;
    let token = app.user_token().await;
    assert_eq!(me(&app, &token).await.status(), StatusCode::OK);

    // Act: the server's own pools close, so its reloads fail.
    app.server_db.close().await;

    // Assert: still verifying at first, then 503 once the lag passes.
    assert_eq!(me(&app, &token).await.status(), StatusCode::OK);
    let start = Instant::now();
    let resp = loop {
        let resp = me(&app, &token).await;
        if resp.status() != StatusCode::OK {
            break resp;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resp.headers()["retry-after"], "5");
    let problem = assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
    let scrape = app.scrape().await;
    assert_eq!(
        scrape.value(r#"latchkey_token_verifications_total{outcome="stale"}"#),
        1.0
    );
    assert!(scrape.value("latchkey_revocation_lag_seconds") > 2.0);
}

#[tokio::test]
async fn without_a_max_lag_an_instance_out_of_touch_keeps_verifying() {
    let app = spawn_app().await;
    let token = app.user_token().await;
    app.server_db.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(me(&app, &token).await.status(), StatusCode::OK);
}

// ---- RFC 7662 ----

async fn introspect(app: &TestApp, client: &TestKey, token: &str) -> Response {
    app.request(Method::POST, "/auth/introspect", None)
        .basic_auth(&client.id, Some(&client.key))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn introspection_tells_an_active_token_s_claims_and_nothing_of_others() {
    // Arrange
    let app = spawn_app().await;
    let service = holder(&app).await;
    let ada = holder(&app).await;

    // Act
    let active = introspect(&app, &service.key, &ada.from_key).await;

    // Assert
    assert_eq!(active.status(), StatusCode::OK);
    assert_eq!(active.headers()["cache-control"], "no-store");
    let body: Value = active.json().await.unwrap();
    let (_, claims) = crate::helpers::jwt_parts(&ada.from_key);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], ada.user.id.to_string());
    assert_eq!(body["client_id"], ada.key.id);
    assert_eq!(body["scope"], "todos:read todos:write");
    assert_eq!(body["token_type"], "Bearer");
    for claim in ["exp", "iat", "iss", "aud", "jti"] {
        assert_eq!(body[claim], claims[claim], "{claim}");
    }

    // Revoked, malformed or foreign: only `active: false`.
    revoke(&app, &[("token", &ada.from_key)]).await;
    for token in [ada.from_key.as_str(), "garbage", ada.key.key.as_str()] {
        let resp = introspect(&app, &service.key, token).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({ "active": false })
        );
    }

    // The key may also come in the body.
    let in_body = app
        .request(Method::POST, "/auth/introspect", None)
        .json(&json!({ "token": ada.login, "client_secret": service.key.key }))
        .send()
        .await
        .unwrap();
    assert_eq!(in_body.json::<Value>().await.unwrap()["active"], true);
}

#[tokio::test]
async fn introspection_needs_a_live_client_key() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;

    // Act and assert: no client at all, then a revoked key by Basic.
    let anonymous = app
        .request(Method::POST, "/auth/introspect", None)
        .form(&[("token", ada.login.as_str())])
        .send()
        .await
        .unwrap();
    assert!(www_authenticate(&anonymous).is_none());
    assert_oauth_error(anonymous, StatusCode::UNAUTHORIZED, "invalid_client").await;

    app.delete(&ada.login, &format!("/keys/{}", ada.key.id))
        .await;
    let revoked = introspect(&app, &ada.key, &ada.login).await;
    assert!(www_authenticate(&revoked).unwrap().starts_with("Basic "));
    assert_oauth_error(revoked, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let fresh = app.create_key(&ada.login, json!({ "name": "svc" })).await;
    let no_token = app
        .request(Method::POST, "/auth/introspect", None)
        .basic_auth(&fresh.id, Some(&fresh.key))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(no_token, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn the_server_metadata_names_the_revocation_and_introspection_endpoints() {
    let app = spawn_app().await;
    let meta: Value = app
        .get_public("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["revocation_endpoint"], app.url("/auth/revoke"));
    assert_eq!(meta["introspection_endpoint"], app.url("/auth/introspect"));
    assert_eq!(
        meta["revocation_endpoint_auth_methods_supported"],
        json!(["none"])
    );
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
}

// ---- when the database cannot answer ----

#[tokio::test]
async fn the_oauth_endpoints_answer_temporarily_unavailable_when_the_database_cannot_answer() {
    // Arrange: a key never exchanged, so not in the key cache.
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let unseen = app
        .create_key(&ada.login, json!({ "name": "unseen" }))
        .await;
    app.server_db.close().await;

    // Act
    let exchange = app.exchange_response(&unseen.id, &unseen.key).await;
    let revocation = revoke(&app, &[("token", &ada.key.key)]).await;
    let introspection = introspect(&app, &unseen, &ada.login).await;

    // Assert
    for resp in [exchange, revocation, introspection] {
        assert_eq!(resp.headers()["retry-after"], "5");
        assert_oauth_error(
            resp,
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
        )
        .await;
    }
    let sign_out = app
        .request(Method::POST, "/me/sign-out", Some(&ada.login))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.headers()["retry-after"], "5");
    assert_problem(sign_out, StatusCode::SERVICE_UNAVAILABLE).await;
    // Verification needs no database.
    assert_eq!(me(&app, &ada.from_key).await.status(), StatusCode::OK);
}
