#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use latchkey::{
    audit::failures::Failures,
    config::Config,
    db::{Backend, Db},
    domain::scopes::Role,
    revocations::Revocations,
    throttle::argon2::Argon2Queue,
    App,
};
use reqwest::{header::HeaderValue, Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::SqliteConnectOptions,
    Connection, Executor, PgConnection, PgPool, SqlitePool,
};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery";

// ---- the database ----

/// Set to a PostgreSQL server's URL (its user may create databases), this runs
/// every test on PostgreSQL, each app on a database of its own; unset, on
/// SQLite files, which needs nothing installed.
pub const TEST_DATABASE_URL: &str = "LATCHKEY_TEST_DATABASE_URL";

/// The PostgreSQL server the suite runs on, if it is asked to.
pub fn postgres_server() -> Option<String> {
    std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|url| !url.is_empty())
}

/// The backend the suite runs on.
pub fn test_backend() -> Backend {
    match postgres_server() {
        Some(_) => Backend::Postgres,
        None => Backend::Sqlite,
    }
}

/// For the tests about what only one backend has (SQLite's file, PostgreSQL's
/// row locks): whether this run is on the other one, said on stderr so that
/// the test's passing is not mistaken for a check.
pub fn skipped_unless(backend: Backend, why: &str) -> bool {
    let skipped = test_backend() != backend;
    if skipped {
        eprintln!("skipped on {:?}: {why}", test_backend());
    }
    skipped
}

/// The database a test's apps run on; apps spawned on one share it.
#[derive(Clone)]
pub enum TestDatabase {
    /// The SQLite file in the first app's data directory.
    Sqlite(PathBuf),
    /// A PostgreSQL database made for this test, dropped with its last handle.
    Postgres(Arc<PgDatabase>),
}

impl TestDatabase {
    /// The URL another app is configured with to run on this database.
    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDatabase::Postgres(db) => db.url.clone(),
        }
    }
}

/// A database of its own on the PostgreSQL server the suite runs on.
pub struct PgDatabase {
    server: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(server: &str) -> PgDatabase {
        let name = format!("latchkey_test_{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL} does not connect: {e}"));
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("a test database is created");
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(server).expect("a PostgreSQL URL");
        url.set_path(&name);
        PgDatabase {
            server: server.to_owned(),
            name,
            url: url.into(),
        }
    }
}

/// Drops the database once no app needs it (best effort: a test that has
/// failed still cleans up), on a thread of its own because a test's runtime
/// is single-threaded and may be ending.
impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await?;
                admin
                    .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                    .await?;
                admin.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("the test database {} was left behind", self.name);
        }
    }
}

/// A pool for the tests' own look at what was stored: read-only, on
/// whichever backend the app runs. [`on_sql!`] runs one query on it.
pub enum Sql {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Sql {
    pub async fn open(database: &TestDatabase) -> Sql {
        match database {
            TestDatabase::Sqlite(path) => Sql::Sqlite(
                SqlitePool::connect_with(
                    SqliteConnectOptions::new().filename(path).read_only(true),
                )
                .await
                .expect("a read-only pool opens"),
            ),
            TestDatabase::Postgres(db) => {
                let options: PgConnectOptions = db.url.parse().expect("a PostgreSQL URL");
                Sql::Postgres(
                    PgPoolOptions::new()
                        .max_connections(2)
                        .connect_with(options.options([("default_transaction_read_only", "on")]))
                        .await
                        .expect("a read-only pool opens"),
                )
            }
        }
    }

