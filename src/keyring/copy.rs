//! Moving a data directory's keyring into a PostgreSQL database, for
//! `latchkey migrate`: the instances on the database then sign with the keys
//! the SQLite server signed with, so the tokens it issued keep verifying.

use std::path::{Path, PathBuf};

use anyhow::bail;
use chrono::Utc;

use super::{database::sealed, file::FileStore, policy::StoredKeyring, seal::KeyringSecret};
use crate::db::copy::CopyUnderWay;

/// A data directory's keyring as it is copied into a database, keys no
/// server can need any more left out. `latchkey migrate` reads it before it
/// opens anything, so that a data directory whose keyring is missing or
/// damaged is refused before the target is touched.
pub struct DataDirKeyring {
    stored: StoredKeyring,
    file: PathBuf,
}

impl DataDirKeyring {
    /// The keyring of `data_dir`: its `signing-keys.json`, or the
    /// `jwt-secret` file of a version from before the keyring; `None` if it
    /// has neither. The data directory is not changed.
    pub fn read(data_dir: &Path) -> anyhow::Result<Option<DataDirKeyring>> {
        let store = FileStore::new(data_dir);
        let (mut stored, file) = match store.read()? {
            Some(stored) => (stored, store.path()),
            None => match store.legacy_secret()? {
                Some(key) => {
                    let mut stored = StoredKeyring::default();
                    stored.add(key, Utc::now());
                    (stored, store.legacy_path())
                }
                None => return Ok(None),
            },
        };
        stored.prune(Utc::now());
        Ok(Some(DataDirKeyring { stored, file }))
    }

    /// Where a data directory's keyring is looked for, in order.
    pub fn looked_for(data_dir: &Path) -> [PathBuf; 2] {
        let store = FileStore::new(data_dir);
        [store.path(), store.legacy_path()]
    }

    /// How many keys are copied.
    pub fn keys(&self) -> usize {
        self.stored.keys.len()
    }

    /// The file the keyring was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Writes the keyring, sealed with `secret`, as the keyring of the
    /// target of `copy`, in the copy's transaction: it is the target's with
    /// the rows or not at all. Refuses if the target holds a keyring already.
    pub async fn copy_into(
        &self,
        copy: &mut CopyUnderWay,
        secret: &KeyringSecret,
    ) -> anyhow::Result<()> {
        let sealed = sealed(secret, &self.stored)?;
        copy.keyring(|existing| {
            refuse_existing(existing, &self.file)?;
            Ok::<_, anyhow::Error>((sealed, ()))
        })
        .await
    }
}

fn refuse_existing(existing: Option<&[u8]>, file: &Path) -> anyhow::Result<()> {
    if existing.is_some() {
        bail!(
            "the database already holds a signing keyring: copying {} into it would replace the \
             keys its instances sign with; copy into a new database",
            file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::{domain::signing::SigningAlg, keyring::KEYRING_FILE};

    #[test]
    fn a_data_directory_s_keyring_is_its_file_or_else_its_secret_from_before_the_keyring() {
        let empty = tempfile::tempdir().unwrap();
        let legacy = tempfile::tempdir().unwrap();
        fs::write(legacy.path().join("jwt-secret"), "s".repeat(43)).unwrap();
        let both = tempfile::tempdir().unwrap();
        FileStore::new(both.path())
            .update(|stored, now| stored.ensure_current(SigningAlg::EdDSA, now))
            .unwrap();
        fs::write(both.path().join("jwt-secret"), "s".repeat(43)).unwrap();

        let none = DataDirKeyring::read(empty.path()).unwrap();
        let from_secret = DataDirKeyring::read(legacy.path()).unwrap().unwrap();
        let from_file = DataDirKeyring::read(both.path()).unwrap().unwrap();

        assert!(none.is_none());
        assert_eq!(
            DataDirKeyring::looked_for(empty.path()),
            [
                empty.path().join(KEYRING_FILE),
                empty.path().join("jwt-secret")
            ]
        );
        assert_eq!(from_secret.file(), legacy.path().join("jwt-secret"));
        assert_eq!(from_secret.keys(), 1);
        assert!(from_secret.stored.current(SigningAlg::HS256).is_some());
        assert_eq!(from_file.file(), both.path().join(KEYRING_FILE));
        assert_eq!(from_file.keys(), 1);
        assert!(from_file.stored.current(SigningAlg::EdDSA).is_some());
        assert!(legacy.path().join("jwt-secret").exists(), "left as it was");
    }
}
