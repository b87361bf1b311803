//! The keyring file itself: read, and changed under a lock by writing a new
//! file and renaming it into place, so that a reader sees the old keyring or
//! the new one, never part of either, and a crash loses neither.

use std::{
    fs,
    io::{self, ErrorKind, Write},
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
pub(super) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(super) fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
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

    /// The keyring and the bytes it was read from, which must exist.
    pub(super) fn read_with_bytes(&self) -> anyhow::Result<(StoredKeyring, Vec<u8>)> {
        let path = self.path();
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let stored = parse(&bytes).with_context(|| format!("reading {}", path.display()))?;
        Ok((stored, bytes))
    }

    /// The file's bytes as they are now, without blocking the runtime.
    pub(super) async fn bytes(&self) -> io::Result<Vec<u8>> {
        tokio::fs::read(self.path()).await
    }

    /// Read, change, write back, holding the directory's keyring lock so two
    /// writers (a starting server, a rotation) cannot lose each other's key.
    pub(super) fn update(
        &self,
        change: impl FnOnce(&mut StoredKeyring, DateTime<Utc>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        owner_only::create_dir_all(&self.dir)
            .with_context(|| format!("creating the data directory {}", self.dir.display()))?;
        let lock = owner_only::open_or_create(&self.dir.join(LOCK_FILE))
            .context("opening the signing keyring's lock file")?;
        lock.lock().context("locking the signing keyring")?;
        let mut stored = match self.read()? {
            Some(stored) => stored,
            None => self.import_legacy_secret()?,
        };
        change(&mut stored, Utc::now())?;
        self.write(&stored)?;
        let legacy = self.dir.join(LEGACY_SECRET_FILE);
        if legacy.exists() {
            fs::remove_file(&legacy)
                .with_context(|| format!("removing {} (now in the keyring)", legacy.display()))?;
        }
        Ok(())
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
        let legacy = self.dir.join(LEGACY_SECRET_FILE);
        match fs::read_to_string(&legacy) {
            Ok(text) => {
                let key = SigningKey::hs256(text.trim().as_bytes())
                    .with_context(|| format!("reading {}", legacy.display()))?;
                stored.add(key, Utc::now());
                tracing::info!(path = %legacy.display(), "moved the JWT secret into the signing keyring");
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", legacy.display())),
        }
        Ok(stored)
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
        let store = Store::new(dir.path());
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
        let store = Store::new(dir.path());
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
        let store = Store::new(dir.path());
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