    pub async fn close(&self) {
        match self {
            Sql::Sqlite(pool) => pool.close().await,
            Sql::Postgres(pool) => pool.close().await,
        }
    }
}

/// Runs `$body` with `$pool` bound to the pool of `$sql` (an [`Sql`]), on
/// either backend: the query is written once, with `$1, $2…` placeholders.
macro_rules! on_sql {
    ($sql:expr, |$pool:ident| $body:expr) => {
        match &$sql {
            $crate::helpers::Sql::Sqlite($pool) => $body,
            $crate::helpers::Sql::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_sql;

/// The issuer of apps whose tokens must verify elsewhere: at another
/// instance, or after a restart on a new port. Without one configured, each
/// server names itself by its own address.
pub const ISSUER: &str = "http://latchkey.test";

// ---- the app ----

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// Where `GET /metrics` is served, when the test turned it on (see
    /// [`with_metrics`]).
    pub metrics_addr: Option<SocketAddr>,
    pub client: Client,
    pub config: Config,
    /// A second handle on the app's database, for setup through the library.
    pub db: Db,
    /// A read-only pool on the database, for looking at what was stored.
    pub sql: Sql,
    /// The server's own pools.
    pub server_db: Db,
    /// What the app runs on, for spawning another app on the same.
    pub database: TestDatabase,
    /// The revocations the server enforces.
    pub revocations: Arc<Revocations>,
    /// The server's argon2 queue.
    pub argon2: Arc<Argon2Queue>,
    /// The failures the server has tallied for its audit log.
    pub failures: Arc<Failures>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app with the test defaults, changed by `configure`, on a new
/// database: SQLite's default file in the data directory, or a database of
/// its own on the PostgreSQL server of [`TEST_DATABASE_URL`].
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = test_config(dir.path().join("data"));
    let database = match postgres_server() {
        Some(server) => {
            let db = PgDatabase::create(&server).await;
            config.database_url = Some(db.url.clone());
            TestDatabase::Postgres(Arc::new(db))
        }
        None => TestDatabase::Sqlite(config.data_dir.join("latchkey.db")),
    };
    configure(&mut config);
    start(config, database, dir).await
}

/// Starts the app on SQLite's default file in its data directory whichever
/// backend the run is on, for tests that need an SQLite database as such
/// (what `latchkey migrate` copies from).
pub async fn spawn_sqlite_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_sqlite_app_in(
        tempfile::tempdir().expect("a temporary directory"),
        configure,
    )
    .await
}

/// Starts the app on SQLite's default file in `dir`'s data directory, which
/// may hold a database already (a restored backup).
pub async fn spawn_sqlite_app_in(dir: TempDir, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(dir.path().join("data"));
    let database = TestDatabase::Sqlite(config.data_dir.join("latchkey.db"));
    configure(&mut config);
    start(config, database, dir).await
}

/// Starts another app, with a data directory (and so a keyring) of its own,
/// on `other`'s database, as a second instance behind a load balancer runs.
/// On SQLite both use `other`'s file, so `other` must outlive it.
pub async fn spawn_app_on(other: &TestApp, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on_database(&other.database, configure).await
}

/// Starts an app, with a data directory of its own, on `database`.
pub async fn spawn_app_on_database(
    database: &TestDatabase,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = test_config(dir.path().join("data"));
    config.database_url = Some(database.url());
    configure(&mut config);
    start(config, database.clone(), dir).await
}

pub fn test_config(data_dir: PathBuf) -> Config {
    if std::env::var_os("TEST_LOG").is_some() {
        latchkey::telemetry::init(latchkey::config::LogFormat::Pretty, std::io::stdout);
    }
    let mut config = Config::new(data_dir);
    config.bind = "127.0.0.1:0".parse().unwrap();
    // On PostgreSQL the keyring is the database's and needs its secret.
    if test_backend() == Backend::Postgres {
        config.keyring_secret = Some(test_keyring_secret().to_owned());
    }
    config
}

/// The `--keyring-secret` of every app of this test run: random, as an
/// operator's is, and one for all so that apps on one database agree.
pub fn test_keyring_secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(new_keyring_secret)
}

/// 32 random bytes in standard base64, as `openssl rand -base64 32` makes.
pub fn new_keyring_secret() -> String {
    use base64::engine::general_purpose::STANDARD;
    STANDARD.encode(rand::random::<[u8; 32]>())
}

async fn start(config: Config, database: TestDatabase, dir: TempDir) -> TestApp {
    let app = App::build(config.clone()).await.expect("the app builds");
    let addr = app.addr();
    let metrics_addr = app.metrics_addr();
    let server_db = app.db();
    let revocations = app.revocations();
    let argon2 = app.argon2();
    let failures = app.audit_failures();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let db = latchkey::open_db(&config)
        .await
        .expect("a second pool opens");
    let sql = Sql::open(&database).await;
    TestApp {
        addr,
        base: format!("http://{addr}"),
        metrics_addr,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        config,
        db,
        sql,
        server_db,
        database,
        revocations,
        argon2,
        failures,
        stop: Some(stop),
        server: Some(server),
        dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Begins a graceful shutdown, as SIGTERM would, without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the server down gracefully (as SIGTERM would) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task")
                .expect("the server stops cleanly");
        }
        self.db.close().await;
        self.sql.close().await;
    }

