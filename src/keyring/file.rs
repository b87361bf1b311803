//! The keyring file of a data directory, where SQLite deployments keep it:
//! read, and changed under a lock by writing a new file and renaming it into
//! place, so that a reader sees the old keyring or the new one, never part of
//! either, and a crash loses neither.

use std::{
    fs,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{policy::StoredKeyring, KEYRING_FILE};
use crate::{domain::signing::SigningKey, owner_only};

const LOCK_FILE: &str = "signing-keys.lock";
/// Where the HS256 secret was kept before keys could rotate; imported once.
const LEGACY_SECRET_FILE: &str = "jwt-secret";

/// The keyring file of one data directory.
pub(super) struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub(super) fn new(dir: &Path) -> FileStore {
        FileStore {
            dir: dir.to_owned(),
        }
    }

    pub(super) fn path(&self) -> PathBuf {
        self.dir.join(KEYRING_FILE)
    }

    /// The keyring, or `None` if there is no file yet.
    pub(super) fn read(&self) -> anyhow::Result<Option<StoredKeyring>> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => parse(&bytes)
                .with_context(|| format!("reading {}", path.display()))
                .map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The file's bytes as they are now, without blocking the runtime, or
    /// `None` if there is no file yet.
    pub(super) async fn bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path();
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The keyring in bytes read from the file.
    pub(super) fn decode(&self, bytes: &[u8]) -> anyhow::Result<StoredKeyring> {
        parse(bytes).with_context(|| format!("reading {}", self.path().display()))
    }

    /// Read, change, write back, holding the directory's keyring lock so two
    /// writers (a starting server, a rotation) cannot lose each other's key.
    /// Returns once the new file is durable, with what `change` told.
    pub(super) fn update<T>(
        &self,
        change: impl FnOnce(&mut StoredKeyring, DateTime<Utc>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        owner_only::create_dir_all(&self.dir)
            .with_context(|| format!("creating the data directory {}", self.dir.display()))?;
        let lock = owner_only::open_or_create(&self.dir.join(LOCK_FILE))
            .context("opening the signing keyring's lock file")?;
        lock.lock().context("locking the signing keyring")?;
        let mut stored = match self.read()? {
            Some(stored) => stored,
            None => self.import_legacy_secret()?,
        };
        let outcome = change(&mut stored, Utc::now())?;
        self.write(&stored)?;
        let legacy = self.dir.join(LEGACY_SECRET_FILE);
        if legacy.exists() {
            fs::remove_file(&legacy)
                .with_context(|| format!("removing {} (now in the keyring)", legacy.display()))?;
        }
        Ok(outcome)
    }

    fn write(&self, stored: &StoredKeyring) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(stored).expect("the keyring serialises");
        let path = self.path();
        let temporary = self.dir.join(format!("{KEYRING_FILE}.new"));
        // A leftover from an interrupted write may have other permissions.
        match fs::remove_file(&temporary) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", temporary.display()))
            }
            _ => {}
        }
        let mut file = owner_only::create_new_file(&temporary)
            .with_context(|| format!("writing {}", temporary.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
        // The rename is durable once the directory is.
        #[cfg(unix)]
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))?;
        Ok(())
    }

    /// A data directory from before the keyring kept one HS256 secret in its
    /// own file: it becomes the keyring's first key, so tokens it signed stay
    /// valid.
    fn import_legacy_secret(&self) -> anyhow::Result<StoredKeyring> {
        let mut stored = StoredKeyring::default();
        if let Some(key) = self.legacy_secret()? {
            stored.add(key, Utc::now());
            tracing::info!(
                path = %self.dir.join(LEGACY_SECRET_FILE).display(),
                "moved the JWT secret into the signing keyring"
            );
        }
        Ok(stored)
    }

    /// Where a data directory from before the keyring kept its HS256 secret.
    pub(super) fn legacy_path(&self) -> PathBuf {
        self.dir.join(LEGACY_SECRET_FILE)
    }

    /// The HS256 secret of a data directory from before the keyring, if it
    /// has one.
    pub(super) fn legacy_secret(&self) -> anyhow::Result<Option<SigningKey>> {
        let legacy = self.legacy_path();
        match fs::read_to_string(&legacy) {
            Ok(text) => SigningKey::hs256(text.trim().as_bytes())
                .map(Some)
                .with_context(|| format!("reading {}", legacy.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", legacy.display())),
        }
    }
}

pub(super) fn parse(bytes: &[u8]) -> anyhow::Result<StoredKeyring> {
    serde_json::from_slice(bytes)
        .context("the signing keyring is not valid JSON of the expected shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signing::SigningAlg;

    #[test]
    fn a_secret_from_before_the_keyring_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "s".repeat(43);
        fs::write(dir.path().join(LEGACY_SECRET_FILE), &secret).unwrap();
        let store = FileStore::new(dir.path());
        store
            .update(|stored, now| stored.ensure_current(SigningAlg::HS256, now))
            .unwrap();
        let stored = store.read().unwrap().unwrap();
        assert_eq!(
            stored.current(SigningAlg::HS256).unwrap().kid,
            SigningKey::hs256(secret.as_bytes()).unwrap().kid()
        );
        assert_eq!(stored.keys.len(), 1);
        assert!(!dir.path().join(LEGACY_SECRET_FILE).exists());
    }

    #[test]
    fn a_missing_keyring_is_none_and_a_broken_one_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        assert!(store.read().unwrap().is_none());
        fs::write(dir.path().join(KEYRING_FILE), "{ not json").unwrap();
        let error = format!("{:#}", store.read().err().unwrap());
        assert!(error.contains(KEYRING_FILE), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_write_replaces_a_leftover_temporary_file_and_leaves_only_the_owner_s_keyring() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join(format!("{KEYRING_FILE}.new"));
        fs::write(&leftover, "{ half written").unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o644)).unwrap();
        let store = FileStore::new(dir.path());
        store
            .update(|stored, now| stored.ensure_current(SigningAlg::EdDSA, now))
            .unwrap();
        assert!(!leftover.exists());
        let mode = fs::metadata(dir.path().join(KEYRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.read().unwrap().unwrap().keys.len(), 1);
    }
}
