//! Where token signing keys come from: a key given in the configuration, or a
//! keyring file in the data directory that is generated on first start and
//! that `latchkey signing-key rotate` changes while servers run.
//!
//! The file holds every key still needed: the current key of each algorithm
//! and the keys it replaced, until the last token they signed has expired.
//! Servers read it again every [`RELOAD_INTERVAL`], so a rotation needs no
//! restart.

mod policy;
mod store;
mod watcher;

use std::{fs, time::Duration};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use crate::{
    config::Config,
    domain::{
        signing::{SigningAlg, SigningKey},
        tokens::KeySet,
    },
};

pub use policy::grace;
use policy::StoredKeyring;
use store::Store;

pub const KEYRING_FILE: &str = "signing-keys.json";

/// How often a running server looks for a rotation.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The key the configuration names, if it names one: such a key is used as
/// is and never rotated by latchkey.
pub fn configured(config: &Config) -> anyhow::Result<Option<SigningKey>> {
    let alg = config.jwt_alg.into();
    match (&config.jwt_secret, &config.jwt_key_file, alg) {
        // Also refused by the command line; this is for configurations built
        // in code.
        (Some(_), Some(_), _) => {
            bail!("--jwt-secret and --jwt-key-file are alternatives: set one")
        }
        (Some(secret), None, SigningAlg::HS256) => Ok(Some(
            SigningKey::hs256(secret.as_bytes()).context("--jwt-secret")?,
        )),
        (Some(_), None, SigningAlg::EdDSA) => bail!(
            "--jwt-secret is an HS256 secret; with --jwt-alg EdDSA give an Ed25519 key with --jwt-key-file"
        ),
        (None, Some(path), SigningAlg::EdDSA) => {
            let pem = fs::read_to_string(path)
                .with_context(|| format!("reading the signing key {}", path.display()))?;
            let key = SigningKey::ed25519_from_pem(&pem)
                .with_context(|| format!("reading the signing key {}", path.display()))?;
            Ok(Some(key))
        }
        (None, Some(_), SigningAlg::HS256) => {
            bail!("--jwt-key-file holds an Ed25519 key: use it with --jwt-alg EdDSA")
        }
        (None, None, _) => Ok(None),
    }
}

/// The keyring file of one data directory, seen with one algorithm and token
/// lifetime.
pub struct Keyring {
    store: Store,
    alg: SigningAlg,
    /// How long a replaced key keeps verifying, for this token lifetime.
    grace: chrono::Duration,
    /// The file as the keys in force were last read from it.
    seen: Option<Vec<u8>>,
}

/// What a rotation did for one algorithm.
pub struct Rotation {
    pub alg: SigningAlg,
    pub current: String,
    /// The ids of the keys it replaced.
    pub retired: Vec<String>,
}

/// One line of `latchkey signing-key list`.
pub struct Listed {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: DateTime<Utc>,
    pub state: SigningKeyState,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SigningKeyState {
    Current,
    Verifying { until: DateTime<Utc> },
    Expired,
}

impl Keyring {
    pub fn new(config: &Config) -> Keyring {
        Keyring {
            store: Store::new(&config.data_dir),
            alg: config.jwt_alg.into(),
            grace: grace(config.token_ttl),
            seen: None,
        }
    }

    /// The keys in force now, after adding a current key of this algorithm
    /// if the file has none (first start, or a change of algorithm).
    pub fn load_or_create(&mut self) -> anyhow::Result<KeySet> {
        if self
            .store
            .read()?
            .is_none_or(|stored| stored.current(self.alg).is_none())
        {
            self.update(|stored, now| stored.ensure_current(self.alg, now))?;
        }
        let (stored, bytes) = self.store.read_with_bytes()?;
        let keys = stored
            .in_force(self.alg, self.grace, Utc::now())?
            .context("the keyring has no current key after adding one")?;
        // The watcher starts from these bytes: a rotation written after this
        // read is a change it will see.
        self.seen = Some(bytes);
        Ok(keys)
    }