    /// Stops this server and starts a new one on the same data directory and
    /// database.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut config = self.config.clone();
        config.bind = "127.0.0.1:0".parse().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        start(config, self.database.clone(), dir).await
    }

    /// A second server on this one's database and data directory (so its
    /// keyring too), as another process on the same files would be.
    pub async fn another_instance(&self) -> TestApp {
        self.another_instance_with(|_| {}).await
    }

    /// Like [`another_instance`](Self::another_instance), with its
    /// configuration changed by `configure` (such as a `database_url` that
    /// reaches the same database another way).
    pub async fn another_instance_with(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        config.bind = "127.0.0.1:0".parse().unwrap();
        configure(&mut config);
        start(config, self.database.clone(), tempfile::tempdir().unwrap()).await
    }

    /// Runs a statement about one row, named by `$1`, on the database
    /// directly, bypassing the server.
    pub async fn execute(&self, sql: &str, id: Uuid) {
        match &self.database {
            TestDatabase::Sqlite(path) => {
                let options = SqliteConnectOptions::new().filename(path);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
            }
            TestDatabase::Postgres(db) => {
                let mut conn = PgConnection::connect(&db.url).await.unwrap();
                sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
            }
        }
    }

    /// Runs statements on the database directly, bypassing the server: on
    /// PostgreSQL several at once, separated by `;`.
    pub async fn execute_script(&self, sql: &str) {
        match &self.database {
            TestDatabase::Sqlite(path) => {
                let options = SqliteConnectOptions::new().filename(path);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                conn.execute(sql).await.unwrap();
            }
            TestDatabase::Postgres(db) => {
                let mut conn = PgConnection::connect(&db.url).await.unwrap();
                conn.execute(sql).await.unwrap();
            }
        }
    }

    /// Everything the database holds, to search for what must not be there:
    /// on SQLite the bytes of the database file and its companions as they
    /// are on disk, on PostgreSQL the text of every row of every table.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        match &self.database {
            TestDatabase::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    bytes.extend(std::fs::read(&file).unwrap_or_default());
                }
            }
            TestDatabase::Postgres(db) => {
                let mut conn = PgConnection::connect(&db.url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = 'public'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                for table in tables {
                    let rows: Vec<String> =
                        sqlx::query_scalar(&format!(r#"SELECT t::text FROM "{table}" t"#))
                            .fetch_all(&mut conn)
                            .await
                            .unwrap();
                    bytes.extend(rows.concat().into_bytes());
                }
                let _ = conn.close().await;
            }
        }
        bytes
    }

    /// The signing keyring as stored: the data directory's file on SQLite,
    /// the database's sealed row on PostgreSQL; `None` if there is none.
    pub async fn stored_keyring(&self) -> Option<Vec<u8>> {
        match &self.database {
            TestDatabase::Sqlite(_) => {
                std::fs::read(self.config.data_dir.join(latchkey::keyring::KEYRING_FILE)).ok()
            }
            TestDatabase::Postgres(db) => {
                let mut conn = PgConnection::connect(&db.url).await.unwrap();
                let sealed: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT sealed FROM signing_keyring")
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap()
                        .flatten();
                let _ = conn.close().await;
                sealed
            }
        }
    }

    /// The SQLite database file, for the tests about it (see
    /// [`skipped_unless`]).
    pub fn db_path(&self) -> PathBuf {
        match &self.database {
            TestDatabase::Sqlite(path) => path.clone(),
            TestDatabase::Postgres(_) => panic!("a PostgreSQL database has no file here"),
        }
    }
}

// ---- the binary ----

