//! Bulk rows for the benchmark (`bench/run`), written straight into a
//! latchkey database whose schema the server has created: accounts holding
//! real API keys, and todos for one account. The rows are the ones the
//! server writes (the same key format, blake3 hash, hint, scopes and times,
//! bound through the same driver), so a seeded key exchanges like any other;
//! only the audit events of their creation are left out.
//!
//! ```sh
//! cargo run --release --example seed -- --sqlite DATA_DIR/latchkey.db \
//!     --keys 99000 --working-set /tmp/x/keys.txt
//! cargo run --release --example seed -- --postgres postgres://… --todos 100 --todo-owner UUID
//! ```
//!
//! `--working-set FILE` receives `KEY_ID SECRET` lines for the new keys
//! until the file holds `--working-set-size` of them, so seeding in steps
//! keeps the first keys as the set the load draws from. The file holds
//! working secrets: keep it in a temporary directory.

use std::{
    fs::OpenOptions,
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    str::FromStr,
    time::Instant,
};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Parser;
use latchkey::domain::{
    keys::ApiKey,
    new_key::DEFAULT_SCOPES,
    scopes::{Role, Scopes},
    users::{Email, Password},
};
use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, Postgres, QueryBuilder, Sqlite, SqlitePool,
};
use uuid::Uuid;

/// Rows per INSERT: 7 binds a key row, well under both drivers' limits.
const ROWS_PER_STATEMENT: usize = 1_000;
/// Accounts per transaction: big enough that commits cost nothing.
const ACCOUNTS_PER_TRANSACTION: u64 = 100;
/// The password of every seeded account (they are never logged in).
const PASSWORD: &str = "seeded bench account";

#[derive(Parser)]
#[command(about = "Bulk keys and todos for the benchmark")]
struct Args {
    /// The SQLite database file (latchkey.db in the server's data directory).
    #[arg(
        long,
        conflicts_with = "postgres",
        required_unless_present = "postgres"
    )]
    sqlite: Option<PathBuf>,
    /// The PostgreSQL database URL.
    #[arg(long)]
    postgres: Option<String>,
    /// API keys to add, spread over new accounts.
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Keys each new account holds.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys_per_account: u64,
    /// Where the plaintext of new keys goes, `KEY_ID SECRET` a line.
    #[arg(long)]
    working_set: Option<PathBuf>,
    /// How many keys the working-set file holds at most.
    #[arg(long, default_value_t = 10_000)]
    working_set_size: u64,
    /// Todos to add for --todo-owner.
    #[arg(long, default_value_t = 0, requires = "todo_owner")]
    todos: u64,
    /// The account the todos belong to.
    #[arg(long)]
    todo_owner: Option<Uuid>,
    /// Well-formed keys, checksum included, that no database holds, for the bad-key client.
    #[arg(long, default_value_t = 0, requires = "unknown_keys_file")]
    unknown_keys: u64,
    /// Where --unknown-keys go, one a line.
    #[arg(long)]
    unknown_keys_file: Option<PathBuf>,
}

