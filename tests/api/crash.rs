//! SIGKILL in the middle of writes loses nothing that was acknowledged: the
//! real binary, as a child process, is killed while clients register, create
//! keys and todos, revoke keys and sign out; started again on the same data
//! directory and database, it still has every account, key, todo and
//! revocation it answered `2xx` for. On SQLite always, and on PostgreSQL
//! when the suite runs there.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use latchkey::db::Backend;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{
    assert_oauth_error, assert_revoked, postgres_server, skipped_unless, PgDatabase, ServerProcess,
    ISSUER, PASSWORD,
};

/// How long the load runs at least before the kill.
const LOAD_FOR: Duration = Duration::from_millis(1500);

/// Longer than anything here may take: the server's start, one request.
const STUCK: Duration = Duration::from_secs(30);

/// The server to kill and its restart, on `data_dir` (and `database_url`,
/// if given).
async fn start(data_dir: &Path, database_url: Option<&str>) -> ServerProcess {
    ServerProcess::start(
        data_dir,
        database_url,
        &[
            "--issuer",
            ISSUER,
            // Tokens taken before the kill are checked after the restart, on
            // a machine that may be running many tests at once.
            "--token-ttl",
            "1h",
            // Every worker registers from 127.0.0.1.
            "--registrations-per-hour",
            "1000000",
        ],
    )
    .await
}

// ---- the load ----

/// What a key was asked to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Nothing was asked: it must still exchange.
    Kept,
    /// A revocation was sent and not answered: either outcome is right.
    Revoking,
    /// A revocation was answered `204`: it must stay revoked.
    Revoked,
}

#[derive(Debug)]
struct Key {
    id: String,
    secret: String,
    owner: usize,
    fate: Fate,
}

#[derive(Debug)]
struct Todo {
    id: String,
    title: String,
    owner: usize,
}

/// Everything the killed server answered `2xx` for.
#[derive(Debug, Default)]
struct Acknowledged {
    /// The emails of registered accounts (all with [`PASSWORD`]).
    accounts: Vec<String>,
    keys: Vec<Key>,
    todos: Vec<Todo>,
    /// Tokens covered by a revocation (a key's, a sign-out) that was
    /// answered.
    revoked: Vec<String>,
    /// Tokens nothing was asked to revoke.
    live: Vec<String>,
}

/// A client of the server to be killed. A call answers `None` once the
/// server is gone (or its answer was cut short); any answer but a success
/// fails the test.
struct Worker {
    client: Client,
    base: String,
    acked: Arc<Mutex<Acknowledged>>,
}

