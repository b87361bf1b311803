//! `latchkey backup FILE`, run as an operator runs the binary, beside a
//! server that keeps writing: the copy holds every write acknowledged before
//! it began, and a server restored from it (with the data directory's
//! keyring) serves those rows, keys and tokens. On SQLite whichever backend
//! the suite runs on: PostgreSQL is backed up with pg_dump.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use latchkey::keyring::KEYRING_FILE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{holder, on_sql, spawn_sqlite_app_in, spawn_sqlite_app_with, ISSUER};

/// `latchkey backup` with `args`, configured by its flags alone: no
/// LATCHKEY_* variable of the test's environment reaches it.
async fn backup(data_dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LATCHKEY_") {
            command.env_remove(name);
        }
    }
    command
        .arg("backup")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    // Off the test's one thread, so the server and its clients run meanwhile.
    tokio::task::spawn_blocking(move || command.output().expect("the latchkey binary runs"))
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

#[tokio::test]
async fn a_backup_taken_while_writes_go_on_holds_every_write_acknowledged_before_it() {
    // Arrange: a server whose tokens verify at another address, an account
    // with a key, and a client that keeps creating todos, noting each one
    // the server acknowledged.
    let configure = |c: &mut latchkey::config::Config| {
        c.issuer = Some(ISSUER.into());
        c.token_ttl = Duration::from_secs(3600);
    };
    let app = spawn_sqlite_app_with(configure).await;
    let ada = holder(&app).await;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, url, token) = (app.client.clone(), app.url("/todos"), ada.login.clone());
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let title = format!("todo {n}");
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "title": title }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::CREATED);
                let todo: Value = resp.json().await.unwrap();
                let id = todo["id"].as_str().unwrap().to_owned();
                acked.lock().unwrap().push((id, title));
            }
        })
    };
    while acked.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.backup");

    // Act: the writes acknowledged so far are those the copy must hold;
    // the writer goes on while it is taken.
    let before: Vec<(String, String)> = acked.lock().unwrap().clone();
    let out = backup(&app.config.data_dir, &[file.to_str().unwrap()]).await;
    let during = acked.lock().unwrap().len() - before.len();
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("the writer saw only successes");

    // Restore: the copy as the database of a new data directory, with the
    // old one's keyring beside it, and a server started on it.
    let restored_dir = tempfile::tempdir().unwrap();
    let data = restored_dir.path().join("data");
    latchkey::owner_only::create_dir_all(&data).unwrap();
    std::fs::copy(&file, data.join("latchkey.db")).unwrap();
    std::fs::copy(
        app.config.data_dir.join(KEYRING_FILE),
        data.join(KEYRING_FILE),
    )
    .unwrap();
    let restored = spawn_sqlite_app_in(restored_dir, configure).await;

    // Assert
    eprintln!(
        "{} todos acknowledged before the backup, {during} while it ran",
        before.len()
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(KEYRING_FILE), "{said}");
    assert_eq!(mode(&file), 0o600);
    let integrity: String = on_sql!(restored.sql, |pool| sqlx::query_scalar(
        "PRAGMA integrity_check"
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(integrity, "ok");
    // Tokens issued before the backup verify, the key still exchanges, and
    // every acknowledged todo is there.
    assert_eq!(
        restored.get(&ada.from_key, "/me").await.status(),
        StatusCode::OK
    );
    let from_key = restored.exchange(&ada.key).await;
    for (id, title) in &before {
        let resp = restored.get(&from_key, &format!("/todos/{id}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{title}");
        let todo: Value = resp.json().await.unwrap();
        assert_eq!(todo["title"], title.as_str());
    }
    // The password logs in (`login` asserts the token).
    restored.login(&ada.user.email).await;
}

/// A file at `path` that is not a backup, readable by everyone.
fn something_else(path: &Path) {
    std::fs::write(path, "not a database").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[tokio::test]
async fn an_existing_file_is_refused_unless_the_backup_is_forced() {
    // Arrange
    let app = spawn_sqlite_app_with(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.backup");
    something_else(&file);
    let path = file.to_str().unwrap();

    // Act
    let refused = backup(&app.config.data_dir, &[path]).await;
    let kept = std::fs::read(&file).unwrap();
    let forced = backup(&app.config.data_dir, &[path, "--force"]).await;

    // Assert
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("exists"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(kept, b"not a database");
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(std::fs::read(&file).unwrap().starts_with(SQLITE_HEADER));
    assert_eq!(mode(&file), 0o600, "the replaced file was 0644");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing but the backup is left: {left:?}");
}

#[tokio::test]
async fn a_postgresql_database_is_refused_pointing_to_pg_dump_without_showing_its_password() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.backup");

    // Act
    let out = backup(
        &dir.path().join("data"),
        &[
            file.to_str().unwrap(),
            "--database-url",
            "postgres://latchkey:s3cret-password@db.example.test/latchkey",
        ],
    )
    .await;

    // Assert
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("pg_dump"), "{said}");
    assert!(said.contains("--keyring-secret"), "{said}");
    assert!(!said.contains("s3cret-password"), "{said}");
    assert!(!file.exists());
}

#[tokio::test]
async fn a_data_directory_without_a_database_is_refused_and_left_without_one() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("latchkey.backup");

    // Act
    let out = backup(&data, &[file.to_str().unwrap()]).await;

    // Assert
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no database"), "{}", stderr(&out));
    assert!(!data.exists(), "nothing was created");
    assert!(!file.exists());
}
