//! `latchkey migrate`: the SQLite database a server ran on, copied into an
//! empty PostgreSQL database, so that growing to several instances keeps
//! every account, key, todo and revocation instead of re-issuing keys.

use anyhow::{bail, Context};

use crate::{
    config::Config,
    db::{
        copy::{self, Copied},
        Db, Location,
    },
};

/// What a migration did, for the command to report.
pub struct Migrated {
    /// The SQLite file copied from.
    pub from: String,
    /// The PostgreSQL server and database copied into, without the password.
    pub into: String,
    pub copied: Copied,
}

const POSTGRES_URL: &str = "a PostgreSQL URL (postgres://USER@HOST/DATABASE or postgresql://…)";

/// Copies the database `config` names (SQLite, as `serve` would open it) into
/// the PostgreSQL database `to` names, which is migrated first and must hold
/// no account, key or todo. Both URLs are checked before anything is opened;
/// no message repeats a URL, which may hold a password.
pub async fn to_postgres(config: &Config, to: &str) -> anyhow::Result<Migrated> {
    let target = match Location::from_url(to) {
        Ok(target @ Location::Postgres(_)) => target,
        Ok(_) => bail!(
            "--to names an SQLite database: it must be {POSTGRES_URL}, the database to copy into"
        ),
        Err(e) => bail!("--to must be {POSTGRES_URL}, not {}", e.given()),
    };
    let source = config.database()?;
    if matches!(source, Location::Postgres(_)) {
        bail!(
            "latchkey migrate copies from SQLite, but --database-url names a PostgreSQL database: \
             give the --data-dir (or --database-url sqlite://PATH) the server ran on"
        );
    }
    let Some(file) = source.sqlite_file() else {
        bail!("an in-memory SQLite database has nothing to copy");
    };
    // Opening would create an empty database, and the copy would succeed
    // with nothing in it.
    if !file.is_file() {
        bail!(
            "there is no SQLite database at {}: give the --data-dir (or --database-url \
             sqlite://PATH) the server ran on",
            file.display()
        );
    }

    let (from, into) = (source.describe(), target.describe());
    let source = crate::open_db(config)
        .await
        .with_context(|| format!("opening the SQLite database {from}"))?;
    let target = match Db::open(&target, 2).await {
        Ok(target) => target,
        Err(e) => {
            source.close().await;
            return Err(e).context("opening the PostgreSQL database");
        }
    };
    let copied = copy::sqlite_to_postgres(&source, &target).await;
    source.close().await;
    target.close().await;
    Ok(Migrated {
        from,
        into,
        copied: copied?,
    })
}
