//! `latchkey migrate`: the SQLite database a server ran on, and its data
//! directory's signing keyring, copied into an empty PostgreSQL database, so
//! that growing to several instances keeps every account, key, todo,
//! revocation and signing key instead of re-issuing keys.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};

use crate::{
    config::Config,
    db::{
        copy::{self, Copied, CopyUnderWay},
        Db, Location,
    },
    keyring::{self, DataDirKeyring, KeyringSecret},
};

/// What a migration did, for the command to report.
pub struct Migrated {
    /// The SQLite file copied from.
    pub from: String,
    /// The PostgreSQL server and database copied into, without the password.
    pub into: String,
    pub copied: Copied,
    /// The signing keyring copied into the database's; `None` when the
    /// signing key is configured (`--jwt-secret`, `--jwt-key-file`) and
    /// either no `--keyring-secret` is given or the data directory has no
    /// keyring, so there is none to copy.
    pub keyring: Option<CopiedKeyring>,
}

/// The signing keyring a migration copied.
pub struct CopiedKeyring {
    /// How many keys.
    pub keys: usize,
    /// The data directory's file they were read from.
    pub from: PathBuf,
}

const POSTGRES_URL: &str = "a PostgreSQL URL (postgres://USER@HOST/DATABASE or postgresql://…)";

/// Copies the database `config` names (SQLite, as `serve` would open it) and
/// the data directory's keyring (sealed with `--keyring-secret`; a data
/// directory without one is refused unless the signing key is configured)
/// into the PostgreSQL database `to` names, which must hold no table that is
/// not latchkey's, is then migrated, and must hold no account, key, todo or
/// keyring. The arguments are checked before anything is opened; no message
/// repeats a URL, which may hold a password.
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
    // Required before anything is written: without it the instances on
    // PostgreSQL would sign with new keys, and every token issued so far
    // would stop verifying.
    let secret = keyring::secret(config)?;
    let configured = keyring::configured(config)?.is_some();
    if secret.is_none() && !configured {
        return Err(anyhow!(
            "latchkey migrate copies the data directory's signing keyring into the PostgreSQL \
             database, encrypted with --keyring-secret (LATCHKEY_KEYRING_SECRET), and none is \
             given: make 32 random bytes in base64 once (`openssl rand -base64 32`), keep them \
             safe, and give the same to migrate and to every instance on the database; or, if \
             the server signs with --jwt-secret, --jwt-secret-file or --jwt-key-file, give that \
             instead"
        ));
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

    // Read before anything is opened: a keyring that is missing or cannot
    // be read stops the copy before the target is touched.
    let keyring = match &secret {
        Some(_) => DataDirKeyring::read(&config.data_dir).context("copying the signing keyring")?,
        None => None,
    };
    // Copying none would seal an empty keyring into the database, whose
    // instances would then sign with new keys, so that no token issued so
    // far verifies; and a keyring once there is never replaced.
    if keyring.is_none() && !configured {
        let [file, legacy] = DataDirKeyring::looked_for(&config.data_dir);
        bail!(
            "there is no signing keyring to copy: neither {} nor {} exists; latchkey migrate \
             copies the keys the server signed with from the data directory it ran with, which \
             --database-url does not change: give that --data-dir, or, if the server signs with \
             --jwt-secret, --jwt-secret-file or --jwt-key-file, give that instead",
            file.display(),
            legacy.display()
        );
    }

    let (from, into) = (source.describe(), target.describe());
    let source = crate::open_db(config)
        .await
        .with_context(|| format!("opening the SQLite database {from}"))?;
    let target = match copy::open_target(&target, 2).await {
        Ok(target) => target,
        Err(e) => {
            source.close().await;
            return Err(e).context("opening the PostgreSQL database");
        }
    };
    let keyring = keyring.zip(secret);
    let migrated = copy_into(&source, &target, keyring.as_ref()).await;
    source.close().await;
    target.close().await;
    let copied = migrated?;
    Ok(Migrated {
        from,
        into,
        copied,
        keyring: keyring.map(|(keyring, _)| CopiedKeyring {
            keys: keyring.keys(),
            from: keyring.file().to_owned(),
        }),
    })
}

/// The rows, then the keyring, in one transaction on the target, then its
/// commit: whatever fails, the keyring included and the commit itself, takes
/// everything back with it, so the target is left empty and the copy can be
/// made again.
async fn copy_into(
    source: &Db,
    target: &Db,
    keyring: Option<&(DataDirKeyring, KeyringSecret)>,
) -> anyhow::Result<Copied> {
    let mut copy = CopyUnderWay::begin(source, target).await?;
    let copied = copy.rows().await?;
    if let Some((keyring, secret)) = keyring {
        keyring
            .copy_into(&mut copy, secret)
            .await
            .context("copying the signing keyring")?;
    }
    copy.commit().await.context("committing the copy")?;
    Ok(copied)
}