/// The server binary, running as an operator runs it, with its JSON log
/// read as it is written.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts the binary on `data_dir` (and `database_url`, if given) on a
    /// free port with `args` added, and returns once it says where it
    /// listens.
    pub async fn start(
        data_dir: &Path,
        database_url: Option<&str>,
        args: &[&str],
    ) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        // Configured by flags alone: whatever LATCHKEY_* the test runs with
        // is not the child's.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LATCHKEY_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--bind", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
            // The keyring is the database's there; a secret in the
            // environment, as a deployment keeps it, not on the command line.
            command.env("LATCHKEY_KEYRING_SECRET", test_keyring_secret());
        }
        let mut child = command.spawn().expect("the server binary starts");

        // The log is read to its end, so the server never blocks on a full
        // pipe; the listening line gives the port.
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = oneshot::channel();
        let lines = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let message = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["fields"]["message"].as_str().map(str::to_owned));
                if let Some(base) = message
                    .as_deref()
                    .and_then(|m| m.strip_prefix("latchkey is listening on "))
                {
                    if let Some(found) = found.take() {
                        let _ = found.send(base.to_owned());
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let base = match tokio::time::timeout(Duration::from_secs(30), listening).await {
            Ok(Ok(base)) => base,
            _ => panic!(
                "the server never said where it listens:\n{}",
                log.lock().unwrap().join("\n")
            ),
        };
        ServerProcess {
            child,
            base,
            log,
            reader: Some(reader),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no drain, no flush, no destructor.
    pub fn kill(&mut self) {
        use std::os::unix::process::ExitStatusExt;

        self.child.kill().expect("the server is killed");
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    }

    /// Kills the server and returns every line it logged: all of them,
    /// since the log is read to the end of the pipe.
    pub fn kill_and_read_log(mut self) -> Vec<String> {
        self.kill();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the log reader");
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("the server's log:\n{}", self.log.lock().unwrap().join("\n"));
        }
    }
}

// ---- requests ----

impl TestApp {
    /// A request to `path`, with `token` as its bearer if there is one, for
    /// tests that set the body or headers themselves.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A request without credentials.
    pub async fn get_public(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).send().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.request(Method::GET, path, Some(token))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(token))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(token))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, token: &str, path: &str) -> Response {
        self.request(Method::DELETE, path, Some(token))
            .send()
            .await
            .unwrap()
    }
}

// ---- metrics ----

/// Serves the app's metrics on a port of its own: for `spawn_app_with`.
pub fn with_metrics(config: &mut Config) {
    config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
}

impl TestApp {
    /// `GET /metrics` on the metrics listener.
    pub async fn scrape(&self) -> Scrape {
        let addr = self.metrics_addr.expect("the app serves metrics");
        let resp = self
            .client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        Scrape::parse(resp.text().await.unwrap())
    }
}

/// One scrape: every sample by its name and labels as written, such as
/// `latchkey_revocations_total{kind="key"}`.
pub struct Scrape {
    pub text: String,
    samples: std::collections::BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (sample, value) = line.rsplit_once(' ').unwrap();
                (sample.to_owned(), value.parse::<f64>().unwrap())
            })
            .collect();
        Scrape { text, samples }
    }

    /// A sample's value; one the scrape lacks is 0, as a series not yet
    /// created would be.
    pub fn value(&self, sample: &str) -> f64 {
        self.samples.get(sample).copied().unwrap_or(0.0)
    }

    pub fn has(&self, sample: &str) -> bool {
        self.samples.contains_key(sample)
    }

    /// The samples named `name…` whose value differs from `before`'s, with
    /// how much each moved.
    pub fn moved_since(&self, before: &Scrape, name: &str) -> Vec<(String, f64)> {
        self.samples
            .iter()
            .filter(|(sample, _)| sample.starts_with(name))
            .map(|(sample, &now)| (sample.clone(), now - before.value(sample)))
            .filter(|(_, moved)| *moved != 0.0)
            .collect()
    }
}

// ---- accounts ----

impl TestApp {
    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.request(Method::POST, "/users", None)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Creates an admin the way `latchkey admin create` does.
    pub async fn create_admin(&self, email: &str) -> Uuid {
        latchkey::service::accounts::create(&self.db, email, PASSWORD.into(), Role::Admin)
            .await
            .expect("the admin is created")
            .id
    }

    /// A new admin, made as `latchkey admin create` makes one, logged in with
    /// every scope, `admin` included.
    pub async fn admin(&self) -> TestAdmin {
        let email = format!("admin-{}@example.com", Uuid::now_v7().simple());
        let id = self.create_admin(&email).await;
        let token = self.login(&email).await;
        TestAdmin { id, email, token }
    }

