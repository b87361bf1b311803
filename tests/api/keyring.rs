//! The signing keyring on PostgreSQL: kept in the database, sealed with
//! `--keyring-secret`, shared by every instance on it, rotated through the
//! command line, brought from a keyring file by the first instance,
//! and never stored in plaintext. Each test returns at once on SQLite, saying
//! why, except those about what a secret is, which hold on both.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use latchkey::{
    config::{Config, JwtAlg},
    db::{Backend, Db, Location},
    domain::{
        audit::Actor,
        signing::{SigningAlg, SigningKey},
    },
    keyring::{self, Keyring, KeyringSecret, Listed, SigningKeyState},
};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::{
    helpers::{
        access_token, kid_of, new_keyring_secret, postgres_server, skipped_unless, spawn_app,
        spawn_app_on, spawn_app_on_database, spawn_app_with, test_keyring_secret, PgDatabase,
        StallingProxy, TestApp, TestDatabase, ISSUER,
    },
    signing::{
        assert_listed_as_rotated, jwks, kids, latchkey, latchkey_with, rotate,
        wait_for_new_signing_key,
    },
    startup::refused,
};

const WHY: &str = "only PostgreSQL keeps the keyring in the database";

fn behind_the_balancer(config: &mut Config) {
    config.issuer = Some(ISSUER.into());
}

fn eddsa_behind_the_balancer(config: &mut Config) {
    behind_the_balancer(config);
    config.jwt_alg = JwtAlg::EdDsa;
}

/// A database of its own, empty: no keyring yet.
async fn empty_database() -> TestDatabase {
    TestDatabase::Postgres(Arc::new(
        PgDatabase::create(&postgres_server().unwrap()).await,
    ))
}

fn secret() -> KeyringSecret {
    KeyringSecret::parse(test_keyring_secret()).unwrap()
}

/// The database's keyring as the library sees it, for `alg`.
fn database_keyring(app: &TestApp, alg: JwtAlg) -> Keyring {
    let mut config = app.config.clone();
    config.jwt_alg = alg;
    Keyring::in_database(&config, app.db.clone(), secret())
}

fn states(listed: &[Listed]) -> Vec<(String, SigningAlg, SigningKeyState)> {
    listed
        .iter()
        .map(|l| (l.kid.clone(), l.alg, l.state))
        .collect()
}

/// The ids of the current keys of `alg`.
fn current(listed: &[Listed], alg: SigningAlg) -> Vec<String> {
    listed
        .iter()
        .filter(|l| l.alg == alg && l.state == SigningKeyState::Current)
        .map(|l| l.kid.clone())
        .collect()
}

fn assert_no_keyring_file(app: &TestApp) {
    let file = app.config.data_dir.join(keyring::KEYRING_FILE);
    assert!(!file.exists(), "{} was written", file.display());
}

// ---- one keyring for every instance ----

#[tokio::test]
async fn a_token_minted_by_one_instance_verifies_at_the_others() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange: three instances, each with a data directory of its own.
    let first = spawn_app_with(behind_the_balancer).await;
    let second = spawn_app_on(&first, behind_the_balancer).await;
    let third = spawn_app_on(&first, behind_the_balancer).await;
    let apps = [&first, &second, &third];

    // Act
    let mut tokens = Vec::new();
    for app in apps {
        tokens.push(app.user_token().await);
    }

    // Assert: one signing key, and every token verifies everywhere.
    let kid = kid_of(&tokens[0]);
    for token in &tokens {
        assert_eq!(kid_of(token), kid);
        for app in apps {
            assert_eq!(app.get(token, "/me").await.status(), StatusCode::OK);
        }
    }
    for app in apps {
        assert_no_keyring_file(app);
    }
}

