//! `latchkey backup`: a consistent copy of the SQLite database a server runs
//! on, written while it runs (its SQL is `db/backup.rs`).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context};

use crate::{
    config::Config,
    db::{backup, Location},
    owner_only,
};

/// What a backup wrote, for the command to report.
pub struct BackedUp {
    /// The database file copied.
    pub from: PathBuf,
    /// The copy.
    pub into: PathBuf,
    pub bytes: u64,
}

/// Copies the SQLite database `config` names, as of one moment, into `file`
/// (owner-only), refusing an existing `file` unless `replace`. The copy is
/// written beside `file` and moved into place once it is complete and on
/// disk, so `file` is never a partial copy; on PostgreSQL it refuses, naming
/// the tool to use instead.
pub async fn sqlite(config: &Config, file: &Path, replace: bool) -> anyhow::Result<BackedUp> {
    let source = match config.database()? {
        Location::Postgres(_) => bail!(
            "latchkey backup copies an SQLite database, and --database-url names a PostgreSQL \
             one: back it up with PostgreSQL's own pg_dump (`pg_dump --format=custom --file \
             latchkey.dump postgres://USER@HOST/DATABASE`, restored with pg_restore), and keep \
             the --keyring-secret with it: the signing keyring is in the database, sealed with \
             that secret"
        ),
        location => location.sqlite_file().ok_or_else(|| {
            anyhow!("--database-url names an in-memory SQLite database, which has no file to copy")
        })?,
    };
    if !source.is_file() {
        bail!(
            "there is no database at {}: give the --data-dir (or --database-url) the server runs with",
            source.display()
        );
    }
    let into = std::path::absolute(file)
        .with_context(|| format!("finding where {} is", file.display()))?;
    if fs::canonicalize(&into).ok() == fs::canonicalize(&source).ok() {
        bail!(
            "{} is the database itself: give the backup a file of its own",
            file.display()
        );
    }
    if !replace && fs::symlink_metadata(&into).is_ok() {
        bail!(exists(file));
    }
    let name = into
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", file.display()))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".partial-{}", uuid::Uuid::now_v7().simple()));
    let partial = into.with_file_name(partial_name);
    // Owner-only from its first byte: the copy holds every key hash and
    // password hash. SQLite writes into an empty file and keeps its mode.
    owner_only::create_new_file(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let written = write(&source, &partial, &into, replace).await;
    if written.is_err() {
        let _ = fs::remove_file(&partial);
    }
    written.map_err(|e| match e.downcast_ref::<io::Error>() {
        Some(io) if io.kind() == io::ErrorKind::AlreadyExists => anyhow!(exists(file)),
        _ => e,
    })?;
    let bytes = fs::metadata(&into)?.len();
    Ok(BackedUp {
        from: source,
        into,
        bytes,
    })
}

fn exists(file: &Path) -> String {
    format!(
        "{} exists: give a new file, or --force to replace it",
        file.display()
    )
}

/// The copy into `partial`, flushed to disk, then put in place: renamed over
/// an existing file when replacing, else linked (which fails, rather than
/// replaces, if the file has appeared meanwhile).
async fn write(source: &Path, partial: &Path, into: &Path, replace: bool) -> anyhow::Result<()> {
    backup::vacuum_into(source, partial)
        .await
        .with_context(|| format!("copying {}", source.display()))?;
    fs::File::open(partial)?.sync_all()?;
    if replace {
        fs::rename(partial, into)?;
    } else {
        fs::hard_link(partial, into)?;
        fs::remove_file(partial)?;
    }
    // The new name is durable only once its directory is.
    if let Some(dir) = into.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
