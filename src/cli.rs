//! The command tree and its commands: serve, admin create, signing-key
//! rotate|list, migrate, backup, openapi.

use std::{
    io::{BufRead, IsTerminal},
    path::PathBuf,
};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    backup,
    config::Config,
    domain::{audit::Actor, scopes::Role},
    error::Error,
    http,
    keyring::{self, Keyring, SigningKeyState},
    migrate,
    service::accounts,
    App,
};

// No `Debug`: the configuration holds the JWT and keyring secrets.
#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about = "API keys traded for short-lived JWTs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Manage accounts from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage the keys tokens are signed with.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
    /// Copy the SQLite database into an empty PostgreSQL database.
    ///
    /// Copies every account (with its password hash, role and disabled
    /// state), API key (revoked and expired ones too), todo, revocation and
    /// audit event from the SQLite database of --data-dir (or --database-url
    /// sqlite://…) into the PostgreSQL database --to names, after bringing its schema up
    /// to date (a database with tables that are not latchkey's is refused
    /// first, and left as it was), and the signing keyring of --data-dir (its
    /// signing-keys.json, or the jwt-secret of an older version) into the
    /// database's, encrypted with --keyring-secret (not needed when the
    /// server signs with --jwt-secret or --jwt-key-file). The keyring is
    /// always the data directory's, even with --database-url: give the
    /// --data-dir the server ran with; one without a keyring is refused,
    /// unless the signing key is configured. Keys, passwords, ids and signing
    /// keys stay as they are, so clients need no new key and tokens already
    /// issued keep verifying. The target must hold no account, key, todo or
    /// keyring; the rows and the keyring are one transaction there, so a
    /// failed copy leaves it empty.
    ///
    /// Stop the server first: the copy is of the SQLite database as it was
    /// when the command began, and anything written to it later is not
    /// copied.
    Migrate {
        /// The PostgreSQL database to copy into: postgres://USER@HOST/DATABASE. The password may come from PGPASSWORD or ~/.pgpass instead, to keep it out of the process list.
        #[arg(long, value_name = "POSTGRES_URL")]
        to: DatabaseUrl,
    },
    /// Write a consistent copy of the SQLite database to FILE while servers run on it.
    ///
    /// The copy (SQLite's VACUUM INTO) holds every change committed before
    /// it began and none after, and servers keep answering meanwhile. FILE is
    /// created owner-only (0600) and only appears once the copy is complete;
    /// an existing FILE is refused unless --force is given. The signing
    /// keyring (signing-keys.json in the data directory) is not in it: copy
    /// that file with it, so that tokens issued before a restore keep
    /// verifying. On PostgreSQL, use pg_dump instead.
    Backup {
        /// Where to write the copy.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the OpenAPI document.
    Openapi {
        #[arg(long, value_enum, default_value = "json")]
        format: SpecFormat,
        /// The server URL the document names, for clients that import it.
        #[arg(long, default_value = crate::http::spec::DEFAULT_BASE_URL)]
        server_url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin account. The password is read from a prompt, or from
    /// standard input when that is not a terminal.
    Create {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a new key current for --jwt-alg. Running servers that share the
    /// keyring (the data directory's; on PostgreSQL, with --database-url and
    /// --keyring-secret, the database's) switch to it within a second; the
    /// replaced key keeps verifying until the tokens it signed have expired.
    Rotate,
    /// List the keys in the keyring: the data directory's, or on PostgreSQL
    /// the database's.
    List,
}

/// A database URL given on the command line, which may hold a password: its
/// `Debug` shows none of it.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<hidden>)")
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> DatabaseUrl {
        DatabaseUrl(url)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SpecFormat {
    Json,
    Yaml,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Admin(AdminCommand::Create { email }) => create_admin(&cli.config, &email).await,
        Command::SigningKey(command) => signing_key(&cli.config, command).await,
        Command::Migrate { to } => migrate(&cli.config, &to).await,
        Command::Backup { file, force } => {
            let backed_up = backup::sqlite(&cli.config, &file, force).await?;
            println!(
                "copied {} into {} ({} bytes, owner-only)",
                backed_up.from.display(),
                backed_up.into.display(),
                backed_up.bytes
            );
            let keyring = cli.config.data_dir.join(keyring::KEYRING_FILE);
            if keyring.exists() {
                println!(
                    "the signing keyring is not in the copy: keep {} with it, so that tokens \
                     issued before a restore keep verifying",
                    keyring.display()
                );
            }
            Ok(())
        }
        Command::Openapi { format, server_url } => {
            let spec = match format {
                SpecFormat::Json => http::spec::json_at(&server_url),
                SpecFormat::Yaml => http::spec::yaml_at(&server_url),
            };
            println!("{}", spec.trim_end());
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let base = format!("http://{}", app.addr());
    tracing::info!("latchkey is listening on {base}");
    tracing::info!("Swagger UI: {base}/docs/");
    if let Some(metrics) = app.metrics_addr() {
        tracing::info!("Prometheus metrics: http://{metrics}/metrics");
    }
    app.run_until_stopped().await
}

async fn create_admin(config: &Config, email: &str) -> anyhow::Result<()> {
    let password = read_password()?;
    let db = crate::open_db(config).await?;
    let created = accounts::create(&db, email, password, Role::Admin).await;
    db.close().await;
    match created {
        Ok(user) => {
            println!("created admin {} ({})", user.email, user.id);
            Ok(())
        }
        Err(Error::Invalid(fields)) => {
            let problems: Vec<_> = fields
                .iter()
                .map(|f| format!("{} {}", f.field, f.message))
                .collect();
            bail!("{}", problems.join("; "))
        }
        Err(e) => Err(e.into()),
    }
}

async fn migrate(config: &Config, to: &DatabaseUrl) -> anyhow::Result<()> {
    let migrated = migrate::to_postgres(config, &to.0).await?;
    let copied = migrated.copied;
    println!(
        "copied {}, {}, {}, {} and {} from {} into {}",
        count(copied.users, "account", "accounts"),
        count(copied.keys, "API key", "API keys"),
        count(copied.todos, "todo", "todos"),
        count(
            copied.changes,
            "revocation feed entry",
            "revocation feed entries"
        ),
        count(copied.events, "audit event", "audit events"),
        migrated.from,
        migrated.into
    );
    match migrated.keyring {
        Some(keyring) => println!(
            "copied {} from {} into the database's keyring, encrypted with --keyring-secret: \
             give every instance on the database the same --keyring-secret",
            count(keyring.keys as u64, "signing key", "signing keys"),
            keyring.from.display()
        ),
        None => println!(
            "copied no signing keyring: the signing key is set by --jwt-secret, \
             --jwt-secret-file or --jwt-key-file; give every instance on the database the same"
        ),
    }
    Ok(())
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

async fn signing_key(config: &Config, command: SigningKeyCommand) -> anyhow::Result<()> {
    if keyring::configured(config)?.is_some() {
        bail!(
            "the signing key is set by --jwt-secret, --jwt-secret-file or --jwt-key-file (or their LATCHKEY_ variables), \
             not kept in a keyring: to change it, change that setting and restart"
        );
    }
    keyring::secret(config)?;
    // On SQLite the keyring is the data directory's file, and the database
    // is opened for the audit log that records a rotation.
    let db = crate::open_db(config).await?;
    let done = match Keyring::for_config(config, &db) {
        Ok(keyring) => run_signing_key(config, &keyring, command).await,
        Err(e) => Err(e),
    };
    db.close().await;
    done
}

async fn run_signing_key(
    config: &Config,
    keyring: &Keyring,
    command: SigningKeyCommand,
) -> anyhow::Result<()> {
    match command {
        SigningKeyCommand::Rotate => {
            let grace = keyring::grace(config.token_ttl);
            let until = Utc::now() + grace;
            // What a replaced key verifies for beyond the token lifetime.
            let margin = (grace - chrono::Duration::from_std(config.token_ttl)?).num_seconds();
            for rotation in keyring.rotate(Actor::cli()).await? {
                println!(
                    "new current {} signing key: {}",
                    rotation.alg.as_str(),
                    rotation.current
                );
                for kid in rotation.retired {
                    println!(
                        "replaced key {kid} keeps verifying for the servers' token lifetime \
                         plus {margin} s (with --token-ttl {}: until {})",
                        humantime::format_duration(config.token_ttl),
                        timestamp(until)
                    );
                }
            }
            if keyring.kept_in_database() {
                println!("servers on this database switch within a second");
            } else {
                println!(
                    "servers using {} switch within a second",
                    config.data_dir.display()
                );
            }
        }
        SigningKeyCommand::List => {
            for listed in keyring.list().await? {
                let state = match listed.state {
                    SigningKeyState::Current => "current".to_owned(),
                    SigningKeyState::Verifying { until } => {
                        format!("verifying until {}", timestamp(until))
                    }
                    SigningKeyState::Expired => "expired".to_owned(),
                };
                println!(
                    "{}\t{}\tcreated {}\t{state}",
                    listed.kid,
                    listed.alg.as_str(),
                    listed
                        .created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
        }
    }
    Ok(())
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// From a prompt without echo on a terminal; otherwise the first line of
/// standard input, so scripts can pipe it in.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