#[tokio::test]
async fn a_rotation_from_the_command_line_reaches_every_instance_and_older_tokens_keep_verifying() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange
    let first = spawn_app_with(eddsa_behind_the_balancer).await;
    let second = spawn_app_on(&first, eddsa_behind_the_balancer).await;
    let third = spawn_app_on(&first, eddsa_behind_the_balancer).await;
    let apps = [&first, &second, &third];
    let before = second.user_token().await;
    let old_kid = kid_of(&before);

    // Act: the real binary, given the database and its secret.
    let printed = rotate(&first);

    // Assert: each instance signs with the new key within the deadline...
    assert!(
        printed.contains("servers on this database switch within a second"),
        "{printed}"
    );
    let mut after = Vec::new();
    for app in apps {
        after.push(wait_for_new_signing_key(app, &old_kid).await);
    }
    let new_kid = kid_of(&after[0]);
    assert!(printed.contains(&new_kid), "{printed}");
    assert!(printed.contains(&old_kid), "{printed}");
    // ...every token verifies everywhere, the one from before included...
    for app in apps {
        assert_eq!(app.get(&before, "/me").await.status(), StatusCode::OK);
        for token in &after {
            assert_eq!(kid_of(token), new_kid);
            assert_eq!(app.get(token, "/me").await.status(), StatusCode::OK);
        }
        assert_no_keyring_file(app);
    }
    // ...and the database's keyring lists both, without private material.
    let listed = latchkey(&third, &["signing-key", "list"]);
    assert!(listed.status.success());
    assert_listed_as_rotated(
        &String::from_utf8(listed.stdout).unwrap(),
        &new_kid,
        &old_kid,
    );
}

/// How many connections to `database` wait for a lock.
async fn waiting_for_locks(database: &TestDatabase) -> i64 {
    let mut conn = PgConnection::connect(&database.url()).await.unwrap();
    let waiting = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    waiting
}

/// Holds the keyring's row from the test until `writers` writers wait for
/// it, then lets them all go at once, so that they meet at the lock however
/// their starts were spread in time.
async fn release_together(database: &TestDatabase, writers: i64, locker: &mut PgConnection) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting_for_locks(database).await < writers {
        assert!(
            Instant::now() < deadline,
            "the {writers} writers never all waited for the keyring's row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    locker.execute("COMMIT").await.unwrap();
}

/// Takes the keyring's row lock, as a writer does, on a migrated database.
async fn lock_the_keyring(database: &TestDatabase) -> PgConnection {
    Db::open(&Location::Postgres(database.url()), 1)
        .await
        .expect("the database migrates")
        .close()
        .await;
    let mut locker = PgConnection::connect(&database.url()).await.unwrap();
    locker
        .execute("BEGIN; SELECT sealed FROM signing_keyring FOR UPDATE")
        .await
        .unwrap();
    locker
}

#[tokio::test]
async fn instances_starting_together_on_an_empty_database_make_one_current_key_per_algorithm() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange: an empty keyring whose row the test holds.
    let database = empty_database().await;
    let mut locker = lock_the_keyring(&database).await;

    // Act: four instances, two per algorithm, start at once and each finds
    // no key of its algorithm.
    let starts: Vec<_> = [JwtAlg::Hs256, JwtAlg::EdDsa, JwtAlg::Hs256, JwtAlg::EdDsa]
        .into_iter()
        .map(|alg| {
            let database = database.clone();
            tokio::spawn(
                async move { spawn_app_on_database(&database, move |c| c.jwt_alg = alg).await },
            )
        })
        .collect();
    release_together(&database, 4, &mut locker).await;
    let mut apps = Vec::new();
    for start in starts {
        apps.push(start.await.unwrap());
    }

    // Assert: two keys in all, one current per algorithm, and each instance
    // signs with its algorithm's.
    let listed = database_keyring(&apps[0], JwtAlg::Hs256)
        .list()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{:?}", states(&listed));
    let hs256 = current(&listed, SigningAlg::HS256);
    let eddsa = current(&listed, SigningAlg::EdDSA);
    assert_eq!(hs256.len(), 1);
    assert_eq!(eddsa.len(), 1);
    for app in &apps {
        let expected = match app.config.jwt_alg {
            JwtAlg::Hs256 => &hs256[0],
            JwtAlg::EdDsa => &eddsa[0],
        };
        assert_eq!(&kid_of(&app.user_token().await), expected);
    }
}