    /// `PUT /me/password` with `token`.
    pub async fn change_password(&self, token: &str, current: &str, new: &str) -> Response {
        self.request(Method::PUT, "/me/password", Some(token))
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
            .await
            .unwrap()
    }

    /// `POST /me/sign-out` with `token`.
    pub async fn sign_out(&self, token: &str) -> Response {
        self.request(Method::POST, "/me/sign-out", Some(token))
            .send()
            .await
            .unwrap()
    }

    /// `POST /auth/revoke` of `token` (an access token or an API key).
    pub async fn revoke_at_endpoint(&self, token: &str) -> Response {
        self.request(Method::POST, "/auth/revoke", None)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }

    /// A new user's login token, with every scope of the `user` role
    /// (`todos:read todos:write keys:manage`).
    pub async fn user_token(&self) -> String {
        TestUser::generate().register(self).await.login(self).await
    }
}

/// Credentials for an account that does not exist yet.
pub struct NewUser {
    pub email: String,
    pub password: String,
}

impl NewUser {
    /// Registers through `POST /users`, as a client would.
    pub async fn register(self, app: &TestApp) -> TestUser {
        let resp = app.register(&self.email, &self.password).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        let id = body["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .unwrap_or_else(|| panic!("a new account has a UUID: {body}"));
        TestUser {
            id,
            email: self.email,
            password: self.password,
        }
    }
}

/// A registered user who can log in.
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
}

impl TestUser {
    /// A new email each call, so one app can hold as many users as a test needs.
    pub fn generate() -> NewUser {
        NewUser {
            email: format!("user-{}@example.com", Uuid::now_v7().simple()),
            password: PASSWORD.into(),
        }
    }

    pub async fn login(&self, app: &TestApp) -> String {
        access_token(app.login_response(&self.email, &self.password).await).await
    }
}

/// An admin account, whose password is [`PASSWORD`], and a token from its
/// login.
pub struct TestAdmin {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

// ---- tokens ----

impl TestApp {
    /// A request to the token endpoint with nothing in it yet.
    pub fn token_form(&self) -> TokenForm<'_> {
        TokenForm {
            app: self,
            fields: Vec::new(),
            basic: None,
            headers: Vec::new(),
            json: false,
        }
    }

    /// A password-grant login, to which a test may add a scope.
    pub fn login_form(&self, email: &str, password: &str) -> TokenForm<'_> {
        self.token_form()
            .grant("password")
            .username(email)
            .password(password)
    }

    /// A client-credentials exchange with the key and its id in the body.
    pub fn exchange_form(&self, key_id: &str, key: &str) -> TokenForm<'_> {
        self.token_form()
            .grant("client_credentials")
            .client_id(key_id)
            .secret(key)
    }

    pub async fn login_response(&self, email: &str, password: &str) -> Response {
        self.login_form(email, password).send().await
    }

    pub async fn login(&self, email: &str) -> String {
        access_token(self.login_response(email, PASSWORD).await).await
    }

    pub async fn exchange_response(&self, key_id: &str, key: &str) -> Response {
        self.exchange_form(key_id, key).send().await
    }

    pub async fn exchange(&self, key: &TestKey) -> String {
        access_token(self.exchange_response(&key.id, &key.key).await).await
    }
}