impl Worker {
    async fn send(&self, request: reqwest::RequestBuilder) -> Option<Value> {
        let resp = request.timeout(STUCK).send().await.ok()?;
        let status = resp.status();
        let body = resp.bytes().await.ok()?;
        assert!(
            status.is_success(),
            "the server answered {status} before it was killed: {}",
            String::from_utf8_lossy(&body)
        );
        Some(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn token(&self, form: &[(&str, &str)]) -> Option<String> {
        let body = self
            .send(self.client.post(self.url("/auth/token")).form(form))
            .await?;
        Some(body["access_token"].as_str().unwrap().to_owned())
    }

    /// One account's life: registered, logged in, a key and its token, two
    /// todos, then (by turns) the key revoked, a sign-out, or nothing.
    async fn round(&self, n: usize) -> Option<()> {
        let email = format!("crash-{}@example.com", uuid::Uuid::now_v7().simple());
        let users = self.client.post(self.url("/users"));
        self.send(users.json(&json!({ "email": email, "password": PASSWORD })))
            .await?;
        let owner = {
            let mut acked = self.acked.lock().unwrap();
            acked.accounts.push(email.clone());
            acked.accounts.len() - 1
        };
        let login = self
            .token(&[
                ("grant_type", "password"),
                ("username", &email),
                ("password", PASSWORD),
            ])
            .await?;
        let keys = self.client.post(self.url("/keys")).bearer_auth(&login);
        let created = self
            .send(keys.json(&json!({ "name": format!("key {n}") })))
            .await?;
        let (id, secret) = (
            created["id"].as_str().unwrap(),
            created["key"].as_str().unwrap(),
        );
        let key = {
            let mut acked = self.acked.lock().unwrap();
            acked.keys.push(Key {
                id: id.to_owned(),
                secret: secret.to_owned(),
                owner,
                fate: Fate::Kept,
            });
            acked.keys.len() - 1
        };
        let minted = self
            .token(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .await?;
        for t in 0..2 {
            let title = format!("todo {n}.{t} of {email}");
            let todos = self.client.post(self.url("/todos")).bearer_auth(&login);
            let created = self.send(todos.json(&json!({ "title": title }))).await?;
            self.acked.lock().unwrap().todos.push(Todo {
                id: created["id"].as_str().unwrap().to_owned(),
                title,
                owner,
            });
        }
        match n % 3 {
            0 => {
                self.acked.lock().unwrap().live.push(login.clone());
                self.acked.lock().unwrap().keys[key].fate = Fate::Revoking;
                let revoke = self.client.delete(self.url(&format!("/keys/{id}")));
                self.send(revoke.bearer_auth(&login)).await?;
                let mut acked = self.acked.lock().unwrap();
                acked.keys[key].fate = Fate::Revoked;
                acked.revoked.push(minted);
            }
            1 => {
                let sign_out = self.client.post(self.url("/me/sign-out"));
                self.send(sign_out.bearer_auth(&login)).await?;
                self.acked.lock().unwrap().revoked.extend([login, minted]);
            }
            _ => self.acked.lock().unwrap().live.extend([login, minted]),
        }
        Some(())
    }
}

/// Runs `workers` clients against `server` until it is killed, once the load
/// has run [`LOAD_FOR`] and every kind of write has been answered.
async fn load_then_kill(server: &mut ServerProcess, workers: usize) -> Acknowledged {
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let clients: Vec<_> = (0..workers)
        .map(|w| {
            let worker = Worker {
                client: Client::new(),
                base: server.base.clone(),
                acked: Arc::clone(&acked),
            };
            tokio::spawn(async move {
                let mut n = w;
                while worker.round(n).await.is_some() {
                    n += workers;
                }
            })
        })
        .collect();
    let started = Instant::now();
    loop {
        let enough = {
            let acked = acked.lock().unwrap();
            let revoked_keys = acked.keys.iter().filter(|k| k.fate == Fate::Revoked);
            revoked_keys.count() > 0 && acked.revoked.len() > 2 && !acked.live.is_empty()
        };
        if enough && started.elapsed() >= LOAD_FOR {
            break;
        }
        assert!(
            started.elapsed() < STUCK,
            "the load never wrote every kind of change: {:?}",
            acked.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Mid-flight: every client is sending as the server dies.
    server.kill();

    for client in clients {
        client.await.expect("a client of the killed server");
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

// ---- what the restarted server must still have ----

async fn assert_everything_acknowledged_is_there(server: &ServerProcess, acked: &Acknowledged) {
    let client = Client::builder().timeout(STUCK).build().unwrap();
    let url = |path: &str| format!("{}{path}", server.base);
    let exchange = |key: &Key| {
        client.post(url("/auth/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", key.id.as_str()),
            ("client_secret", key.secret.as_str()),
        ])
    };

    // Every account logs in, and lists its keys as they were left.
    let mut tokens = Vec::new();
    for email in &acked.accounts {
        let resp = client
            .post(url("/auth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", email),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{email} logs in");
        let body: Value = resp.json().await.unwrap();
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    for key in &acked.keys {
        let page: Value = client
            .get(url("/keys"))
            .bearer_auth(&tokens[key.owner])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == key.id.as_str())
            .unwrap_or_else(|| panic!("key {} is listed: {page}", key.id));
        let resp = exchange(key).send().await.unwrap();
        match key.fate {
            Fate::Kept => {
                assert!(listed["revoked_at"].is_null(), "{listed}");
                assert_eq!(resp.status(), StatusCode::OK, "key {} exchanges", key.id);
            }
            Fate::Revoked => {
                assert!(listed["revoked_at"].is_string(), "{listed}");
                assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
            }
            Fate::Revoking => {}
        }
    }

    for todo in &acked.todos {
        let resp = client
            .get(url(&format!("/todos/{}", todo.id)))
            .bearer_auth(&tokens[todo.owner])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "todo {}", todo.id);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["title"], todo.title.as_str());
    }

    // What was revoked stays revoked; and tokens of the killed server still
    // verify here, so it is the revocation that refuses the others.
    for token in &acked.revoked {
        let resp = client.get(url("/me")).bearer_auth(token).send().await;
        assert_revoked(resp.unwrap()).await;
    }
    for token in &acked.live {
        let resp = client.get(url("/me")).bearer_auth(token).send().await;
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
    }
}

/// The whole test on one data directory and, if given, one database.
async fn sigkill_loses_nothing_acknowledged(database_url: Option<&str>) {
    // Arrange
    let dir = TempDir::new().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = start(&data_dir, database_url).await;

    // Act
    let started = Instant::now();
    let acked = load_then_kill(&mut server, 6).await;
    let restarted = start(&data_dir, database_url).await;

    // Assert
    eprintln!(
        "killed after {:?} of load: {} accounts, {} keys ({} revoked), {} todos, \
         {} revoked and {} live tokens acknowledged",
        started.elapsed(),
        acked.accounts.len(),
        acked.keys.len(),
        acked
            .keys
            .iter()
            .filter(|k| k.fate == Fate::Revoked)
            .count(),
        acked.todos.len(),
        acked.revoked.len(),
        acked.live.len()
    );
    assert_everything_acknowledged_is_there(&restarted, &acked).await;
}

#[tokio::test]
async fn sigkill_mid_writes_loses_no_acknowledged_write_on_sqlite() {
    sigkill_loses_nothing_acknowledged(None).await;
}

#[tokio::test]
async fn sigkill_mid_writes_loses_no_acknowledged_write_on_postgres() {
    if skipped_unless(
        Backend::Postgres,
        "this run has no PostgreSQL server; the SQLite test runs in every run",
    ) {
        return;
    }
    let database = PgDatabase::create(&postgres_server().unwrap()).await;
    sigkill_loses_nothing_acknowledged(Some(&database.url)).await;
}
