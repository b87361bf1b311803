//! Moving a data directory's keyring into a PostgreSQL database, for
//! `latchkey migrate`: the instances on the database then sign with the keys
//! the SQLite server signed with, so the tokens it issued keep verifying.

use std::path::Path;

use anyhow::bail;
use chrono::Utc;

use super::{
    database::{sealed, DatabaseStore},
    file::FileStore,
    policy::StoredKeyring,
    seal::KeyringSecret,
};
use crate::db::{copy::CopyUnderWay, Db};

/// Copies the keyring of `data_dir` (its `signing-keys.json`, or the
/// `jwt-secret` file of a version from before the keyring) into `db`'s,
/// sealed with `secret`, and returns how many keys it copied. Keys no server
/// can need any more are left out. The data directory is not changed.
///
/// Refuses, writing nothing, if the database already holds a keyring (even
/// an empty one: the instances on it may be signing with it), and if `db` is
/// not a PostgreSQL database. With no keyring in the data directory it writes
/// an empty one, so the database's keyring is sealed with `secret` from the
/// start, and returns 0.
pub async fn copy_file_to_database(
    data_dir: &Path,
    db: &Db,
    secret: &KeyringSecret,
) -> anyhow::Result<usize> {
    let file = FileStore::new(data_dir);
    let stored = read(&file)?;
    let copied = stored.keys.len();
    DatabaseStore::new(db.clone(), secret.clone())
        .replace(|existing| {
            refuse_existing(existing, &file)?;
            Ok(stored)
        })
        .await?;
    Ok(copied)
}

/// [`copy_file_to_database`] into the target of `copy`, in the copy's
/// transaction: the keyring is written with the rows or not at all.
pub async fn copy_file_into(
    data_dir: &Path,
    copy: &mut CopyUnderWay,
    secret: &KeyringSecret,
) -> anyhow::Result<usize> {
    let file = FileStore::new(data_dir);
    let stored = read(&file)?;
    let copied = stored.keys.len();
    let sealed = sealed(secret, &stored)?;
    copy.keyring(|existing| {
        refuse_existing(existing, &file)?;
        Ok::<_, anyhow::Error>((sealed, ()))
    })
    .await?;
    Ok(copied)
}

/// The data directory's keyring as it is copied: empty if it has none.
fn read(file: &FileStore) -> anyhow::Result<StoredKeyring> {
    let mut stored = match file.read()? {
        Some(stored) => stored,
        None => {
            let mut stored = StoredKeyring::default();
            if let Some(key) = file.legacy_secret()? {
                stored.add(key, Utc::now());
            }
            stored
        }
    };
    stored.prune(Utc::now());
    Ok(stored)
}

fn refuse_existing(existing: Option<&[u8]>, file: &FileStore) -> anyhow::Result<()> {
    if existing.is_some() {
        bail!(
            "the database already holds a signing keyring: copying {} into it would replace the \
             keys its instances sign with; copy into a new database",
            file.path().display()
        );
    }
    Ok(())
}