/// A `POST /auth/token` request, built up field by field in the order sent.
pub struct TokenForm<'a> {
    app: &'a TestApp,
    fields: Vec<(&'static str, String)>,
    basic: Option<(String, String)>,
    headers: Vec<(&'static str, String)>,
    json: bool,
}

impl TokenForm<'_> {
    pub fn grant(self, grant_type: &str) -> Self {
        self.field("grant_type", grant_type)
    }

    pub fn client_id(self, client_id: &str) -> Self {
        self.field("client_id", client_id)
    }

    pub fn secret(self, client_secret: &str) -> Self {
        self.field("client_secret", client_secret)
    }

    pub fn username(self, username: &str) -> Self {
        self.field("username", username)
    }

    pub fn password(self, password: &str) -> Self {
        self.field("password", password)
    }

    pub fn scope(self, scope: &str) -> Self {
        self.field("scope", scope)
    }

    /// A field no other method names, such as another grant's `code`.
    pub fn field(mut self, name: &'static str, value: &str) -> Self {
        self.fields.push((name, value.to_owned()));
        self
    }

    /// Client credentials in an `Authorization: Basic` header.
    pub fn basic(mut self, client_id: &str, client_secret: &str) -> Self {
        self.basic = Some((client_id.to_owned(), client_secret.to_owned()));
        self
    }

    /// A header to send as well; a `content-type` replaces the body's own.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Sends the fields as a JSON object instead of a form.
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }

    pub async fn send(self) -> Response {
        let mut request = self.app.request(Method::POST, "/auth/token", None);
        if let Some((client_id, client_secret)) = &self.basic {
            request = request.basic_auth(client_id, Some(client_secret));
        }
        let mut request = if self.json {
            let object: serde_json::Map<String, Value> = self
                .fields
                .into_iter()
                .map(|(name, value)| (name.to_owned(), Value::String(value)))
                .collect();
            request.json(&object)
        } else {
            request.form(&self.fields)
        }
        .build()
        .unwrap();
        // Set on the built request, where a header replaces the one the body
        // brought instead of being sent beside it.
        for (name, value) in self.headers {
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(&value).unwrap());
        }
        self.app.client.execute(request).await.unwrap()
    }
}

pub async fn access_token(resp: Response) -> String {
    assert_eq!(resp.status(), StatusCode::OK, "token request failed");
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Asserts an RFC 6749 §5.2 error response and returns its body.
pub async fn assert_oauth_error(resp: Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(!body["error_description"].as_str().unwrap().is_empty());
    body
}

/// A token's header and claims, read without verifying anything.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "a JWT: {token}");
    (decode_segment(segments[0]), decode_segment(segments[1]))
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

pub fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("tokens carry a kid")
}

// ---- keys ----

impl TestApp {
    pub async fn create_key_response(&self, token: &str, body: Value) -> Response {
        self.request(Method::POST, "/keys", Some(token))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_key(&self, token: &str, body: Value) -> TestKey {
        let resp = self.create_key_response(token, body).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        TestKey {
            id: body["id"].as_str().unwrap().to_owned(),
            key: body["key"].as_str().unwrap().to_owned(),
            body,
        }
    }
}

/// A key as `POST /keys` returned it.
pub struct TestKey {
    pub id: String,
    pub key: String,
    pub body: Value,
}

/// A user with a login token, a key, and a token minted from the key.
pub struct Holder {
    pub user: TestUser,
    pub login: String,
    pub key: TestKey,
    pub from_key: String,
}

pub async fn holder(app: &TestApp) -> Holder {
    let user = TestUser::generate().register(app).await;
    let login = user.login(app).await;
    let key = app.create_key(&login, json!({ "name": "ci" })).await;
    let from_key = app.exchange(&key).await;
    Holder {
        user,
        login,
        key,
        from_key,
    }
}

/// How long another instance may take to learn a change: it reloads twice a
/// second; a busy CI machine gets the rest.
pub const ELSEWHERE: Duration = Duration::from_secs(5);

// ---- the audit log ----

impl TestApp {
    /// Writes the failures the server has tallied so far, as its next flush
    /// would, so that a test need not wait for it.
    pub async fn flush_audit(&self) {
        self.failures
            .flush(&self.server_db)
            .await
            .expect("the tallied failures are written");
    }