    /// Rotates the keys in the file (which ones: `StoredKeyring::rotate`)
    /// and tells what changed.
    pub fn rotate(&self) -> anyhow::Result<Vec<Rotation>> {
        let mut rotations = Vec::new();
        self.update(|stored, now| {
            rotations = stored.rotate(self.alg, now)?;
            Ok(())
        })?;
        Ok(rotations)
    }

    pub fn list(&self) -> anyhow::Result<Vec<Listed>> {
        let now = Utc::now();
        let stored = self.store.read()?.unwrap_or_default();
        Ok(stored.list(self.grace, now))
    }

    /// Every change to the file also drops the keys no server can need.
    fn update(
        &self,
        change: impl FnOnce(&mut StoredKeyring, DateTime<Utc>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.store.update(|stored, now| {
            stored.prune(now);
            change(stored, now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::config::JwtAlg;

    fn keyring(dir: &Path, alg: JwtAlg) -> Keyring {
        let mut config = Config::new(dir);
        config.jwt_alg = alg;
        Keyring::new(&config)
    }

    #[test]
    fn a_generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = keyring(dir.path(), JwtAlg::EdDsa);
        let first = ring.load_or_create().unwrap();
        assert_eq!(first.current.alg(), SigningAlg::EdDSA);
        assert!(first.previous.is_empty());
        let again = ring.load_or_create().unwrap();
        assert_eq!(again.current.kid(), first.current.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEYRING_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_rotation_drops_the_keys_no_server_can_need() {
        let dir = tempfile::tempdir().unwrap();
        let long_ago =
            Utc::now() - grace(crate::config::MAX_TOKEN_TTL) - chrono::Duration::seconds(1);
        let mut stored = StoredKeyring::default();
        stored.ensure_current(SigningAlg::EdDSA, long_ago).unwrap();
        let expired = stored.current(SigningAlg::EdDSA).unwrap().kid.clone();
        let replaced = stored.rotate(SigningAlg::EdDSA, long_ago).unwrap()[0]
            .current
            .clone();
        fs::write(
            dir.path().join(KEYRING_FILE),
            serde_json::to_vec(&stored).unwrap(),
        )
        .unwrap();

        let ring = keyring(dir.path(), JwtAlg::EdDsa);
        let rotations = ring.rotate().unwrap();
        assert_eq!(rotations[0].retired, vec![replaced.clone()]);
        let kept: Vec<_> = ring
            .store
            .read()
            .unwrap()
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kept, vec![replaced, rotations[0].current.clone()]);
        assert!(!kept.contains(&expired));
    }

    #[test]
    fn each_algorithm_has_its_own_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let hs = keyring(dir.path(), JwtAlg::Hs256).load_or_create().unwrap();
        let ed = keyring(dir.path(), JwtAlg::EdDsa).load_or_create().unwrap();
        assert_eq!(hs.current.alg(), SigningAlg::HS256);
        assert_eq!(ed.current.alg(), SigningAlg::EdDSA);
        let hs_again = keyring(dir.path(), JwtAlg::Hs256).load_or_create().unwrap();
        assert_eq!(hs_again.current.kid(), hs.current.kid());
    }

    #[test]
    fn configured_keys_must_match_the_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.jwt_secret = Some("x".repeat(32));
        assert!(configured(&config).unwrap().is_some());
        config.jwt_alg = JwtAlg::EdDsa;
        assert!(configured(&config).is_err());

        let pem = SigningKey::generate(SigningAlg::EdDSA)
            .unwrap()
            .private_text();
        let path = dir.path().join("ed25519.pem");
        fs::write(&path, pem).unwrap();
        config.jwt_secret = None;
        config.jwt_key_file = Some(path);
        assert_eq!(
            configured(&config).unwrap().unwrap().alg(),
            SigningAlg::EdDSA
        );
        config.jwt_alg = JwtAlg::Hs256;
        assert!(configured(&config).is_err());
    }
}