#[tokio::test]
async fn a_rotation_racing_a_start_loses_neither_key() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange: an HS256 keyring, whose row the test then holds.
    let first = spawn_app().await;
    let original = kid_of(&first.user_token().await);
    let rotating = database_keyring(&first, JwtAlg::Hs256);
    let mut locker = PgConnection::connect(&first.database.url()).await.unwrap();
    locker
        .execute("BEGIN; SELECT sealed FROM signing_keyring FOR UPDATE")
        .await
        .unwrap();

    // Act: an EdDSA instance starts (adding its key) while a rotation runs.
    let database = first.database.clone();
    let eddsa = tokio::spawn(async move {
        spawn_app_on_database(&database, |c| c.jwt_alg = JwtAlg::EdDsa).await
    });
    let (rotations, ()) = tokio::join!(
        rotating.rotate(Actor::cli()),
        release_together(&first.database, 2, &mut locker)
    );
    let eddsa = eddsa.await.unwrap();

    // Assert: the rotation's key, the replaced one and the new instance's
    // algorithm are all there, one current key per algorithm.
    let rotations = rotations.unwrap();
    let rotated = rotations
        .iter()
        .find(|r| r.alg == SigningAlg::HS256)
        .unwrap();
    assert_eq!(rotated.retired, vec![original.clone()]);
    let listed = rotating.list().await.unwrap();
    assert_eq!(
        current(&listed, SigningAlg::HS256),
        vec![rotated.current.clone()]
    );
    assert!(listed
        .iter()
        .any(|l| l.kid == original && matches!(l.state, SigningKeyState::Verifying { .. })));
    let eddsa_current = current(&listed, SigningAlg::EdDSA);
    assert_eq!(eddsa_current.len(), 1, "{:?}", states(&listed));
    // The EdDSA instance signs with that key, at once or once it reloads.
    let deadline = Instant::now() + Duration::from_secs(10);
    while kid_of(&eddsa.user_token().await) != eddsa_current[0] {
        assert!(
            Instant::now() < deadline,
            "the EdDSA instance never switched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hs256_token = wait_for_new_signing_key(&first, &original).await;
    assert_eq!(kid_of(&hs256_token), rotated.current);
}

#[tokio::test]
async fn a_lost_keyring_table_keeps_the_keys_in_use_and_rotations_reach_the_instance_again() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange
    let first = spawn_app_with(behind_the_balancer).await;
    let second = spawn_app_on(&first, behind_the_balancer).await;
    let before = first.user_token().await;
    let old_kid = kid_of(&before);
    let mut admin = PgConnection::connect(&first.database.url()).await.unwrap();

    // Act: every read of the keyring fails for a few reload intervals.
    admin
        .execute("ALTER TABLE signing_keyring RENAME TO signing_keyring_away")
        .await
        .unwrap();
    tokio::time::sleep(keyring::RELOAD_INTERVAL * 3).await;
    let during = second.user_token().await;
    let verified_during = first.get(&during, "/me").await.status();
    admin
        .execute("ALTER TABLE signing_keyring_away RENAME TO signing_keyring")
        .await
        .unwrap();
    rotate(&first);

    // Assert: signing and verifying went on with the keys in use, and the
    // rotation made after the outage reaches both instances.
    assert_eq!(kid_of(&during), old_kid);
    assert_eq!(verified_during, StatusCode::OK);
    let new_kid = kid_of(&wait_for_new_signing_key(&first, &old_kid).await);
    assert_eq!(
        kid_of(&wait_for_new_signing_key(&second, &old_kid).await),
        new_kid
    );
    assert_eq!(second.get(&before, "/me").await.status(), StatusCode::OK);
}