    /// The events of a page of `path` (`/me/audit` or `/admin/audit`, with
    /// its query), asserting a 200.
    pub async fn audit_events(&self, token: &str, path: &str) -> Vec<Value> {
        let resp = self.get(token, path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        let page: Value = resp.json().await.unwrap();
        page["items"].as_array().expect("a page has items").clone()
    }

    /// Every event stored, newest first, read through the admin's route.
    pub async fn all_events(&self, admin_token: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut path = "/admin/audit?limit=100".to_owned();
        loop {
            let resp = self.get(admin_token, &path).await;
            assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
            let page: Value = resp.json().await.unwrap();
            events.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/admin/audit?limit=100&cursor={cursor}"),
                None => return events,
            }
        }
    }
}

/// The actions of `events`, in their order.
pub fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

// ---- todos ----

impl TestApp {
    pub async fn create_todo(&self, token: &str, title: &str) -> Value {
        let resp = self.post(token, "/todos", json!({ "title": title })).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }
}

/// The titles on a page of `GET /todos`, in its order.
pub fn titles(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

// ---- problems and challenges ----

/// Asserts an RFC 9457 problem response and returns its body.
pub async fn assert_problem(resp: Response, status: StatusCode) -> Value {
    assert_problem_head(&resp, status);
    let body: Value = resp.json().await.unwrap();
    assert_problem_body(&body, status);
    body
}

/// The status and media type of a problem response, for tests that read the
/// body themselves.
pub fn assert_problem_head(resp: &Response, status: StatusCode) {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}

/// The members every problem body has.
pub fn assert_problem_body(body: &Value, status: StatusCode) {
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["type"], "about:blank", "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
}

/// The fields a problem's `errors` names, in its order; each must come with a
/// message.
pub fn field_errors(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("the problem lists its invalid fields: {problem}"))
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
            e["field"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Polls `app` with `token` on `GET /me` until it is refused as revoked,
/// which must happen within `within`; meanwhile it must be accepted. Tells
/// how long it took.
pub async fn refused_within(app: &TestApp, token: &str, within: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let resp = app.get(token, "/me").await;
        if resp.status() == StatusCode::UNAUTHORIZED {
            assert_revoked(resp).await;
            return start.elapsed();
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(start.elapsed() < within, "still accepted after {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts the RFC 6750 refusal of a revoked token.
pub async fn assert_revoked(resp: Response) {
    let challenge = www_authenticate(&resp).expect("a bearer challenge");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let problem = assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
}

/// A header of the answer, as text.
pub fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

pub fn www_authenticate(resp: &Response) -> Option<String> {
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
}

// ---- a database that stops answering ----

/// A TCP proxy between an app and its PostgreSQL server that can stall one
/// kind of exchange: from [`StallingProxy::stall_on`] on, a connection that
/// carries the given bytes, either way, stops forwarding for good, open but
/// silent, as behind a network that drops packets without resetting
/// anything. Everything else passes, so a stall can be aimed at one query
/// after its connection was checked out. After [`StallingProxy::heal`], new
/// connections work again and the stalled ones stay as they are.
pub struct StallingProxy {
    addr: SocketAddr,
    needle: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    task: JoinHandle<()>,
}

type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

impl StallingProxy {
    /// A proxy to the server `url` names.
    pub async fn start(url: &str) -> StallingProxy {
        let target = reqwest::Url::parse(url).expect("a PostgreSQL URL");
        let target = format!(
            "{}:{}",
            target.host_str().unwrap(),
            target.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let needle = Arc::new(std::sync::Mutex::new(None));
        let stall = Arc::clone(&needle);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let directions: [(Reader, Writer); 2] = [
                    (Box::new(client_read), Box::new(server_write)),
                    (Box::new(server_read), Box::new(client_write)),
                ];
                for (from, to) in directions {
                    tokio::spawn(pump(from, to, Arc::clone(&stall), Arc::clone(&frozen)));
                }
            }
        });
        StallingProxy { addr, needle, task }
    }

    /// `url` with the proxy in place of the server, without TLS, so that
    /// the proxy sees what the connections carry.
    pub fn url(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).expect("a PostgreSQL URL");
        url.set_host(Some(&self.addr.ip().to_string())).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.query_pairs_mut().append_pair("sslmode", "disable");
        url.into()
    }

    /// Connections that carry `needle` from now on stall.
    pub fn stall_on(&self, needle: &[u8]) {
        *self.needle.lock().unwrap() = Some(needle.to_vec());
    }

    pub fn heal(&self) {
        *self.needle.lock().unwrap() = None;
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either closes, or for ever silent once the
/// connection has met a stall.
async fn pump(
    mut from: Reader,
    mut to: Writer,
    needle: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let met = needle
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|needle| buf[..n].windows(needle.len()).any(|w| w == needle));
        if met {
            frozen.store(true, SeqCst);
        }
        if frozen.load(SeqCst) {
            // Held open, never answered: the peer learns nothing.
            let _held = (from, to);
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
