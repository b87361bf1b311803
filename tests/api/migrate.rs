//! `latchkey migrate`: an SQLite data directory copied into PostgreSQL by the
//! real binary, then served from there. The copies need a PostgreSQL server
//! and return at once without one, saying why; the refusals of what cannot
//! be copied run on either backend.

use std::{
    path::Path,
    process::{Command, Output},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use latchkey::db::{Backend, Db, Location};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{sqlite::SqliteConnectOptions, Connection, Executor, PgConnection, SqliteConnection};
use uuid::Uuid;

use crate::helpers::{
    assert_oauth_error, kid_of, on_sql, postgres_server, skipped_unless, spawn_app,
    spawn_app_on_database, spawn_sqlite_app_with, test_keyring_secret, PgDatabase, Sql, TestApp,
    TestDatabase, TestUser,
};

/// One issuer before and after, so tokens issued on SQLite verify on
/// PostgreSQL: by default it follows the port, which a restart changes.
const ISSUER: &str = "http://latchkey.test";

/// Put in the target's URL: no output may show it.
const URL_PASSWORD: &str = "hunter2-in-the-url";

/// Runs `latchkey migrate --to URL` on `data_dir` as an operator would,
/// with nothing else set.
fn latchkey_migrate(data_dir: &Path, to: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["migrate", "--to", to, "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_clear()
        .output()
        .expect("the latchkey binary runs")
}

/// `latchkey migrate` with the keyring secret the run's apps on PostgreSQL
/// are given, so that they can open the keyring it copies.
fn migrate(data_dir: &Path, to: &str, args: &[&str]) -> Output {
    let mut with_secret = vec!["--keyring-secret", test_keyring_secret()];
    with_secret.extend_from_slice(args);
    latchkey_migrate(data_dir, to, &with_secret)
}

/// Standard output and standard error, asserting that neither shows the
/// password of a URL.
fn said(out: &Output) -> (String, String) {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    for text in [&stdout, &stderr] {
        assert!(!text.contains("hunter2"), "a password is shown: {text}");
    }
    (stdout, stderr)
}

fn succeeded(out: &Output) -> String {
    let (stdout, stderr) = said(out);
    assert!(out.status.success(), "migrate failed: {stderr}");
    stdout
}

fn failed(out: &Output) -> String {
    let (stdout, stderr) = said(out);
    assert!(!out.status.success(), "migrate succeeded: {stdout}");
    stderr
}

/// The database's URL with a password in it, unless it has one already: the
/// suite's server trusts its user, so the password is never asked for.
fn with_password(url: &str) -> String {
    let mut url = reqwest::Url::parse(url).unwrap();
    if url.password().is_none() {
        url.set_password(Some(URL_PASSWORD)).unwrap();
    }
    url.into()
}

type UserRow = (Uuid, String, String, String, bool, DateTime<Utc>);
type KeyRow = (
    Uuid,
    Uuid,
    String,
    Vec<u8>,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);
type TodoRow = (Uuid, Uuid, String, bool, DateTime<Utc>, DateTime<Utc>);
type ChangeRow = (i64, String, Uuid, Option<Uuid>, i64, i64);
type EventRow = (
    Uuid,
    DateTime<Utc>,
    String,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Uuid>,
    String,
);

/// Every column of every row the copy carries, in key order.
#[derive(Debug, PartialEq)]
struct Tables {
    users: Vec<UserRow>,
    keys: Vec<KeyRow>,
    todos: Vec<TodoRow>,
    changes: Vec<ChangeRow>,
    events: Vec<EventRow>,
}

impl Tables {
    fn counts(&self) -> [usize; 5] {
        [
            self.users.len(),
            self.keys.len(),
            self.todos.len(),
            self.changes.len(),
            self.events.len(),
        ]
    }
}

async fn tables(sql: &Sql) -> Tables {
    on_sql!(sql, |pool| Tables {
        users: sqlx::query_as(
            "SELECT id, email, password_hash, role, disabled, created_at FROM users ORDER BY id"
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        keys: sqlx::query_as(
            "SELECT id, user_id, name, key_hash, hint, scopes, created_at, expires_at,
                    last_used_at, revoked_at
             FROM api_keys ORDER BY id"
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        todos: sqlx::query_as(
            "SELECT id, user_id, title, completed, created_at, updated_at FROM todos ORDER BY id"
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        changes: sqlx::query_as(
            "SELECT seq, kind, user_id, subject, at_ms, until_ms FROM access_changes ORDER BY seq"
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        events: sqlx::query_as(
            "SELECT id, at, action, actor_user_id, actor_client_id, actor_address, target_type,
                    target_id, target_user_id, details
             FROM audit_events ORDER BY id"
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    })
}

/// `GET path` as `token`, answered 200.
async fn read(app: &TestApp, token: &str, path: &str) -> Value {
    let resp = app.get(token, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.json().await.unwrap()
}

/// The caller's keys once the key-use times, written behind the exchanges,
/// have reached the database for `used`.
async fn keys_once_used(app: &TestApp, token: &str, used: &str) -> Value {
    let start = Instant::now();
    loop {
        let keys = read(app, token, "/keys").await;
        let key = keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == used)
            .unwrap();
        if !key["last_used_at"].is_null() {
            return keys;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the key's use was not written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_data_directory_moved_to_postgresql_keeps_every_key_login_todo_revocation_and_event() {
    if skipped_unless(Backend::Postgres, "the copy's target is PostgreSQL") {
        return;
    }
    // Arrange: on SQLite, accounts with keys of every kind (used, expiring
    // later with microseconds, narrowed, revoked), todos, a disabled account,
    // a sign-out, and the audit events of all of it.
    let mut app = spawn_sqlite_app_with(|c| c.issuer = Some(ISSUER.into())).await;
    let admin = app.admin().await;
    let ada = TestUser::generate().register(&app).await;
    let ada_signed_out = ada.login(&app).await;
    let ci = app
        .create_key(&ada_signed_out, json!({ "name": "ci" }))
        .await;
    let deploy = app
        .create_key(
            &ada_signed_out,
            json!({
                "name": "deploy",
                "scopes": ["todos:read"],
                "expires_at": "2099-06-30T12:34:56.123456Z",
            }),
        )
        .await;
    let old = app
        .create_key(&ada_signed_out, json!({ "name": "old" }))
        .await;
    let revoked = app
        .delete(&ada_signed_out, &format!("/keys/{}", old.id))
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    app.exchange(&ci).await;
    for title in ["Buy milk", "Ship 1.0"] {
        app.create_todo(&ada_signed_out, title).await;
    }
    let bob = TestUser::generate().register(&app).await;
    let bob_login = bob.login(&app).await;
    let laptop = app
        .create_key(&bob_login, json!({ "name": "laptop" }))
        .await;
    let watered = app.create_todo(&bob_login, "Water the plants").await;
    let completed = app
        .patch(
            &bob_login,
            &format!("/todos/{}", watered["id"].as_str().unwrap()),
            json!({ "completed": true }),
        )
        .await;
    assert_eq!(completed.status(), StatusCode::OK);
    app.create_todo(&bob_login, "Call the bank").await;
    let carol = TestUser::generate().register(&app).await;
    let carol_key = app
        .create_key(&carol.login(&app).await, json!({ "name": "cron" }))
        .await;
    // A failed login, tallied for the audit log and written at the stop.
    let wrong = app
        .login_response(&carol.email, "not carol's password")
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let disabled = app
        .patch(
            &admin.token,
            &format!("/admin/users/{}", carol.id),
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    let signed_out = app
        .request(Method::POST, "/me/sign-out", Some(&ada_signed_out))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let ada_login = ada.login(&app).await;

    let ada_keys = keys_once_used(&app, &ada_login, &ci.id).await;
    let ada_todos = read(&app, &ada_login, "/todos?limit=100").await;
    let bob_todos = read(&app, &bob_login, "/todos?limit=100").await;
    let users = read(&app, &admin.token, "/admin/users?limit=100").await;
    app.stop().await;
    let source = Sql::open(&app.database).await;
    let copied = tables(&source).await;
    assert_eq!(copied.counts(), [4, 5, 4, 3, 14]);

    // Act
    let target = Arc::new(PgDatabase::create(&postgres_server().unwrap()).await);
    let out = migrate(&app.config.data_dir, &with_password(&target.url), &[]);

    // Assert: every column of every row is on PostgreSQL as it was.
    let stdout = succeeded(&out);
    assert!(
        stdout
            .contains("copied 4 accounts, 5 API keys, 4 todos, 3 revocation feed entries and 14 audit events from "),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(database {})", target.name)),
        "{stdout}"
    );
    assert!(stdout.contains("copied 1 signing key from "), "{stdout}");
    let target_db = TestDatabase::Postgres(Arc::clone(&target));
    let on_target = Sql::open(&target_db).await;
    assert_eq!(tables(&on_target).await, copied);

    // Assert: a server on PostgreSQL, with a data directory of its own (the
    // keyring is the database's now), shows what the SQLite one showed, to
    // the tokens it issued, and signs with the same key.
    let moved = spawn_app_on_database(&target_db, |c| c.issuer = Some(ISSUER.into())).await;
    assert_eq!(moved.server_db.backend(), Backend::Postgres);
    assert!(moved.stored_keyring().await.is_some());
    assert_eq!(read(&moved, &ada_login, "/keys").await, ada_keys);
    assert_eq!(
        read(&moved, &ada_login, "/todos?limit=100").await,
        ada_todos
    );
    assert_eq!(
        read(&moved, &bob_login, "/todos?limit=100").await,
        bob_todos
    );
    assert_eq!(
        read(&moved, &admin.token, "/admin/users?limit=100").await,
        users
    );
    let me = moved.get(&ada_signed_out, "/me").await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "the sign-out holds");

    // Assert: every active key exchanges and the old passwords log in; the
    // revoked key and the disabled account do neither.
    for key in [&ci, &deploy, &laptop] {
        moved.exchange(key).await;
    }
    let body = assert_oauth_error(
        moved.exchange_response(&old.id, &old.key).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    assert_oauth_error(
        moved.exchange_response(&carol_key.id, &carol_key.key).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert_eq!(kid_of(&ada.login(&moved).await), kid_of(&ada_login));
    bob.login(&moved).await;
    moved.login(&admin.email).await;
    assert_oauth_error(
        moved.login_response(&carol.email, &carol.password).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;

    // Assert: the feed numbers new changes after the copied ones.
    let revoked = moved
        .delete(&ada_login, &format!("/keys/{}", deploy.id))
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_oauth_error(
        moved.exchange_response(&deploy.id, &deploy.key).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let (highest,): (i64,) = on_sql!(moved.sql, |pool| sqlx::query_as(
        "SELECT max(seq) FROM access_changes"
    )
    .fetch_one(pool)
    .await)
    .unwrap();
    assert!(highest > copied.changes.last().unwrap().0);

    // Act: the same copy again, into what is no longer empty.
    let again = migrate(&app.config.data_dir, &with_password(&target.url), &[]);

    // Assert
    let stderr = failed(&again);
    assert!(
        stderr.contains(
            "the PostgreSQL database is not empty (accounts: 4, API keys: 5, todos: 4, \
             signing keyring: present)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("wrote nothing"), "{stderr}");
    source.close().await;
    on_target.close().await;
}

#[tokio::test]
async fn migrate_refuses_a_target_that_is_not_postgresql_and_a_source_that_is_not_sqlite() {
    // Arrange: a data directory with a database in it, so only the URLs are
    // wrong; and one without.
    let mut app = spawn_sqlite_app_with(|_| {}).await;
    TestUser::generate().register(&app).await;
    app.stop().await;
    let data = &app.config.data_dir;
    let nowhere = app.dir.path().join("nowhere");
    // Never connected to: each is refused before anything is opened.
    let postgres = "postgres://latchkey:hunter2@127.0.0.1:1/latchkey";

    // Act
    let sqlite_target = migrate(data, "sqlite:///var/lib/latchkey/latchkey.db", &[]);
    let mysql_target = migrate(data, "mysql://root:hunter2@db.example.com/latchkey", &[]);
    let no_scheme = migrate(data, "db.example.com/latchkey", &[]);
    let postgres_source = migrate(data, postgres, &["--database-url", postgres]);
    let no_source = migrate(&nowhere, postgres, &[]);
    let no_secret = latchkey_migrate(data, postgres, &[]);
    let short_secret = latchkey_migrate(data, postgres, &["--keyring-secret", "aHVudGVyMg=="]);
    // A configured signing key needs no keyring: this one goes as far as
    // connecting.
    let configured_key = latchkey_migrate(
        data,
        postgres,
        &["--jwt-secret", "a configured secret of more than 32 bytes"],
    );
    // The database named by its file, with a data directory that holds no
    // keyring; then one whose keyring is the secret of a version from before
    // the keyring, and one without a keyring whose server signs with a
    // configured key: those two go as far as connecting.
    let database = format!("sqlite://{}", app.db_path().display());
    let keyless = app.dir.path().join("keyless");
    std::fs::create_dir(&keyless).unwrap();
    let no_keyring = migrate(&keyless, postgres, &["--database-url", &database]);
    let legacy = app.dir.path().join("legacy");
    std::fs::create_dir(&legacy).unwrap();
    std::fs::write(legacy.join("jwt-secret"), "s".repeat(43)).unwrap();
    let legacy_keyring = migrate(&legacy, postgres, &["--database-url", &database]);
    let no_keyring_but_configured = migrate(
        &keyless,
        postgres,
        &[
            "--database-url",
            &database,
            "--jwt-secret",
            "a configured secret of more than 32 bytes",
        ],
    );

    // Assert
    let must_be = "must be a PostgreSQL URL (postgres://USER@HOST/DATABASE or postgresql://…)";
    let stderr = failed(&sqlite_target);
    assert!(stderr.contains("--to names an SQLite database"), "{stderr}");
    assert!(stderr.contains(must_be), "{stderr}");
    let stderr = failed(&mysql_target);
    assert!(
        stderr.contains(&format!("--to {must_be}, not a `mysql:` URL")),
        "{stderr}"
    );
    let stderr = failed(&no_scheme);
    assert!(stderr.contains(&format!("--to {must_be}")), "{stderr}");
    let stderr = failed(&postgres_source);
    assert!(
        stderr.contains(
            "latchkey migrate copies from SQLite, but --database-url names a PostgreSQL database"
        ),
        "{stderr}"
    );
    let stderr = failed(&no_source);
    assert!(
        stderr.contains(&format!(
            "there is no SQLite database at {}",
            nowhere.join("latchkey.db").display()
        )),
        "{stderr}"
    );
    assert!(!nowhere.exists(), "a missing data directory is not created");
    let stderr = failed(&no_secret);
    assert!(
        stderr.contains(
            "latchkey migrate copies the data directory's signing keyring into the PostgreSQL \
             database, encrypted with --keyring-secret (LATCHKEY_KEYRING_SECRET), and none is given"
        ),
        "{stderr}"
    );
    let stderr = failed(&short_secret);
    assert!(
        stderr.contains("--keyring-secret (LATCHKEY_KEYRING_SECRET) must be 32 bytes"),
        "{stderr}"
    );
    let connecting = "could not connect to PostgreSQL at 127.0.0.1:1 (database latchkey)";
    let stderr = failed(&configured_key);
    assert!(stderr.contains(connecting), "{stderr}");
    let stderr = failed(&no_keyring);
    assert!(
        stderr.contains(&format!(
            "there is no signing keyring to copy: neither {} nor {} exists",
            keyless.join(latchkey::keyring::KEYRING_FILE).display(),
            keyless.join("jwt-secret").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("give that --data-dir, or, if the server signs with --jwt-secret"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&keyless).unwrap().count(), 0);
    for out in [&legacy_keyring, &no_keyring_but_configured] {
        let stderr = failed(out);
        assert!(stderr.contains(connecting), "{stderr}");
    }
}

#[tokio::test]
async fn migrate_refuses_a_postgresql_database_that_holds_an_account_or_a_keyring_and_writes_nothing(
) {
    if skipped_unless(Backend::Postgres, "the copy's target is PostgreSQL") {
        return;
    }
    // Arrange: servers on PostgreSQL, one with an account, one that has only
    // started (and so made a keyring); an SQLite data directory with another
    // account.
    let with_account = spawn_app().await;
    let existing = TestUser::generate().register(&with_account).await;
    let started = spawn_app().await;
    let keyring = started.stored_keyring().await;
    let mut source = spawn_sqlite_app_with(|_| {}).await;
    TestUser::generate().register(&source).await;
    source.stop().await;

    // Act
    let into_account = migrate(
        &source.config.data_dir,
        &with_password(&with_account.database.url()),
        &[],
    );
    let into_keyring = migrate(
        &source.config.data_dir,
        &with_password(&started.database.url()),
        &[],
    );

    // Assert
    let stderr = failed(&into_account);
    assert!(
        stderr.contains(
            "the PostgreSQL database is not empty (accounts: 1, API keys: 0, todos: 0, \
             signing keyring: present): latchkey migrate copies only into an empty database, \
             and wrote nothing"
        ),
        "{stderr}"
    );
    let users = tables(&with_account.sql).await.users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].0, existing.id);
    let stderr = failed(&into_keyring);
    assert!(
        stderr.contains(
            "the PostgreSQL database is not empty (accounts: 0, API keys: 0, todos: 0, \
             signing keyring: present)"
        ),
        "{stderr}"
    );
    // The instance recorded the keyring it made, and nothing was added.
    assert_eq!(tables(&started.sql).await.counts(), [0, 0, 0, 0, 1]);
    assert_eq!(started.stored_keyring().await, keyring);
}

#[tokio::test]
async fn a_data_directory_without_a_keyring_is_refused_before_the_target_is_touched() {
    if skipped_unless(Backend::Postgres, "the copy's target is PostgreSQL") {
        return;
    }
    // Arrange: an SQLite database with an account, named by its file, and a
    // data directory without a keyring: not the one its server ran with.
    let mut app = spawn_sqlite_app_with(|_| {}).await;
    TestUser::generate().register(&app).await;
    app.stop().await;
    let database = format!("sqlite://{}", app.db_path().display());
    let keyless = tempfile::tempdir().unwrap();
    let target = PgDatabase::create(&postgres_server().unwrap()).await;

    // Act
    let out = migrate(
        keyless.path(),
        &with_password(&target.url),
        &["--database-url", &database],
    );

    // Assert: refused, and the target is as it was made, without even the
    // schema.
    let stderr = failed(&out);
    assert!(
        stderr.contains("there is no signing keyring to copy"),
        "{stderr}"
    );
    assert_eq!(relations(&target.url).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_database_with_tables_that_are_not_latchkey_s_is_refused_before_its_schema_is_made() {
    if skipped_unless(Backend::Postgres, "the copy's target is PostgreSQL") {
        return;
    }
    // Arrange: a data directory to copy; databases of another application,
    // one with a `users` of its own, one with a schema of its own; and one
    // with latchkey's schema and a table besides.
    let mut app = spawn_sqlite_app_with(|_| {}).await;
    TestUser::generate().register(&app).await;
    app.stop().await;
    let server = postgres_server().unwrap();
    let shop = PgDatabase::create(&server).await;
    execute(
        &shop.url,
        "CREATE TABLE users (id integer); CREATE TABLE orders (id integer)",
    )
    .await;
    let billing = PgDatabase::create(&server).await;
    execute(
        &billing.url,
        "CREATE SCHEMA billing; CREATE VIEW billing.invoices AS SELECT 1 AS id",
    )
    .await;
    let beside = PgDatabase::create(&server).await;
    Db::open(&Location::Postgres(beside.url.clone()), 2)
        .await
        .unwrap()
        .close()
        .await;
    execute(&beside.url, "CREATE TABLE orders (id integer)").await;
    let beside_before = relations(&beside.url).await;

    // Act
    let data = &app.config.data_dir;
    let into_shop = migrate(data, &with_password(&shop.url), &[]);
    let into_billing = migrate(data, &with_password(&billing.url), &[]);
    let into_beside = migrate(data, &with_password(&beside.url), &[]);

    // Assert: each refused, naming what is not latchkey's, and none given
    // anything of latchkey's.
    let stderr = failed(&into_shop);
    assert!(
        stderr.contains(
            "the PostgreSQL database holds tables that are not latchkey's (public.orders, \
             public.users): latchkey migrate copies only into an empty database, and wrote \
             nothing, not even latchkey's schema"
        ),
        "{stderr}"
    );
    assert_eq!(
        relations(&shop.url).await,
        ["public.orders", "public.users"]
    );
    let stderr = failed(&into_billing);
    assert!(
        stderr.contains("tables that are not latchkey's (billing.invoices)"),
        "{stderr}"
    );
    assert_eq!(relations(&billing.url).await, ["billing.invoices"]);
    let stderr = failed(&into_beside);
    assert!(
        stderr.contains("tables that are not latchkey's (public.orders)"),
        "{stderr}"
    );
    assert_eq!(relations(&beside.url).await, beside_before);
}

/// Runs `sql`, statements separated by semicolons, on the database `url`
/// names.
async fn execute(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    conn.execute(sql).await.unwrap();
    conn.close().await.unwrap();
}

/// Every table, index, sequence and view of a PostgreSQL database outside
/// PostgreSQL's own schemas, as `schema.name`.
async fn relations(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let names = sqlx::query_scalar(
        r"SELECT n.nspname || '.' || c.relname FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
          ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    names
}

/// Puts more keys, todos and feed entries than one page of the copy into
/// `user`'s stopped SQLite app by SQL (the API's limits would refuse so
/// many), and, if asked, one title PostgreSQL cannot store, which an SQLite
/// database of an older version may hold.
///
/// Written before any other process opens the file, and never after: the
/// test process may still hold the stopped server's connections, and SQLite
/// can only tell another process about a write while their locks work.
async fn fill(app: &TestApp, user: Uuid, unstorable_title: bool) {
    let mut file =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(app.db_path()))
            .await
            .unwrap();
    let now = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";
    let rows = |n: u32| {
        format!(
            "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {n}) \
             SELECT n FROM c)"
        )
    };
    for insert in [
        format!(
            "INSERT INTO api_keys (id, user_id, name, key_hash, hint, scopes, created_at, expires_at)
             SELECT randomblob(16), $1, 'key ' || n, randomblob(32), 'lk_…' || n, 'todos:read',
                    {now}, CASE WHEN n % 2 = 0 THEN {now} END
             FROM {}",
            rows(1500)
        ),
        format!(
            "INSERT INTO todos (id, user_id, title, completed, created_at, updated_at)
             SELECT randomblob(16), $1, 'todo ' || n, n % 3 = 0, {now}, {now} FROM {}",
            rows(2500)
        ),
        format!(
            "INSERT INTO access_changes (kind, user_id, subject, at_ms, until_ms)
             SELECT 'token_revoked', $1, randomblob(16), n, n + 65000 FROM {}",
            rows(1100)
        ),
        format!(
            "INSERT INTO audit_events (id, at, action, actor_address, target_type, target_id,
                                       target_user_id, details)
             SELECT randomblob(16), {now}, 'login.failed', '192.0.2.' || (n % 250), 'user',
                    lower(hex($1)), $1, '{{\"count\":' || n || '}}'
             FROM {}",
            rows(1200)
        ),
    ] {
        sqlx::query(&insert)
            .bind(user)
            .execute(&mut file)
            .await
            .unwrap();
    }
    if unstorable_title {
        sqlx::query("UPDATE todos SET title = 'nul' || char(0) WHERE title = 'todo 2400'")
            .execute(&mut file)
            .await
            .unwrap();
    }
    file.close().await.unwrap();
}

#[tokio::test]
async fn a_copy_that_fails_part_way_leaves_the_target_empty_and_one_that_succeeds_pages_through_every_row(
) {
    if skipped_unless(Backend::Postgres, "the copy's target is PostgreSQL") {
        return;
    }
    // Arrange: two data directories with more rows than a page, one of them
    // with a title PostgreSQL refuses.
    let mut unstorable = spawn_sqlite_app_with(|_| {}).await;
    let user = TestUser::generate().register(&unstorable).await;
    unstorable.stop().await;
    fill(&unstorable, user.id, true).await;
    let mut app = spawn_sqlite_app_with(|_| {}).await;
    let user = TestUser::generate().register(&app).await;
    app.stop().await;
    fill(&app, user.id, false).await;
    let target = TestDatabase::Postgres(Arc::new(
        PgDatabase::create(&postgres_server().unwrap()).await,
    ));
    let on_target = Sql::open(&target).await;

    // Act
    let out = migrate(
        &unstorable.config.data_dir,
        &with_password(&target.url()),
        &[],
    );

    // Assert: refused by PostgreSQL after the accounts and keys went in, and
    // none of them is left.
    let stderr = failed(&out);
    assert!(stderr.contains("copying the todos"), "{stderr}");
    assert_eq!(tables(&on_target).await.counts(), [0, 0, 0, 0, 0]);

    assert!(!holds_a_keyring(&on_target).await);

    // Act: the other directory, whose keyring file is damaged.
    let keyring_file = app.config.data_dir.join(latchkey::keyring::KEYRING_FILE);
    let keyring = std::fs::read(&keyring_file).unwrap();
    std::fs::write(&keyring_file, &keyring[..keyring.len() / 2]).unwrap();
    let out = migrate(&app.config.data_dir, &with_password(&target.url()), &[]);

    // Assert: refused before anything was written, the keyring being read
    // before the copy begins.
    let stderr = failed(&out);
    assert!(stderr.contains("copying the signing keyring"), "{stderr}");
    assert_eq!(tables(&on_target).await.counts(), [0, 0, 0, 0, 0]);
    assert!(!holds_a_keyring(&on_target).await);

    // Act: the keyring mended, the same copy again.
    std::fs::write(&keyring_file, &keyring).unwrap();
    let out = migrate(&app.config.data_dir, &with_password(&target.url()), &[]);

    // Assert
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(
            "copied 1 account, 1500 API keys, 2500 todos, 1100 revocation feed entries and 1202 \
             audit events"
        ),
        "{stdout}"
    );
    let source = Sql::open(&app.database).await;
    let copied = tables(&source).await;
    assert_eq!(copied.counts(), [1, 1500, 2500, 1100, 1202]);
    assert_eq!(tables(&on_target).await, copied);
    assert!(holds_a_keyring(&on_target).await);
    source.close().await;
    on_target.close().await;
}

#[tokio::test]
async fn a_copy_whose_commit_fails_leaves_neither_rows_nor_keyring_and_can_be_made_again() {
    if skipped_unless(Backend::Postgres, "the copy's target is PostgreSQL") {
        return;
    }
    // Arrange: a data directory with an account and its keyring; a target
    // with latchkey's schema and a check that PostgreSQL runs only at
    // commit, refusing every account: everything before the commit succeeds.
    let mut app = spawn_sqlite_app_with(|_| {}).await;
    TestUser::generate().register(&app).await;
    app.stop().await;
    let target = TestDatabase::Postgres(Arc::new(
        PgDatabase::create(&postgres_server().unwrap()).await,
    ));
    Db::open(&Location::Postgres(target.url()), 2)
        .await
        .unwrap()
        .close()
        .await;
    let mut admin = PgConnection::connect(&target.url()).await.unwrap();
    admin
        .execute(
            "CREATE FUNCTION refuse_accounts() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'no account commits here'; END $$;
             CREATE CONSTRAINT TRIGGER refuse_accounts AFTER INSERT ON users
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_accounts();",
        )
        .await
        .unwrap();
    let on_target = Sql::open(&target).await;

    // Act
    let out = migrate(&app.config.data_dir, &with_password(&target.url()), &[]);

    // Assert: the commit was refused, and took the keyring with the rows.
    let stderr = failed(&out);
    assert!(stderr.contains("committing the copy"), "{stderr}");
    assert!(stderr.contains("no account commits here"), "{stderr}");
    assert_eq!(tables(&on_target).await.counts(), [0, 0, 0, 0, 0]);
    assert!(!holds_a_keyring(&on_target).await);

    // Act: the check gone, the same copy again.
    admin
        .execute("DROP TRIGGER refuse_accounts ON users")
        .await
        .unwrap();
    let out = migrate(&app.config.data_dir, &with_password(&target.url()), &[]);

    // Assert
    let stdout = succeeded(&out);
    assert!(stdout.contains("copied 1 account, "), "{stdout}");
    assert!(stdout.contains("copied 1 signing key from "), "{stdout}");
    assert_eq!(tables(&on_target).await.counts()[0], 1);
    assert!(holds_a_keyring(&on_target).await);
    admin.close().await.unwrap();
    on_target.close().await;
}

async fn holds_a_keyring(sql: &Sql) -> bool {
    let (held,): (bool,) = on_sql!(sql, |pool| sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM signing_keyring WHERE sealed IS NOT NULL)"
    )
    .fetch_one(pool)
    .await)
    .unwrap();
    held
}