// ---- refusals at start ----

#[tokio::test]
async fn without_a_keyring_secret_an_instance_on_postgresql_refuses_to_start() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange
    let database = empty_database().await;
    let dir = tempfile::tempdir().unwrap();

    // Act
    let stderr = refused(
        &dir.path().join("data"),
        &["--database-url", &database.url()],
    );

    // Assert
    assert!(stderr.contains("--keyring-secret"), "{stderr}");
    assert!(stderr.contains("LATCHKEY_KEYRING_SECRET"), "{stderr}");
    assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
}

#[tokio::test]
async fn a_secret_that_cannot_open_the_database_s_keyring_is_refused_without_being_printed() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange: a database whose keyring another secret sealed.
    let app = spawn_app().await;
    let before = app.stored_keyring().await.unwrap();
    let other = new_keyring_secret();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = app.database.url();

    // Act
    let serve = refused(&data, &["--database-url", &url, "--keyring-secret", &other]);
    let mut config = app.config.clone();
    config.keyring_secret = Some(other.clone());
    let cli = latchkey_with(&config, &["signing-key", "rotate"]);

    // Assert
    let cli_stderr = String::from_utf8(cli.stderr).unwrap();
    assert!(!cli.status.success(), "{cli_stderr}");
    for stderr in [&serve, &cli_stderr] {
        assert!(
            stderr.contains("wrong --keyring-secret for this database"),
            "{stderr}"
        );
        assert!(!stderr.contains(&other), "the secret is printed: {stderr}");
    }
    assert_eq!(
        app.stored_keyring().await.unwrap(),
        before,
        "the keyring is unchanged"
    );
}

#[tokio::test]
async fn a_configured_key_on_postgresql_needs_no_keyring_secret() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange
    let key = SigningKey::generate(SigningAlg::HS256).unwrap();

    // Act
    let app = spawn_app_with(|c| {
        c.keyring_secret = None;
        c.jwt_secret = Some(key.private_text());
    })
    .await;

    // Assert
    let token = app.user_token().await;
    assert_eq!(kid_of(&token), key.kid());
    assert_eq!(app.get(&token, "/me").await.status(), StatusCode::OK);
    assert_eq!(app.stored_keyring().await, None, "no keyring was made");
    assert_no_keyring_file(&app);
}

#[test]
fn a_keyring_secret_that_is_not_32_bytes_of_base64_is_refused_without_being_printed() {
    // Arrange: on SQLite too, where the secret is otherwise unused.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let short = STANDARD.encode([7u8; 16]);
    let not_base64 = "hunter2-is-not-base64!";

    // Act
    let too_short = refused(&data, &["--keyring-secret", &short]);
    let garbled = refused(&data, &["--keyring-secret", not_base64]);

    // Assert
    assert!(too_short.contains("must be 32 bytes"), "{too_short}");
    assert!(too_short.contains("16 bytes"), "{too_short}");
    assert!(garbled.contains("not base64"), "{garbled}");
    for stderr in [&too_short, &garbled] {
        assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");
        assert!(!stderr.contains(&short), "{stderr}");
        assert!(!stderr.contains(not_base64), "{stderr}");
    }
}

#[tokio::test]
async fn on_sqlite_a_keyring_secret_is_accepted_and_the_keyring_stays_the_file() {
    if skipped_unless(Backend::Sqlite, "on PostgreSQL the secret is used") {
        return;
    }
    // Act
    let app = spawn_app_with(|c| c.keyring_secret = Some(new_keyring_secret())).await;

    // Assert
    let token = app.user_token().await;
    assert_eq!(app.get(&token, "/me").await.status(), StatusCode::OK);
    assert!(app.config.data_dir.join(keyring::KEYRING_FILE).is_file());
}