enum Target {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the target's pool and `$db` to its
/// sqlx database type, written once for both backends.
macro_rules! on_target {
    ($target:expr, |$pool:ident, $db:ident| $body:expr) => {
        match $target {
            Target::Sqlite($pool) => {
                type $db = Sqlite;
                $body
            }
            Target::Postgres($pool) => {
                type $db = Postgres;
                $body
            }
        }
    };
}

/// One seeded key, as the server would store it.
struct SeedKey {
    id: Uuid,
    user_id: Uuid,
    key: ApiKey,
}

/// One seeded account and its keys.
struct Account {
    id: Uuid,
    email: Email,
    keys: Vec<SeedKey>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = connect(&args).await?;
    if args.keys > 0 {
        let started = Instant::now();
        seed_keys(&target, &args).await?;
        eprintln!(
            "seed: {} keys in {:.1} s",
            args.keys,
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(owner) = args.todo_owner.filter(|_| args.todos > 0) {
        let started = Instant::now();
        seed_todos(&target, owner, args.todos).await?;
        eprintln!(
            "seed: {} todos in {:.1} s",
            args.todos,
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = &args.unknown_keys_file {
        write_unknown_keys(path, args.unknown_keys)?;
    }
    Ok(())
}

async fn connect(args: &Args) -> anyhow::Result<Target> {
    if let Some(url) = &args.postgres {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        return Ok(Target::Postgres(pool));
    }
    let path = args.sqlite.as_ref().context("--sqlite or --postgres")?;
    if !path.exists() {
        bail!(
            "{} does not exist: start the server on it once first",
            path.display()
        );
    }
    // As the server opens it (WAL), with a page cache that holds the key
    // hash index: its inserts land at random places in it.
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .pragma("cache_size", "-262144");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .context("opening the SQLite database")?;
    Ok(Target::Sqlite(pool))
}

/// Adds `args.keys` keys over new accounts, a transaction every
/// [`ACCOUNTS_PER_TRANSACTION`] accounts, and writes the working set.
async fn seed_keys(target: &Target, args: &Args) -> anyhow::Result<()> {
    let password_hash = Password::parse_new(PASSWORD.into())
        .map_err(anyhow::Error::msg)?
        .hash()
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let mut working_set = WorkingSet::open(args.working_set.as_deref(), args.working_set_size)?;
    let mut left = args.keys;
    while left > 0 {
        let mut accounts = Vec::new();
        while left > 0 && (accounts.len() as u64) < ACCOUNTS_PER_TRANSACTION {
            let n = left.min(args.keys_per_account);
            accounts.push(new_account(n)?);
            left -= n;
        }
        insert_accounts(target, &accounts, &password_hash).await?;
        for account in &accounts {
            working_set.add(&account.keys)?;
        }
    }
    working_set.finish()
}

fn new_account(keys: u64) -> anyhow::Result<Account> {
    let id = Uuid::now_v7();
    let email =
        Email::parse(&format!("bench-{}@example.com", id.simple())).map_err(anyhow::Error::msg)?;
    let keys = (0..keys)
        .map(|_| SeedKey {
            id: Uuid::now_v7(),
            user_id: id,
            key: ApiKey::generate_with(&mut rand::rng()),
        })
        .collect();
    Ok(Account { id, email, keys })
}

/// The accounts and their keys, in one transaction.
async fn insert_accounts(
    target: &Target,
    accounts: &[Account],
    password_hash: &str,
) -> anyhow::Result<()> {
    let now = latchkey::db::now();
    // What a key gets when its creation names no scopes.
    let scopes = Scopes::of(&DEFAULT_SCOPES).to_string();
    let keys: Vec<&SeedKey> = accounts.iter().flat_map(|a| &a.keys).collect();
    on_target!(target, |pool, Db| {
        let mut tx = pool.begin().await?;
        for chunk in accounts.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO users (id, email, password_hash, role, disabled, created_at) ",
            );
            insert.push_values(chunk, |mut row, account| {
                row.push_bind(account.id)
                    .push_bind(account.email.as_str().to_owned())
                    .push_bind(password_hash.to_owned())
                    .push_bind(Role::User.as_str())
                    .push_bind(false)
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
        }
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO api_keys (id, user_id, name, key_hash, hint, scopes, created_at) ",
            );
            insert.push_values(chunk, |mut row, key| {
                row.push_bind(key.id)
                    .push_bind(key.user_id)
                    .push_bind("bench")
                    .push_bind(key.key.hash().0.to_vec())
                    .push_bind(key.key.hint())
                    .push_bind(scopes.clone())
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

async fn seed_todos(target: &Target, owner: Uuid, count: u64) -> anyhow::Result<()> {
    let mut done = 0;
    while done < count {
        let batch = (count - done).min(100 * ROWS_PER_STATEMENT as u64);
        let now = latchkey::db::now();
        let todos: Vec<(Uuid, String)> = (done..done + batch)
            .map(|n| (Uuid::now_v7(), format!("todo {n}")))
            .collect();
        insert_todos(target, owner, &todos, now).await?;
        done += batch;
    }
    Ok(())
}

async fn insert_todos(
    target: &Target,
    owner: Uuid,
    todos: &[(Uuid, String)],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    on_target!(target, |pool, Db| {
        let mut tx = pool.begin().await?;
        for chunk in todos.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO todos (id, user_id, title, completed, created_at, updated_at) ",
            );
            insert.push_values(chunk, |mut row, (id, title)| {
                row.push_bind(*id)
                    .push_bind(owner)
                    .push_bind(title.clone())
                    .push_bind(false)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// The file of keys the load draws from, filled up to its size.
struct WorkingSet {
    out: Option<BufWriter<std::fs::File>>,
    room: u64,
}

impl WorkingSet {
    fn open(path: Option<&Path>, size: u64) -> anyhow::Result<WorkingSet> {
        let Some(path) = path else {
            return Ok(WorkingSet { out: None, room: 0 });
        };
        let held = match std::fs::File::open(path) {
            Ok(file) => BufReader::new(file).lines().count() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).context("reading the working set"),
        };
        let file = owner_only_append(path)?;
        Ok(WorkingSet {
            out: Some(BufWriter::new(file)),
            room: size.saturating_sub(held),
        })
    }

    fn add(&mut self, keys: &[SeedKey]) -> anyhow::Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        for key in keys.iter().take(usize::try_from(self.room)?) {
            writeln!(out, "{} {}", key.id, key.key.expose())?;
            self.room -= 1;
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some(mut out) = self.out {
            out.flush()?;
        }
        Ok(())
    }
}

/// Keys in the right format, checksum included, that match no stored key.
fn write_unknown_keys(path: &Path, count: u64) -> anyhow::Result<()> {
    let mut out = BufWriter::new(owner_only_append(path)?);
    for _ in 0..count {
        writeln!(out, "{}", ApiKey::generate().expose())?;
    }
    out.flush()?;
    Ok(())
}

fn owner_only_append(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}
