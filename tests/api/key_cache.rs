//! The key cache: a key exchanged once exchanges again without the database
//! while the revocation feed is fresh, and every change to what an exchange
//! depends on (a revocation, a disable, an enable, a new role) reaches the
//! cached record at once on the instance that made it.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use latchkey::revocations::FRESH_FOR;

use crate::helpers::{
    assert_oauth_error, holder, spawn_app, spawn_app_with, with_metrics, TestApp, TestKey,
};

async fn assert_exchanged(what: &str, resp: Response) -> Value {
    assert_eq!(resp.status(), StatusCode::OK, "{what}");
    resp.json().await.unwrap()
}

async fn assert_refused(what: &str, resp: Response) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

async fn exchange(app: &TestApp, key: &TestKey) -> Response {
    app.exchange_response(&key.id, &key.key).await
}

#[tokio::test]
async fn a_key_seen_before_exchanges_without_the_database_until_the_feed_goes_stale() {
    // Arrange: one key exchanged once, another never.
    let app = spawn_app_with(with_metrics).await;
    let ada = holder(&app).await;
    let unseen = app
        .create_key(&ada.login, json!({ "name": "unseen" }))
        .await;

    // Act: the server's own pools close, so nothing reaches the database.
    app.server_db.close().await;
    let seen = exchange(&app, &ada.key).await;
    let never = exchange(&app, &unseen).await;

    // Assert: the seen key is served from memory, the other needs the
    // database.
    assert_exchanged("a key exchanged before", seen).await;
    assert_oauth_error(
        never,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;

    // Act: the feed's last answer grows old.
    let start = Instant::now();
    while app.revocations.lag() < FRESH_FOR {
        assert!(start.elapsed() < Duration::from_secs(10), "the lag grows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stale = exchange(&app, &ada.key).await;

    // Assert: a stale feed may have missed a revocation, so the cached
    // record serves no more.
    assert_oauth_error(
        stale,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    let scrape = app.scrape().await;
    assert_eq!(
        scrape.value(r#"latchkey_key_cache_lookups_total{result="hit"}"#),
        1.0
    );
    assert_eq!(
        scrape.value(r#"latchkey_key_cache_lookups_total{result="miss"}"#),
        2.0,
        "the holder's first exchange and the unseen key's"
    );
    assert_eq!(
        scrape.value(r#"latchkey_key_cache_lookups_total{result="stale"}"#),
        1.0
    );
}

#[tokio::test]
async fn a_cached_key_is_refused_at_once_however_it_is_revoked() {
    // Arrange: three keys, each exchanged twice (the second from memory).
    let app = spawn_app().await;
    let root = app.admin().await.token;
    let by_owner = holder(&app).await;
    let by_admin = holder(&app).await;
    let by_holder = holder(&app).await;
    for h in [&by_owner, &by_admin, &by_holder] {
        assert_exchanged("again", exchange(&app, &h.key).await).await;
    }

    // Act
    let owner = app
        .delete(&by_owner.login, &format!("/keys/{}", by_owner.key.id))
        .await;
    let admin = app
        .delete(&root, &format!("/admin/keys/{}", by_admin.key.id))
        .await;
    let holder = app.revoke_at_endpoint(&by_holder.key.key).await;

    // Assert
    assert_eq!(owner.status(), StatusCode::NO_CONTENT);
    assert_eq!(admin.status(), StatusCode::NO_CONTENT);
    assert_eq!(holder.status(), StatusCode::OK);
    assert_refused("revoked by its owner", exchange(&app, &by_owner.key).await).await;
    assert_refused("revoked by an admin", exchange(&app, &by_admin.key).await).await;
    assert_refused(
        "revoked by its holder",
        exchange(&app, &by_holder.key).await,
    )
    .await;
}

#[tokio::test]
async fn a_cached_key_of_a_disabled_account_is_refused_at_once_and_exchanges_once_enabled() {
    // Arrange
    let app = spawn_app().await;
    let root = app.admin().await.token;
    let bob = holder(&app).await;
    assert_exchanged("again", exchange(&app, &bob.key).await).await;
    let path = format!("/admin/users/{}", bob.user.id);

    // Act
    let disabled = app.patch(&root, &path, json!({ "disabled": true })).await;
    let refused = exchange(&app, &bob.key).await;
    let enabled = app.patch(&root, &path, json!({ "disabled": false })).await;
    let exchanged = exchange(&app, &bob.key).await;

    // Assert
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_refused("the account is disabled", refused).await;
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_exchanged("the account is enabled again", exchanged).await;
}

#[tokio::test]
async fn a_cached_key_exchanges_for_what_its_owner_s_new_role_allows_at_once() {
    // Arrange: an admin's key that holds `admin`, exchanged twice.
    let app = spawn_app().await;
    let root = app.admin().await.token;
    let ada = app.admin().await;
    let key = app
        .create_key(
            &ada.token,
            json!({ "name": "ops", "scopes": ["todos:read", "admin"] }),
        )
        .await;
    for _ in 0..2 {
        let grant = assert_exchanged("as an admin", exchange(&app, &key).await).await;
        assert_eq!(grant["scope"], "todos:read admin");
    }

    // Act
    let demoted = app
        .patch(
            &root,
            &format!("/admin/users/{}", ada.id),
            json!({ "role": "user" }),
        )
        .await;
    let grant = assert_exchanged("as a user", exchange(&app, &key).await).await;

    // Assert
    assert_eq!(demoted.status(), StatusCode::OK);
    assert_eq!(grant["scope"], "todos:read");
}

#[tokio::test]
async fn with_a_key_cache_of_zero_every_exchange_reads_the_database() {
    // Arrange
    let app = spawn_app_with(|c| {
        c.key_cache_size = 0;
        with_metrics(c);
    })
    .await;
    let ada = holder(&app).await;

    // Act
    app.server_db.close().await;
    let resp = exchange(&app, &ada.key).await;

    // Assert
    assert_oauth_error(
        resp,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    let scrape = app.scrape().await;
    assert_eq!(
        scrape.value(r#"latchkey_key_cache_lookups_total{result="hit"}"#),
        0.0
    );
}