// ---- nothing in plaintext ----

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The forms a signing key's secret could be stored in: its text (the HS256
/// secret, the PEM), and for Ed25519 the PEM's base64 body and the raw seed
/// in hex (as PostgreSQL prints bytes), base64 and base64url (a JWK's `d`).
fn secret_forms(key: &SigningKey) -> Vec<(String, Vec<u8>)> {
    let text = key.private_text();
    let mut forms = vec![
        (format!("{} text", key.kid()), text.clone().into_bytes()),
        (
            format!("{} text in hex", key.kid()),
            hex(text.as_bytes()).into_bytes(),
        ),
        (
            format!("{} text in base64", key.kid()),
            STANDARD.encode(&text).into_bytes(),
        ),
    ];
    if key.alg() == SigningAlg::EdDSA {
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(&body).unwrap();
        let seed = der[der.len() - 32..].to_vec();
        forms.extend([
            (format!("{} PEM body", key.kid()), body.into_bytes()),
            (format!("{} seed", key.kid()), seed.clone()),
            (
                format!("{} seed in hex", key.kid()),
                hex(&seed).into_bytes(),
            ),
            (
                format!("{} seed in base64", key.kid()),
                STANDARD.encode(&seed).into_bytes(),
            ),
            (
                format!("{} seed in base64url", key.kid()),
                URL_SAFE_NO_PAD.encode(&seed).into_bytes(),
            ),
        ]);
    }
    forms
}

#[tokio::test]
async fn the_database_holds_no_signing_key_secret_or_credential_in_plaintext() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange: both algorithms, a rotation, an account, a key and tokens.
    let mut hs256 = spawn_app().await;
    let mut eddsa = spawn_app_on(&hs256, |c| c.jwt_alg = JwtAlg::EdDsa).await;
    let email = format!("scan-{}@example.com", uuid::Uuid::now_v7().simple());
    let password = format!("pw-{}", uuid::Uuid::now_v7().simple());
    assert_eq!(
        hs256.register(&email, &password).await.status(),
        StatusCode::CREATED
    );
    let login_token = access_token(hs256.login_response(&email, &password).await).await;
    let key = hs256
        .create_key(&login_token, json!({ "name": "scanned" }))
        .await;
    let eddsa_token = eddsa.exchange(&key).await;
    let old_kid = kid_of(&eddsa_token);
    rotate(&eddsa);
    let rotated_token = wait_for_new_signing_key(&eddsa, &old_kid).await;
    let mut keys = Vec::new();
    for alg in [JwtAlg::Hs256, JwtAlg::EdDsa] {
        let set = database_keyring(&hs256, alg)
            .load_or_create()
            .await
            .unwrap();
        keys.push(set.current);
        keys.extend(set.previous);
    }
    assert_eq!(keys.len(), 4, "two keys per algorithm after the rotation");

    // Act: every row of every table as text, and the sealed keyring itself.
    hs256.stop().await;
    eddsa.stop().await;
    let rows = hs256.stored_bytes().await;
    let sealed = hs256.stored_keyring().await.unwrap();

    // Assert: the scan reads real data...
    assert!(contains(&rows, email.as_bytes()), "the email is not stored");
    assert!(
        contains(&rows, hex(&sealed).as_bytes()),
        "the keyring row is not scanned"
    );
    // ...and no secret is in it.
    let signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    let keyring_secret = test_keyring_secret();
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("the API key".into(), key.key.clone().into_bytes()),
        (
            "the API key without its prefix".into(),
            key.key.strip_prefix("lk_").unwrap().into(),
        ),
        ("the password".into(), password.clone().into_bytes()),
        ("the login token".into(), login_token.clone().into_bytes()),
        (
            "the login token's signature".into(),
            signature(&login_token).into_bytes(),
        ),
        ("the EdDSA token".into(), eddsa_token.clone().into_bytes()),
        (
            "the rotated token".into(),
            rotated_token.clone().into_bytes(),
        ),
        (
            "the keyring secret".into(),
            keyring_secret.as_bytes().to_vec(),
        ),
        (
            "the keyring secret's bytes".into(),
            STANDARD.decode(keyring_secret).unwrap(),
        ),
        (
            "the keyring secret's bytes in hex".into(),
            hex(&STANDARD.decode(keyring_secret).unwrap()).into_bytes(),
        ),
    ];
    for key in &keys {
        secrets.extend(secret_forms(key));
    }
    for (what, secret) in &secrets {
        assert!(!contains(&rows, secret), "{what} is stored in plaintext");
        assert!(
            !contains(&sealed, secret),
            "{what} is in the sealed keyring"
        );
    }
}

