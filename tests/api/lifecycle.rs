//! The server over time: restarts keep data and the signing keys, shutdown
//! flushes pending key-use times, the database holds no secret in plaintext,
//! and SQLite's files are owner-only and in WAL mode.

use std::{path::Path, time::Duration};

use chrono::{DateTime, SubsecRound, Utc};
use latchkey::db::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

use crate::helpers::{
    access_token, skipped_unless, spawn_app, spawn_app_with, test_backend, titles, Sql, TestApp,
    TestUser, ISSUER,
};

async fn key_record(app: &TestApp, token: &str, id: &str) -> Value {
    let resp = app.get(token, &format!("/keys/{id}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- restarts ----

#[tokio::test]
async fn a_restart_on_the_same_data_directory_keeps_every_row_and_the_signing_keys() {
    // Arrange
    let app = spawn_app_with(|config| config.issuer = Some(ISSUER.into())).await;
    let user = TestUser::generate().register(&app).await;
    let login_token = user.login(&app).await;
    let key = app
        .create_key(&login_token, json!({ "name": "survivor" }))
        .await;
    let key_token = app.exchange(&key).await;
    app.create_todo(&key_token, "before restart 1").await;
    app.create_todo(&key_token, "before restart 2").await;
    let keyring = app.stored_keyring().await.expect("a generated keyring");
    let me_before: Value = app.get(&login_token, "/me").await.json().await.unwrap();

    // Act
    let app = app.restart().await;

    // Assert: the same keys, still owner-only.
    assert_eq!(app.stored_keyring().await.unwrap(), keyring);
    #[cfg(unix)]
    {
        if test_backend() == Backend::Sqlite {
            let keyring_file = app.config.data_dir.join(latchkey::keyring::KEYRING_FILE);
            assert_eq!(mode(&keyring_file), 0o600, "the signing keyring's mode");
        }
        assert_eq!(
            mode(&app.config.data_dir),
            0o700,
            "the data directory's mode"
        );
    }
    // Tokens minted before the restart still verify.
    let me_after = app.get(&login_token, "/me").await;
    assert_eq!(me_after.status(), StatusCode::OK);
    assert_eq!(me_after.json::<Value>().await.unwrap(), me_before);
    let page = app.get(&key_token, "/todos").await;
    assert_eq!(page.status(), StatusCode::OK);
    let page: Value = page.json().await.unwrap();
    assert_eq!(titles(&page), ["before restart 1", "before restart 2"]);
    // The key still exchanges, and its record is intact.
    let fresh = app.exchange(&key).await;
    let page: Value = app.get(&fresh, "/todos").await.json().await.unwrap();
    assert_eq!(titles(&page), ["before restart 1", "before restart 2"]);
    let new_login = user.login(&app).await;
    let record = key_record(&app, &new_login, &key.id).await;
    for field in [
        "id",
        "name",
        "hint",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
    ] {
        assert_eq!(record[field], key.body[field], "{field}");
    }
    // The account is still there: registering the email again is a conflict.
    let again = app.register(&user.email, &user.password).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn last_used_at_pending_at_shutdown_is_flushed() {
    // Arrange
    let app = spawn_app().await;
    let user = TestUser::generate().register(&app).await;
    let token = user.login(&app).await;
    let used = app.create_key(&token, json!({ "name": "used" })).await;
    let unused = app.create_key(&token, json!({ "name": "unused" })).await;
    let before = Utc::now().trunc_subsecs(3);

    // Act: exchange, then shut down at once, well within the one-second
    // batching interval.
    app.exchange(&used).await;
    let app = app.restart().await;

    // Assert
    let token = user.login(&app).await;
    let record = key_record(&app, &token, &used.id).await;
    let last_used: DateTime<Utc> = record["last_used_at"]
        .as_str()
        .expect("last_used_at was written at shutdown")
        .parse()
        .unwrap();
    assert!(last_used >= before, "{last_used} < {before}");
    assert!(last_used <= Utc::now());
    let record = key_record(&app, &token, &unused.id).await;
    assert!(record["last_used_at"].is_null(), "{record}");
}

#[tokio::test]
async fn last_used_at_is_written_within_seconds_while_running() {
    // Arrange
    let app = spawn_app().await;
    let token = app.user_token().await;
    let key = app.create_key(&token, json!({ "name": "busy" })).await;
    assert!(key.body["last_used_at"].is_null());

    // Act
    app.exchange(&key).await;

    // Assert: the batch writer runs every second; allow a few.
    let mut record = Value::Null;
    for _ in 0..50 {
        record = key_record(&app, &token, &key.id).await;
        if record["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(record["last_used_at"].is_string(), "{record}");
}

// ---- what is stored ----

#[tokio::test]
async fn the_database_holds_no_key_password_or_token_in_plaintext() {
    // Arrange
    let mut app = spawn_app().await;
    let email = format!("scan-{}@example.com", Uuid::now_v7().simple());
    let password = format!("pw-{}", Uuid::now_v7().simple());
    assert_eq!(
        app.register(&email, &password).await.status(),
        StatusCode::CREATED
    );
    let login_token = access_token(app.login_response(&email, &password).await).await;
    let key = app
        .create_key(&login_token, json!({ "name": "scanned" }))
        .await;
    let key_token = app.exchange(&key).await;
    let marker = format!("todo-{}", Uuid::now_v7().simple());
    app.create_todo(&key_token, &marker).await;

    // Act: stop the server so everything is stored (on SQLite, on disk), then
    // read everything the database keeps.
    app.stop().await;
    let bytes = app.stored_bytes().await;

    // Assert: the scan reads real data: the email and the todo are there.
    assert!(
        contains(&bytes, email.as_bytes()),
        "the email is not stored"
    );
    assert!(
        contains(&bytes, marker.as_bytes()),
        "the todo is not stored"
    );
    // No secret is.
    let key_body = key.key.strip_prefix("lk_").unwrap();
    let signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    for (what, secret) in [
        ("the API key", key.key.clone()),
        ("the API key without its prefix", key_body.to_owned()),
        ("the password", password.clone()),
        ("the login token", login_token.clone()),
        ("the login token's signature", signature(&login_token)),
        ("the exchanged token", key_token.clone()),
        ("the exchanged token's signature", signature(&key_token)),
    ] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{what} is stored in plaintext"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_files_are_owner_only_in_a_directory_that_others_may_read() {
    use std::os::unix::fs::PermissionsExt;

    if skipped_unless(Backend::Sqlite, "PostgreSQL's files are its server's") {
        return;
    }
    // Arrange: a data directory that already existed, open to everyone.
    let mut app = spawn_app_with(|config| {
        std::fs::create_dir_all(&config.data_dir).unwrap();
        std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    })
    .await;
    TestUser::generate().register(&app).await;
    let files = ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm"]
        .map(|name| app.config.data_dir.join(name));

    // Act: the files as SQLite created them, then as a restart finds files
    // that an earlier version left readable.
    let created = files.clone().map(|path| mode(&path));
    app.stop().await;
    for path in &files {
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let app = app.restart().await;
    TestUser::generate().register(&app).await;
    let restarted = files.clone().map(|path| mode(&path));

    // Assert
    assert_eq!(
        mode(&app.config.data_dir),
        0o755,
        "the directory is left as it was"
    );
    assert_eq!(created, [0o600; 3], "{files:?} as created");
    assert_eq!(restarted, [0o600; 3], "{files:?} after a restart");
}

#[tokio::test]
async fn the_database_runs_in_wal_mode() {
    if skipped_unless(Backend::Sqlite, "WAL mode is SQLite's") {
        return;
    }
    // Arrange
    let app = spawn_app().await;
    let Sql::Sqlite(reading) = &app.sql else {
        unreachable!("an SQLite app")
    };
    TestUser::generate().register(&app).await;

    let mut writing =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
            .await
            .unwrap();

    // Act: as a reader and as a writer see it
    let reader: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(reading)
        .await
        .unwrap();
    let writer: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut writing)
        .await
        .unwrap();

    // Assert
    assert_eq!(reader.to_lowercase(), "wal");
    assert_eq!(writer.to_lowercase(), "wal");
    assert!(app.db_path().is_file(), "{}", app.db_path().display());
}

#[tokio::test]
async fn a_database_a_newer_version_migrated_further_still_starts_this_one() {
    // Arrange: a migration this version does not know, as the first instance
    // of the next version applies it during a rolling upgrade.
    let app = spawn_app_with(|c| c.issuer = Some(ISSUER.into())).await;
    let token = app.user_token().await;
    app.create_todo(&token, "kept").await;
    let checksum = match test_backend() {
        Backend::Sqlite => "X'00'",
        Backend::Postgres => r"'\x00'::bytea",
    };
    app.execute(
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (29991231000001, CAST($1 AS TEXT), TRUE, {checksum}, 0)"
        ),
        Uuid::now_v7(),
    )
    .await;

    // Act
    let again = app.restart().await;

    // Assert
    assert_eq!(again.get_public("/ready").await.status(), StatusCode::OK);
    let page: Value = again.get(&token, "/todos").await.json().await.unwrap();
    assert_eq!(titles(&page), ["kept"]);
}
