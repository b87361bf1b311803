//! Where token signing keys come from: a key given in the configuration, or a
//! keyring that is generated on first start and that `latchkey signing-key
//! rotate` changes while servers run.
//!
//! The keyring holds every key still needed: the current key of each
//! algorithm and the keys it replaced, until the last token they signed has
//! expired. On SQLite it is a file in the data directory; on PostgreSQL it is
//! a row of the database, sealed with `--keyring-secret`, so that every
//! instance on the database signs and verifies with the same keys. Servers
//! read it again every [`RELOAD_INTERVAL`], so a rotation needs no restart.

mod copy;
mod database;
mod file;
mod policy;
mod seal;
mod store;
mod watcher;

use std::{fs, path::Path, time::Duration};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{
    config::Config,
    db::{Backend, Db},
    domain::{
        audit::{Action, Actor, Event, Target},
        signing::{SigningAlg, SigningKey},
        tokens::KeySet,
    },
};

pub use copy::DataDirKeyring;
pub use policy::grace;
use policy::StoredKeyring;
pub use seal::{KeyringSecret, OpenError, SecretError};
use store::Store;

pub const KEYRING_FILE: &str = "signing-keys.json";

/// How often a running server looks for a rotation.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The `--keyring-secret`, if one is given. A malformed one is refused
/// wherever it is given, even where it goes unused, so that a typo shows
/// before the secret is needed.
pub fn secret(config: &Config) -> anyhow::Result<Option<KeyringSecret>> {
    Ok(config
        .keyring_secret
        .as_deref()
        .map(KeyringSecret::parse)
        .transpose()?)
}