// ---- a stalled database ----

#[tokio::test]
async fn a_stalled_database_connection_does_not_hold_the_watcher_and_later_rotations_arrive() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange: a second instance whose database connections pass through a
    // proxy the test can stall. With EdDSA its JWK Set shows the keys in
    // force without touching the database.
    let first = spawn_app_with(eddsa_behind_the_balancer).await;
    let proxy = StallingProxy::start(&first.database.url()).await;
    let proxied = proxy.url(&first.database.url());
    let second = spawn_app_on(&first, |c| {
        eddsa_behind_the_balancer(c);
        c.database_url = Some(proxied);
    })
    .await;
    let old_kid = kid_of(&first.user_token().await);
    assert_eq!(published(&second).await, vec![old_kid.clone()]);

    // Act: the connection that carries the keyring back to it goes silent
    // (after the pool checked it out, so only a bound on the read itself can
    // end the wait), for longer than a read of the keyring may take; new
    // connections then work again; a rotation.
    let sealed = first.stored_keyring().await.unwrap();
    proxy.stall_on(&sealed[..16]);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stalled_kids = published(&second).await;
    proxy.heal();
    rotate(&first);
    let new_kid = kid_of(&wait_for_new_signing_key(&first, &old_kid).await);

    // Assert: the stalled instance kept its keys, then took the rotation.
    assert_eq!(stalled_kids, vec![old_kid.clone()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !published(&second).await.contains(&new_kid) {
        assert!(
            Instant::now() < deadline,
            "the stalled instance never read the rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The key ids an instance publishes, from its memory.
async fn published(app: &TestApp) -> Vec<String> {
    kids(&jwks(app).await)
}

// ---- the upgrade from a keyring file ----

#[tokio::test]
async fn the_first_instance_on_a_database_without_a_keyring_brings_its_file_s_keys() {
    if skipped_unless(Backend::Postgres, WHY) {
        return;
    }
    // Arrange: data directories whose servers signed with a keyring file
    // before the keyring moved into the database.
    let before = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut kids = Vec::new();
    for dir in [&before, &other] {
        let config = Config::new(dir.path());
        let db = latchkey::open_db(&config).await.unwrap();
        let keys = Keyring::in_file(&config, &db)
            .load_or_create()
            .await
            .unwrap();
        db.close().await;
        kids.push(keys.current.kid().to_owned());
    }

    // Act: an instance on each, one after the other, on one empty database.
    let first = spawn_app_with(|c| {
        behind_the_balancer(c);
        c.data_dir = before.path().to_owned();
    })
    .await;
    let second = spawn_app_on(&first, |c| {
        behind_the_balancer(c);
        c.data_dir = other.path().to_owned();
    })
    .await;

    // Assert: both sign with the first file's key, which the database now
    // holds; the second file changed nothing.
    for app in [&first, &second] {
        assert_eq!(kid_of(&app.user_token().await), kids[0]);
    }
    let listed = database_keyring(&first, JwtAlg::Hs256)
        .list()
        .await
        .unwrap();
    assert_eq!(current(&listed, SigningAlg::HS256), vec![kids[0].clone()]);
}
