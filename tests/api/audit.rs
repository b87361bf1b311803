//! The audit log: every change recorded with it, in its transaction; failures
//! and throttled requests tallied per address, action and minute; the two
//! routes that read it; what the command line records; retention; and no
//! secret in any of it.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, SubsecRound, Utc};
use latchkey::{
    db::Backend,
    domain::{
        audit::{minute, Action, Actor, Event},
        keys::ApiKey,
    },
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing_subscriber::{fmt::MakeWriter, EnvFilter};
use uuid::Uuid;

use crate::helpers::{
    actions, assert_oauth_error, assert_problem, field_errors, holder, kid_of, on_sql, spawn_app,
    spawn_app_with, test_backend, www_authenticate, NewUser, Sql, TestApp, TestUser, PASSWORD,
};

/// Where requests from the tests come from, as the audit log names it.
const LOCAL: &str = "127.0.0.1";

/// The events of `action`, newest first.
async fn events_of(app: &TestApp, admin: &str, action: &str) -> Vec<Value> {
    app.audit_events(admin, &format!("/admin/audit?limit=100&action={action}"))
        .await
}

/// The sum of the `count`s of tallies.
fn counted(tallies: &[Value]) -> u64 {
    tallies
        .iter()
        .map(|t| t["details"]["count"].as_u64().unwrap())
        .sum()
}

/// The counts by reason over tallies.
fn reasons(tallies: &[Value]) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for tally in tallies {
        for (reason, n) in tally["details"]["reasons"].as_object().unwrap() {
            *all.entry(reason.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    all
}

/// The minutes a stretch of time touches: a tally is one per minute, so
/// failures made across a minute's turn are two.
fn minutes_from(start: chrono::DateTime<Utc>) -> usize {
    usize::try_from(minute(Utc::now()) - minute(start)).unwrap() + 1
}

// ---- changes ----

#[tokio::test]
async fn an_account_s_own_changes_are_in_its_audit_log_newest_first() {
    // Arrange: a registration, a key made and revoked, a sign-out and a new
    // password.
    let app = spawn_app().await;
    let ada = TestUser::generate().register(&app).await;
    let login = ada.login(&app).await;
    let key = app.create_key(&login, json!({ "name": "ci" })).await;
    let revoked = app.delete(&login, &format!("/keys/{}", key.id)).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.sign_out(&login).await.status(), StatusCode::NO_CONTENT);
    let login = ada.login(&app).await;
    let changed = app
        .change_password(&login, PASSWORD, "a brand new passphrase")
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let login = access_token_for(&app, &ada.email, "a brand new passphrase").await;

    // Act
    let events = app.audit_events(&login, "/me/audit").await;

    // Assert
    assert_eq!(
        actions(&events),
        [
            "user.password_changed",
            "user.signed_out",
            "key.revoked",
            "key.created",
            "user.registered"
        ]
    );
    let holder = json!({ "user_id": ada.id, "client_id": "password", "address": LOCAL });
    let account = json!({ "type": "user", "id": ada.id });
    let own_key = json!({ "type": "key", "id": key.id });
    assert_eq!(events[0]["actor"], holder);
    assert_eq!(events[0]["target"], account);
    assert_eq!(events[1]["actor"], holder);
    assert_eq!(events[1]["target"], account);
    assert_eq!(events[2]["actor"], holder);
    assert_eq!(events[2]["target"], own_key);
    assert_eq!(
        events[2]["details"],
        json!({ "by": "owner", "owner": ada.id })
    );
    assert_eq!(events[3]["target"], own_key);
    assert_eq!(
        events[3]["details"],
        json!({ "name": "ci", "scopes": ["todos:read", "todos:write"], "expires_at": null })
    );
    assert_eq!(
        events[4]["actor"],
        json!({ "user_id": null, "client_id": null, "address": LOCAL })
    );
    assert_eq!(events[4]["target"], account);
    assert_eq!(events[4]["details"], json!({ "role": "user" }));
    let times: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
}

async fn access_token_for(app: &TestApp, email: &str, password: &str) -> String {
    crate::helpers::access_token(app.login_response(email, password).await).await
}

#[tokio::test]
async fn revocations_at_the_revocation_endpoint_are_recorded_as_the_holder_s() {
    // Arrange
    let app = spawn_app().await;
    let ada = holder(&app).await;
    let other_key = app.create_key(&ada.login, json!({ "name": "old" })).await;

    // Act
    for token in [ada.from_key.as_str(), other_key.key.as_str()] {
        let resp = app.revoke_at_endpoint(token).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    // Assert
    let events = app.audit_events(&ada.login, "/me/audit?limit=2").await;
    assert_eq!(actions(&events), ["key.revoked", "token.revoked"]);
    assert_eq!(
        events[0]["actor"],
        json!({ "user_id": ada.user.id, "client_id": other_key.id, "address": LOCAL })
    );
    assert_eq!(
        events[0]["target"],
        json!({ "type": "key", "id": other_key.id })
    );
    assert_eq!(
        events[0]["details"],
        json!({ "by": "holder", "owner": ada.user.id })
    );
    let (_, claims) = crate::helpers::jwt_parts(&ada.from_key);
    assert_eq!(
        events[1]["actor"],
        json!({ "user_id": ada.user.id, "client_id": ada.key.id, "address": LOCAL })
    );
    assert_eq!(
        events[1]["target"],
        json!({ "type": "token", "id": claims["jti"] })
    );
    assert_eq!(events[1]["details"], json!({ "covers": "token" }));
}

#[tokio::test]
async fn an_admin_reads_everyone_s_events_and_filters_them_by_action_account_and_time() {
    // Arrange: an admin's changes to two accounts, among their own.
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ada = holder(&app).await;
    let bob = holder(&app).await;
    let promoted = app
        .patch(
            &admin.token,
            &format!("/admin/users/{}", ada.user.id),
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let unchanged = app
        .patch(
            &admin.token,
            &format!("/admin/users/{}", bob.user.id),
            json!({ "disabled": false }),
        )
        .await;
    assert_eq!(unchanged.status(), StatusCode::OK);
    let since = Utc::now().trunc_subsecs(3);
    let revoked = app
        .delete(&admin.token, &format!("/admin/keys/{}", bob.key.id))
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    // Act
    let everything = app.all_events(&admin.token).await;
    let updates = events_of(&app, &admin.token, "user.updated").await;
    let bobs = app
        .audit_events(
            &admin.token,
            &format!("/admin/audit?user_id={}", bob.user.id),
        )
        .await;
    let recent = app
        .audit_events(
            &admin.token,
            &format!(
                "/admin/audit?since={}",
                since.to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
        )
        .await;

    // Assert: an update that changed nothing is no event.
    assert_eq!(
        actions(&everything),
        [
            "key.revoked",
            "user.updated",
            "key.created",
            "user.registered",
            "key.created",
            "user.registered",
            "user.registered",
            "signing_key.created"
        ]
    );
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0]["actor"],
        json!({ "user_id": admin.id, "client_id": "password", "address": LOCAL })
    );
    assert_eq!(
        updates[0]["target"],
        json!({ "type": "user", "id": ada.user.id })
    );
    assert_eq!(
        updates[0]["details"],
        json!({ "role": { "from": "user", "to": "admin" } })
    );
    assert_eq!(
        actions(&bobs),
        ["key.revoked", "key.created", "user.registered"]
    );
    assert_eq!(
        bobs[0]["details"],
        json!({ "by": "admin", "owner": bob.user.id })
    );
    assert_eq!(bobs[0]["actor"]["user_id"], json!(admin.id));
    assert_eq!(actions(&recent), ["key.revoked"]);
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_with_an_opaque_cursor() {
    // Arrange: five events of the admin's own.
    let app = spawn_app().await;
    let admin = app.admin().await;
    for name in ["a", "b", "c", "d"] {
        app.create_key(&admin.token, json!({ "name": name })).await;
    }
    let all = app.audit_events(&admin.token, "/me/audit").await;

    // Act
    let resp = app.get(&admin.token, "/me/audit?limit=2").await;
    let first: Value = resp.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get(&admin.token, &format!("/me/audit?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let cursor = second["next_cursor"].as_str().unwrap();
    let third: Value = app
        .get(&admin.token, &format!("/me/audit?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(all.len(), 5);
    let paged: Vec<Value> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap().clone())
        .collect();
    assert_eq!(paged, all);
    assert_eq!(third["items"].as_array().unwrap().len(), 1);
    assert!(third["next_cursor"].is_null());
}

// ---- the routes' errors ----

#[tokio::test]
async fn bad_audit_parameters_are_422_naming_each_field() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;

    // Act
    let all_bad = app
        .get(
            &admin.token,
            "/admin/audit?limit=0&action=user.deleted&user_id=ada&since=yesterday",
        )
        .await;
    let mine_bad = app
        .get(
            &admin.token,
            "/me/audit?action=USER.REGISTERED&since=2030-01-01",
        )
        .await;
    let cursor = app.get(&admin.token, "/admin/audit?cursor=garbage").await;
    let not_a_number = app.get(&admin.token, "/admin/audit?limit=ten").await;

    // Assert
    let problem = assert_problem(all_bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        field_errors(&problem),
        ["limit", "action", "user_id", "since"]
    );
    assert!(
        problem["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("request.throttled"),
        "{problem}"
    );
    let problem = assert_problem(mine_bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["action", "since"]);
    let problem = assert_problem(cursor, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(field_errors(&problem), ["cursor"]);
    assert_problem(not_a_number, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn the_audit_log_needs_a_token_holding_its_scope() {
    // Arrange: a user's login, and a key's token without `keys:manage`.
    let app = spawn_app().await;
    let ada = holder(&app).await;

    // Act
    let anonymous = app.get_public("/me/audit").await;
    let not_admin = app.get(&ada.login, "/admin/audit").await;
    let not_manager = app.get(&ada.from_key, "/me/audit").await;

    // Assert
    assert_eq!(
        www_authenticate(&anonymous).unwrap(),
        r#"Bearer realm="latchkey""#
    );
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    for (resp, scope) in [(not_admin, "admin"), (not_manager, "keys:manage")] {
        let challenge = www_authenticate(&resp).unwrap();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#)
                && challenge.contains(&format!(r#"scope="{scope}""#)),
            "{challenge}"
        );
        assert_problem(resp, StatusCode::FORBIDDEN).await;
    }
}

// ---- no change without its event ----

/// Makes every insert into the audit log fail, as a broken audit table would.
async fn refuse_audit_events(app: &TestApp) {
    let sql = match test_backend() {
        Backend::Sqlite => {
            "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events
             BEGIN SELECT RAISE(ABORT, 'the audit log refuses'); END"
        }
        Backend::Postgres => {
            "CREATE FUNCTION audit_refused() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'the audit log refuses'; END $$;
             CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events
                 FOR EACH ROW EXECUTE FUNCTION audit_refused()"
        }
    };
    app.execute_script(sql).await;
}

async fn accept_audit_events(app: &TestApp) {
    let sql = match test_backend() {
        Backend::Sqlite => "DROP TRIGGER audit_refused",
        Backend::Postgres => "DROP TRIGGER audit_refused ON audit_events",
    };
    app.execute_script(sql).await;
}

/// What the rows of every table count, to show that nothing changed.
async fn row_counts(sql: &Sql) -> Vec<i64> {
    let mut counts = Vec::new();
    for query in [
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM users WHERE disabled OR role = 'admin'",
        "SELECT count(*) FROM api_keys",
        "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL",
        "SELECT count(*) FROM access_changes",
        "SELECT count(*) FROM audit_events",
    ] {
        counts.push(on_sql!(sql, |pool| sqlx::query_scalar(query).fetch_one(pool).await).unwrap());
    }
    counts
}

#[tokio::test]
async fn no_change_lands_without_its_event() {
    // Arrange: an admin, an account with a key and tokens, another to
    // update; then an audit log that refuses every insert.
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ada = holder(&app).await;
    let bob = TestUser::generate().register(&app).await;
    let before = row_counts(&app.sql).await;
    let keyring_before = app.stored_keyring().await;
    refuse_audit_events(&app).await;

    // Act: every kind of change, each of which needs its event.
    let register = app.register("carol@example.com", PASSWORD).await;
    let create_key = app
        .create_key_response(&ada.login, json!({ "name": "new" }))
        .await;
    let revoke_own = app
        .delete(&ada.login, &format!("/keys/{}", ada.key.id))
        .await;
    let revoke_any = app
        .delete(&admin.token, &format!("/admin/keys/{}", ada.key.id))
        .await;
    let update = app
        .patch(
            &admin.token,
            &format!("/admin/users/{}", bob.id),
            json!({ "disabled": true }),
        )
        .await;
    let sign_out = app.sign_out(&ada.login).await;
    let password = app
        .change_password(&ada.login, PASSWORD, "a brand new passphrase")
        .await;
    let revoke_token = app.revoke_at_endpoint(&ada.from_key).await;
    let revoke_key = app.revoke_at_endpoint(&ada.key.key).await;
    let rotate = crate::signing::latchkey(&app, &["signing-key", "rotate"]);

    // Assert: each failed as the storage mapping says (a refused statement
    // is a 500), and nothing of it is stored or in force.
    for (what, resp) in [
        ("POST /users", register),
        ("POST /keys", create_key),
        ("DELETE /keys/{id}", revoke_own),
        ("DELETE /admin/keys/{id}", revoke_any),
        ("PATCH /admin/users/{id}", update),
        ("POST /me/sign-out", sign_out),
        ("PUT /me/password", password),
    ] {
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{what}");
        assert_problem(resp, StatusCode::INTERNAL_SERVER_ERROR).await;
    }
    for resp in [revoke_token, revoke_key] {
        assert_oauth_error(resp, StatusCode::INTERNAL_SERVER_ERROR, "server_error").await;
    }
    assert_eq!(row_counts(&app.sql).await, before);
    assert_eq!(app.get(&ada.from_key, "/me").await.status(), StatusCode::OK);
    assert_eq!(app.get(&ada.login, "/me").await.status(), StatusCode::OK);
    app.exchange(&ada.key).await;
    bob.login(&app).await;
    ada.user.login(&app).await;
    let stderr = String::from_utf8_lossy(&rotate.stderr);
    assert!(!rotate.status.success(), "{stderr}");
    match test_backend() {
        // The database's keyring and its event are one transaction.
        Backend::Postgres => assert_eq!(app.stored_keyring().await, keyring_before),
        // A file cannot share a transaction: the event follows the file,
        // and the command says it could not record it.
        Backend::Sqlite => assert!(
            stderr.contains("the audit log could not record it"),
            "{stderr}"
        ),
    }

    // Act: the audit log takes events again.
    accept_audit_events(&app).await;
    let carol = TestUser::generate().register(&app).await;

    // Assert
    let events = events_of(&app, &admin.token, "user.registered").await;
    assert_eq!(events[0]["target"]["id"], json!(carol.id));
}

#[tokio::test]
async fn a_mixed_run_leaves_one_event_for_each_change() {
    // Arrange and act: accounts, keys, revocations of every kind, updates,
    // sign-outs, a password change and a rotation, some repeated.
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(holder(&app).await);
    }
    let [ada, bob, carol] = &holders[..] else {
        unreachable!()
    };
    let spare = app.create_key(&ada.login, json!({ "name": "spare" })).await;
    for path in [
        format!("/keys/{}", ada.key.id),
        format!("/keys/{}", ada.key.id),
    ] {
        assert_eq!(
            app.delete(&ada.login, &path).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let by_admin = app
        .delete(&admin.token, &format!("/admin/keys/{}", bob.key.id))
        .await;
    assert_eq!(by_admin.status(), StatusCode::NO_CONTENT);
    for token in [
        spare.key.as_str(),
        carol.from_key.as_str(),
        carol.from_key.as_str(),
    ] {
        assert_eq!(app.revoke_at_endpoint(token).await.status(), StatusCode::OK);
    }
    for (user, patch) in [
        (bob.user.id, json!({ "disabled": true })),
        (bob.user.id, json!({ "disabled": false })),
        (carol.user.id, json!({ "role": "admin" })),
        (carol.user.id, json!({ "role": "admin", "disabled": false })),
    ] {
        let resp = app
            .patch(&admin.token, &format!("/admin/users/{user}"), patch)
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(
        app.sign_out(&ada.login).await.status(),
        StatusCode::NO_CONTENT
    );
    let bob_login = bob.user.login(&app).await;
    let changed = app
        .change_password(&bob_login, PASSWORD, "a brand new passphrase")
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    crate::signing::rotate(&app);

    // Assert: what the tables hold is what the log says was done.
    let events = app.all_events(&admin.token).await;
    let count = |action: &str| events.iter().filter(|e| e["action"] == action).count() as i64;
    let rows = |query| scalar(&app.sql, query);
    let updated = |field: &str, to: Value| {
        events
            .iter()
            .filter(|e| e["action"] == "user.updated" && e["details"][field]["to"] == to)
            .count() as i64
    };
    let role_changes = events
        .iter()
        .filter(|e| e["action"] == "user.updated" && e["details"]["role"].is_object())
        .count() as i64;
    assert_eq!(
        rows("SELECT count(*) FROM users").await,
        count("user.registered")
    );
    assert_eq!(
        rows("SELECT count(*) FROM api_keys").await,
        count("key.created")
    );
    assert_eq!(
        rows("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL").await,
        count("key.revoked")
    );
    assert_eq!(
        rows("SELECT count(*) FROM access_changes WHERE kind = 'token_revoked'").await,
        count("token.revoked")
    );
    assert_eq!(
        rows("SELECT count(*) FROM access_changes WHERE kind = 'signed_out'").await,
        count("user.signed_out") + count("user.password_changed") + role_changes
    );
    assert_eq!(
        rows("SELECT count(*) FROM access_changes WHERE kind = 'disabled'").await,
        updated("disabled", json!(true))
    );
    assert_eq!(
        rows("SELECT count(*) FROM access_changes WHERE kind = 'enabled'").await,
        updated("disabled", json!(false))
    );
    assert_eq!(
        [
            count("key.revoked"),
            count("token.revoked"),
            count("user.updated")
        ],
        [3, 1, 3],
        "repeats change nothing, and record nothing"
    );
    assert_eq!(count("signing_key.rotated"), 1);
    assert_eq!(count("signing_key.created"), 1);
}

async fn scalar(sql: &Sql, query: &str) -> i64 {
    on_sql!(sql, |pool| sqlx::query_scalar(query).fetch_one(pool).await).unwrap()
}

async fn scalar_of(sql: &Sql, query: &str, id: Uuid) -> i64 {
    on_sql!(sql, |pool| sqlx::query_scalar(query)
        .bind(id)
        .fetch_one(pool)
        .await)
    .unwrap()
}

// ---- failures, tallied ----

#[tokio::test]
async fn failed_logins_are_tallied_per_address_and_minute_without_the_typed_email() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ada = TestUser::generate().register(&app).await;
    let typed = "not-an-account-typed-here@example.com";
    let start = Utc::now();

    // Act: wrong passwords for an account, and logins of nobody.
    for _ in 0..3 {
        let resp = app.login_response(&ada.email, "not the password").await;
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    for _ in 0..2 {
        let resp = app.login_response(typed, "not the password").await;
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    app.flush_audit().await;
    let first = events_of(&app, &admin.token, "login.failed").await;
    let resp = app.login_response(&ada.email, "still not it").await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    app.flush_audit().await;

    // Assert: one event a minute, growing rather than repeated, naming the
    // account and not what was typed for nobody.
    let tallies = events_of(&app, &admin.token, "login.failed").await;
    assert!(tallies.len() <= minutes_from(start), "{tallies:?}");
    for earlier in &first {
        assert!(tallies.iter().any(|t| t["id"] == earlier["id"]));
    }
    assert_eq!(counted(&tallies), 6);
    assert_eq!(
        reasons(&tallies),
        BTreeMap::from([("unknown_account".into(), 2), ("wrong_password".into(), 4)])
    );
    for tally in &tallies {
        assert_eq!(
            tally["actor"],
            json!({ "user_id": null, "client_id": null, "address": LOCAL })
        );
        assert_eq!(tally["target"], json!({ "type": "user", "id": ada.id }));
        assert!(!tally.to_string().contains(typed), "{tally}");
    }
    let login = ada.login(&app).await;
    let own = app
        .audit_events(&login, "/me/audit?action=login.failed")
        .await;
    assert_eq!(counted(&own), 6);
}

#[tokio::test]
async fn failed_exchanges_name_known_keys_and_fingerprint_unknown_ones() {
    // Arrange: a revoked key, an expired one, one whose owner is disabled,
    // a good one sent with another id, a well-formed key nobody has, and
    // something that is no key.
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ada = holder(&app).await;
    let revoked = app
        .create_key(&ada.login, json!({ "name": "revoked" }))
        .await;
    app.delete(&ada.login, &format!("/keys/{}", revoked.id))
        .await;
    let expired = app
        .create_key(&ada.login, json!({ "name": "expired" }))
        .await;
    app.execute(
        "UPDATE api_keys SET expires_at = created_at WHERE id = $1",
        Uuid::parse_str(&expired.id).unwrap(),
    )
    .await;
    let bob = holder(&app).await;
    let disabled = app
        .patch(
            &admin.token,
            &format!("/admin/users/{}", bob.user.id),
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    let unknown = ApiKey::generate();
    let start = Utc::now();

    // Act
    for (id, key) in [
        (revoked.id.as_str(), revoked.key.as_str()),
        (expired.id.as_str(), expired.key.as_str()),
        (bob.key.id.as_str(), bob.key.key.as_str()),
        (revoked.id.as_str(), ada.key.key.as_str()),
        (ada.key.id.as_str(), unknown.expose()),
        (ada.key.id.as_str(), "lk_not-a-key"),
    ] {
        let resp = app.exchange_response(id, key).await;
        assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
    let introspected = app
        .request(Method::POST, "/auth/introspect", None)
        .basic_auth(&revoked.id, Some(&revoked.key))
        .form(&[("token", ada.from_key.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(introspected, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let at_revoke = app.revoke_at_endpoint(unknown.expose()).await;
    assert_eq!(at_revoke.status(), StatusCode::OK);
    app.flush_audit().await;

    // Assert
    let tallies = events_of(&app, &admin.token, "exchange.failed").await;
    assert!(tallies.len() <= minutes_from(start), "{tallies:?}");
    assert_eq!(counted(&tallies), 8);
    assert_eq!(
        reasons(&tallies),
        BTreeMap::from([
            ("disabled_owner".into(), 1),
            ("expired_key".into(), 1),
            ("malformed_key".into(), 1),
            ("revoked_key".into(), 2),
            ("unknown_key".into(), 2),
            ("wrong_client_id".into(), 1),
        ])
    );
    let fingerprint = unknown.hash().fingerprint();
    let named: Vec<Value> = tallies
        .iter()
        .flat_map(|t| {
            let listed = t["details"]["targets"].as_array().cloned();
            listed
                .unwrap_or_default()
                .into_iter()
                .chain([t["target"].clone()])
        })
        .map(|t| t["id"].clone())
        .collect();
    for key in [&revoked.id, &expired.id, &bob.key.id, &ada.key.id] {
        assert!(named.contains(&json!(key)), "{key} in {tallies:?}");
    }
    assert!(tallies.iter().any(|t| t["details"]["fingerprints"]
        .as_array()
        .is_some_and(|f| f.contains(&json!(fingerprint)))));
    let text = Value::from(tallies).to_string();
    for key in [
        unknown.expose(),
        "lk_not-a-key",
        &revoked.key,
        &expired.key,
        &ada.key.key,
    ] {
        assert!(!text.contains(key), "a key in the audit log: {text}");
    }
}

#[tokio::test]
async fn throttled_requests_are_tallied_by_the_limit_that_refused_them() {
    // Arrange: budgets of one or two.
    let app = spawn_app_with(|c| {
        c.limits.key_failures_per_minute = 2;
        c.limits.login_failures = 1;
        c.limits.registrations_per_hour = 1;
    })
    .await;
    let admin = app.admin().await;
    let ada = TestUser::generate().register(&app).await;

    // Act
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = app
            .exchange_response(&Uuid::now_v7().to_string(), "lk_x")
            .await;
        statuses.push(resp.status().as_u16());
    }
    for _ in 0..2 {
        let resp = app.login_response(&ada.email, "not the password").await;
        statuses.push(resp.status().as_u16());
    }
    let refused = app.register("late@example.com", PASSWORD).await;
    statuses.push(refused.status().as_u16());
    app.flush_audit().await;

    // Assert
    assert_eq!(statuses, [401, 401, 429, 429, 400, 429, 429]);
    let throttled = events_of(&app, &admin.token, "request.throttled").await;
    assert_eq!(
        reasons(&throttled),
        BTreeMap::from([
            ("key_failures".into(), 2),
            ("login_failures".into(), 1),
            ("registrations".into(), 1),
        ])
    );
    let failed = events_of(&app, &admin.token, "exchange.failed").await;
    assert_eq!(
        counted(&failed),
        2,
        "a refusal before the lookup is no failure"
    );
}

#[tokio::test]
async fn failed_attempts_noted_before_shutdown_are_written_at_shutdown() {
    // Arrange
    let mut app = spawn_app().await;
    let resp = app
        .login_response("nobody@example.com", "not the password")
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // Act
    app.stop().await;

    // Assert
    let sql = Sql::open(&app.database).await;
    let details: Vec<String> = on_sql!(sql, |pool| sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'login.failed'"
    )
    .fetch_all(pool)
    .await)
    .unwrap();
    assert_eq!(details.len(), 1);
    let details: Value = serde_json::from_str(&details[0]).unwrap();
    assert_eq!(details["count"], 1);
    sql.close().await;
}

// ---- the command line ----

/// `latchkey admin create`, the password on standard input.
fn admin_create(app: &TestApp, email: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .args(["admin", "create", "--email", email, "--data-dir"])
        .arg(&app.config.data_dir)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = &app.config.database_url {
        command.env("LATCHKEY_DATABASE_URL", url);
    }
    let mut child = command.spawn().expect("the latchkey binary runs");
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_command_line_s_changes_are_the_cli_s_and_the_first_key_the_server_s() {
    // Arrange
    let app = spawn_app().await;
    let old_kid = kid_of(&app.user_token().await);

    // Act
    let created = admin_create(&app, "root@example.com");
    let rotated = crate::signing::rotate(&app);

    // Assert
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = app.login("root@example.com").await;
    let events = app.all_events(&token).await;
    let cli = json!({ "user_id": null, "client_id": "cli", "address": null });
    let rotation = &events[0];
    assert_eq!(rotation["action"], "signing_key.rotated");
    assert_eq!(rotation["actor"], cli);
    let new_kid = rotation["target"]["id"].as_str().unwrap();
    assert!(rotated.contains(new_kid), "{rotated}");
    assert_eq!(rotation["target"]["type"], "signing_key");
    assert_eq!(
        rotation["details"],
        json!({ "alg": "HS256", "replaced": [old_kid] })
    );
    let root = &events[1];
    assert_eq!(root["action"], "user.registered");
    assert_eq!(root["actor"], cli);
    assert_eq!(root["details"], json!({ "role": "admin" }));
    let first = events.last().unwrap();
    assert_eq!(first["action"], "signing_key.created");
    assert_eq!(
        first["actor"],
        json!({ "user_id": null, "client_id": "server", "address": null })
    );
    assert_eq!(
        first["target"],
        json!({ "type": "signing_key", "id": old_kid })
    );
}

// ---- retention ----

#[tokio::test]
async fn events_past_the_retention_are_deleted_and_younger_ones_kept() {
    // Arrange: events older and younger than an hour's retention.
    let app = spawn_app_with(|c| c.audit_retention = Duration::from_secs(3600)).await;
    let event = |minutes_ago| {
        let at = Utc::now() - chrono::Duration::minutes(minutes_ago);
        Event::at(at, Action::UserSignedOut, Actor::cli(), None, json!({}))
    };
    let (old, young) = (event(61), event(59));
    latchkey::db::audit::record_all(&app.db, &[old.clone(), young.clone()])
        .await
        .unwrap();
    let stored = |id: Uuid| {
        scalar_of(
            &app.sql,
            "SELECT count(*) FROM audit_events WHERE id = $1",
            id,
        )
    };
    assert_eq!(stored(old.id).await, 1);

    // Act: another instance prunes as it starts.
    let other = app.another_instance().await;

    // Assert
    let start = Instant::now();
    while stored(old.id).await == 1 {
        assert!(start.elapsed() < Duration::from_secs(10), "not pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored(young.id).await, 1);
    drop(other);
}

// ---- no secret in it ----

/// Collects the lines logged on this test's thread.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

#[tokio::test]
async fn no_key_token_or_password_reaches_an_event_or_an_audit_log_line() {
    // Arrange: the audit log lines of this test. tracing caches whether a
    // log call is enabled when it is first made; while a single scoped
    // subscriber lives, it asks the thread making the call, so one first made
    // on another test's thread (which has none) would stay disabled here. A
    // second subscriber alive makes it ask each call's own thread.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let lines = Lines::default();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("audit=info"))
            .with_writer(lines.clone())
            .with_ansi(false)
            .finish(),
    );
    let mut app = spawn_app().await;
    let admin = app.admin().await;
    let (first, wrong, wrong_current, second) = (
        "first passphrase 9481",
        "wrong passphrase 1837",
        "another wrong one 2290",
        "second passphrase 7719",
    );
    let typed = "my-password-typed-as-the-email-5512";
    let unknown = ApiKey::generate();
    let malformed = "lk_secret-looking-but-malformed-4471";
    let mut secrets: Vec<String> = vec![
        first.into(),
        wrong.into(),
        wrong_current.into(),
        second.into(),
        typed.into(),
        unknown.expose().into(),
        malformed.into(),
        admin.token.clone(),
    ];

    // Act: a session of every kind, right and wrong.
    let ada = NewUser {
        email: format!("ada-{}@example.com", Uuid::now_v7().simple()),
        password: first.into(),
    }
    .register(&app)
    .await;
    let resp = app.login_response(&ada.email, wrong).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app.login_response(typed, first).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let login = ada.login(&app).await;
    let kept = app.create_key(&login, json!({ "name": "kept" })).await;
    let dropped = app.create_key(&login, json!({ "name": "dropped" })).await;
    let token = app.exchange(&kept).await;
    let other_token = app.exchange(&kept).await;
    for (id, key) in [(&kept.id, unknown.expose()), (&kept.id, malformed)] {
        let resp = app.exchange_response(id, key).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let introspected = app
        .request(Method::POST, "/auth/introspect", None)
        .basic_auth(&kept.id, Some(&kept.key))
        .form(&[("token", other_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(introspected.status(), StatusCode::OK);
    for revoked in [token.as_str(), dropped.key.as_str(), unknown.expose()] {
        assert_eq!(
            app.revoke_at_endpoint(revoked).await.status(),
            StatusCode::OK
        );
    }
    let resp = app.change_password(&login, wrong_current, second).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let resp = app.change_password(&login, first, second).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let relogin = access_token_for(&app, &ada.email, second).await;
    secrets.extend([
        login,
        relogin.clone(),
        kept.key.clone(),
        dropped.key.clone(),
        token,
        other_token,
    ]);
    app.flush_audit().await;
    let listed = app.all_events(&admin.token).await;
    app.stop().await;

    // Assert: every event, as stored and as logged, is free of them.
    let sql = Sql::open(&app.database).await;
    let rows: Vec<String> = on_sql!(sql, |pool| sqlx::query_scalar(
        "SELECT action || ' ' || coalesce(actor_client_id, '') || ' '
                || coalesce(actor_address, '') || ' ' || coalesce(target_type, '') || ' '
                || coalesce(target_id, '') || ' ' || details
         FROM audit_events"
    )
    .fetch_all(pool)
    .await)
    .unwrap();
    sql.close().await;
    let stored = format!("{rows:?}");
    let logged = lines.text();
    for action in [
        "user.registered",
        "login.failed",
        "key.created",
        "exchange.failed",
        "token.revoked",
        "key.revoked",
        "user.password_changed",
    ] {
        assert!(stored.contains(action), "{action} is stored: {stored}");
        assert!(logged.contains(action), "{action} is logged: {logged}");
    }
    assert!(format!("{listed:?}").contains("fingerprints"));
    for secret in &secrets {
        assert!(!stored.contains(secret.as_str()), "stored: {secret}");
        assert!(!logged.contains(secret.as_str()), "logged: {secret}");
        assert!(
            !format!("{listed:?}").contains(secret.as_str()),
            "listed: {secret}"
        );
    }
}