/// The key the configuration names, if it names one: such a key is used as
/// is and never rotated by latchkey. A configured HS256 secret, given either
/// way, must look random (see [`SigningKey::hs256_configured`]).
pub fn configured(config: &Config) -> anyhow::Result<Option<SigningKey>> {
    let alg = config.jwt_alg.into();
    // The command line refuses the pairs below too; this is for
    // configurations built in code.
    let secret = match (&config.jwt_secret, &config.jwt_secret_file) {
        (Some(_), Some(_)) => {
            bail!("--jwt-secret and --jwt-secret-file are alternatives: set one")
        }
        (Some(secret), None) => Some((secret.as_bytes().to_vec(), "--jwt-secret")),
        (None, Some(path)) => Some((read_secret_file(path)?, "--jwt-secret-file")),
        (None, None) => None,
    };
    match (secret, &config.jwt_key_file, alg) {
        (Some((_, flag)), Some(_), _) => {
            bail!("{flag} and --jwt-key-file are alternatives: set one")
        }
        (Some((secret, flag)), None, SigningAlg::HS256) => Ok(Some(
            SigningKey::hs256_configured(&secret).with_context(|| flag.to_owned())?,
        )),
        (Some((_, flag)), None, SigningAlg::EdDSA) => bail!(
            "{flag} is an HS256 secret; with --jwt-alg EdDSA give an Ed25519 key with --jwt-key-file"
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

/// The secret a `--jwt-secret-file` holds, as bytes, less one trailing
/// newline (`\n` or `\r\n`), which editors and `echo` add and which is
/// no part of the secret.
fn read_secret_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut secret = fs::read(path)
        .with_context(|| format!("reading the JWT secret file {}", path.display()))?;
    if secret.ends_with(b"\r\n") {
        secret.truncate(secret.len() - 2);
    } else if secret.ends_with(b"\n") {
        secret.truncate(secret.len() - 1);
    }
    Ok(secret)
}

/// A keyring (a data directory's file or a database's row), seen with one
/// algorithm and token lifetime.
pub struct Keyring {
    store: Store,
    alg: SigningAlg,
    /// How long a replaced key keeps verifying, for this token lifetime.
    grace: chrono::Duration,
    /// The stored bytes as the keys in force were last read from them.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyState {
    Current,
    Verifying { until: DateTime<Utc> },
    Expired,
}

impl Keyring {
    /// The keyring of a configuration without a configured key, on the
    /// database it runs on (which records its changes): on SQLite the data
    /// directory's file (a given `--keyring-secret` is unused), on
    /// PostgreSQL the database's, which needs the secret.
    pub fn for_config(config: &Config, db: &Db) -> anyhow::Result<Keyring> {
        let secret = secret(config)?;
        match db.backend() {
            Backend::Sqlite => Ok(Keyring::in_file(config, db)),
            Backend::Postgres => {
                let secret = secret.ok_or_else(|| {
                    anyhow!(
                        "on PostgreSQL the signing keyring is kept in the database, encrypted \
                         with --keyring-secret (LATCHKEY_KEYRING_SECRET), and none is given: give \
                         every instance on this database the same 32 random bytes in base64 \
                         (make them once with `openssl rand -base64 32` and keep them safe), or \
                         configure a key with --jwt-secret, --jwt-secret-file or --jwt-key-file"
                    )
                })?;
                let store = database::DatabaseStore::new(db.clone(), secret)
                    .seeded_from(file::FileStore::new(&config.data_dir));
                Ok(Keyring::with_store(config, Store::Database(store)))
            }
        }
    }

    /// The keyring file of the configuration's data directory, whose
    /// changes are recorded in `db`'s audit log.
    pub fn in_file(config: &Config, db: &Db) -> Keyring {
        let file = file::FileStore::new(&config.data_dir);
        Keyring::with_store(config, Store::File(file, db.clone()))
    }

    /// The keyring of a PostgreSQL database, sealed with `secret`.
    pub fn in_database(config: &Config, db: Db, secret: KeyringSecret) -> Keyring {
        Keyring::with_store(
            config,
            Store::Database(database::DatabaseStore::new(db, secret)),
        )
    }

    fn with_store(config: &Config, store: Store) -> Keyring {
        Keyring {
            store,
            alg: config.jwt_alg.into(),
            grace: grace(config.token_ttl),
            seen: None,
        }
    }

    /// Whether the keyring is the database's, which every instance on it
    /// shares, rather than a data directory's.
    pub fn kept_in_database(&self) -> bool {
        matches!(self.store, Store::Database(_))
    }

    /// The keys in force now, after adding a current key of this algorithm
    /// if the keyring has none (first start, or a change of algorithm): a
    /// `signing_key.created` of the server's.
    pub async fn load_or_create(&mut self) -> anyhow::Result<KeySet> {
        if self
            .store
            .read()
            .await?
            .is_none_or(|(stored, _)| stored.current(self.alg).is_none())
        {
            let alg = self.alg;
            self.update(|stored, now| {
                let made = stored.ensure_current(alg, now)?;
                let details = || json!({ "alg": alg.as_str() });
                Ok(made
                    .iter()
                    .map(|kid| {
                        key_event(
                            now,
                            Action::SigningKeyCreated,
                            Actor::server(),
                            kid,
                            details(),
                        )
                    })
                    .collect())
            })
            .await?;
        }
        let (stored, bytes) = self
            .store
            .read()
            .await?
            .context("the signing keyring is missing right after it was written")?;
        let keys = stored
            .in_force(self.alg, self.grace, Utc::now())?
            .context("the keyring has no current key after adding one")?;
        // The watcher starts from these bytes: a rotation written after this
        // read is a change it will see.
        self.seen = Some(bytes);
        Ok(keys)
    }

    /// Rotates the keys in the keyring (which ones: `StoredKeyring::rotate`),
    /// recording a `signing_key.rotated` of `actor`'s for each, and tells
    /// what changed.
    pub async fn rotate(&self, actor: Actor) -> anyhow::Result<Vec<Rotation>> {
        let mut rotations = Vec::new();
        self.update(|stored, now| {
            rotations = stored.rotate(self.alg, now)?;
            Ok(rotations
                .iter()
                .map(|r| {
                    let details = json!({ "alg": r.alg.as_str(), "replaced": r.retired });
                    let action = Action::SigningKeyRotated;
                    key_event(now, action, actor.clone(), &r.current, details)
                })
                .collect())
        })
        .await?;
        Ok(rotations)
    }

    pub async fn list(&self) -> anyhow::Result<Vec<Listed>> {
        let now = Utc::now();
        let stored = self
            .store
            .read()
            .await?
            .map(|(stored, _)| stored)
            .unwrap_or_default();
        Ok(stored.list(self.grace, now))
    }

    /// Every change to the keyring also drops the keys no server can need.
    async fn update(
        &self,
        change: impl FnOnce(&mut StoredKeyring, DateTime<Utc>) -> anyhow::Result<Vec<Event>>,
    ) -> anyhow::Result<()> {
        self.store
            .update(|stored, now| {
                stored.prune(now);
                change(stored, now)
            })
            .await
    }
}

/// An event about the signing key `kid`.
fn key_event(
    at: DateTime<Utc>,
    action: Action,
    actor: Actor,
    kid: &str,
    details: serde_json::Value,
) -> Event {
    Event::at(at, action, actor, Some(Target::signing_key(kid)), details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::config::JwtAlg;

    /// The keyring file of `dir`, recording its changes in the SQLite
    /// database there, as a server on that data directory does.
    async fn keyring(dir: &Path, alg: JwtAlg) -> Keyring {
        let mut config = Config::new(dir);
        config.jwt_alg = alg;
        let db = crate::open_db(&config).await.unwrap();
        Keyring::in_file(&config, &db)
    }

    #[tokio::test]
    async fn a_generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = keyring(dir.path(), JwtAlg::EdDsa).await;
        let first = ring.load_or_create().await.unwrap();
        assert_eq!(first.current.alg(), SigningAlg::EdDSA);
        assert!(first.previous.is_empty());
        let again = ring.load_or_create().await.unwrap();
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

    #[tokio::test]
    async fn a_rotation_drops_the_keys_no_server_can_need() {
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

        let ring = keyring(dir.path(), JwtAlg::EdDsa).await;
        let rotations = ring.rotate(Actor::cli()).await.unwrap();
        assert_eq!(rotations[0].retired, vec![replaced.clone()]);
        let (stored, _) = ring.store.read().await.unwrap().unwrap();
        let kept: Vec<_> = stored.keys.into_iter().map(|k| k.kid).collect();
        assert_eq!(kept, vec![replaced, rotations[0].current.clone()]);
        assert!(!kept.contains(&expired));
    }

    #[tokio::test]
    async fn each_algorithm_has_its_own_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let hs = keyring(dir.path(), JwtAlg::Hs256)
            .await
            .load_or_create()
            .await
            .unwrap();
        let ed = keyring(dir.path(), JwtAlg::EdDsa)
            .await
            .load_or_create()
            .await
            .unwrap();
        assert_eq!(hs.current.alg(), SigningAlg::HS256);
        assert_eq!(ed.current.alg(), SigningAlg::EdDSA);
        let hs_again = keyring(dir.path(), JwtAlg::Hs256)
            .await
            .load_or_create()
            .await
            .unwrap();
        assert_eq!(hs_again.current.kid(), hs.current.kid());
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt-secret");
        for (written, read) in [
            ("secret", "secret"),
            ("secret\n", "secret"),
            ("secret\r\n", "secret"),
            ("secret\n\n", "secret\n"),
            ("secret \n", "secret "),
            ("\n", ""),
        ] {
            fs::write(&path, written).unwrap();
            assert_eq!(
                read_secret_file(&path).unwrap(),
                read.as_bytes(),
                "{written:?}"
            );
        }
    }

    #[test]
    fn a_secret_is_given_one_way_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt-secret");
        let secret = SigningKey::generate(SigningAlg::HS256)
            .unwrap()
            .private_text();
        fs::write(&path, format!("{secret}\n")).unwrap();
        let mut config = Config::new(dir.path());
        config.jwt_secret_file = Some(path.clone());
        let from_file = configured(&config).unwrap().unwrap();
        config.jwt_secret_file = None;
        config.jwt_secret = Some(secret);
        assert_eq!(configured(&config).unwrap().unwrap().kid(), from_file.kid());
        config.jwt_secret_file = Some(path.clone());
        assert!(configured(&config).is_err());
        config.jwt_secret = None;
        config.jwt_key_file = Some(path);
        assert!(configured(&config).is_err());
    }

    #[test]
    fn configured_keys_must_match_the_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.jwt_secret = Some("x".repeat(32));
        let weak = configured(&config).err().unwrap();
        assert!(format!("{weak:#}").contains("openssl rand"), "{weak:#}");
        config.jwt_secret = Some(
            SigningKey::generate(SigningAlg::HS256)
                .unwrap()
                .private_text(),
        );
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
