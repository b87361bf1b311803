//! The keyring of a PostgreSQL database, shared by every instance on it:
//! the same JSON as the file, sealed with the keyring secret before it is
//! stored and opened after it is read, so the database never holds a private
//! key or an HS256 secret in plaintext.

use std::{future::Future, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{
    file::{parse, FileStore},
    policy::StoredKeyring,
    seal::{self, KeyringSecret},
};
use crate::{
    db::{self, keyring::Written, Db},
    domain::audit::Event,
};

/// How long one read or write of the keyring may take, waiting for a
/// connection included: a connection that stalls (a network that drops
/// packets without closing anything) must not hold the watcher, or a start,
/// for ever.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct DatabaseStore {
    db: Db,
    secret: KeyringSecret,
    /// The keyring file a server kept before its database held the keyring,
    /// which becomes the database's first keyring.
    seed: Option<FileStore>,
}

impl DatabaseStore {
    pub(super) fn new(db: Db, secret: KeyringSecret) -> DatabaseStore {
        DatabaseStore {
            db,
            secret,
            seed: None,
        }
    }

    /// A store whose first keyring, when the database has none yet, is the
    /// one `file` holds: instances that signed with that file before the
    /// keyring moved into the database keep their tokens valid, and so can
    /// be upgraded one at a time.
    pub(super) fn seeded_from(self, file: FileStore) -> DatabaseStore {
        DatabaseStore {
            seed: Some(file),
            ..self
        }
    }

    /// The sealed keyring as stored, or `None` if there is none yet.
    pub(super) async fn bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        bounded("reading", db::keyring::read(&self.db)).await
    }

    pub(super) fn decode(&self, sealed: &[u8]) -> anyhow::Result<StoredKeyring> {
        let json = seal::open(&self.secret, sealed)?;
        parse(&json).context("reading the signing keyring in the database")
    }

    fn encode(&self, stored: &StoredKeyring) -> anyhow::Result<Vec<u8>> {
        sealed(&self.secret, stored)
    }

    /// Read, change, write back, all under the keyring row's lock, so two
    /// writers (instances starting together, a rotation) cannot lose each
    /// other's key; the events `change` tells of are written in the same
    /// transaction.
    pub(super) async fn update(
        &self,
        change: impl FnOnce(&mut StoredKeyring, DateTime<Utc>) -> anyhow::Result<Vec<Event>>,
    ) -> anyhow::Result<()> {
        self.replace(|stored| {
            let mut stored = match (stored, &self.seed) {
                (Some(sealed), _) => self.decode(sealed)?,
                (None, Some(file)) => match file.read()? {
                    Some(seed) => {
                        tracing::info!(path = %file.path().display(), "the database's signing keyring starts from this data directory's");
                        seed
                    }
                    None => StoredKeyring::default(),
                },
                (None, None) => StoredKeyring::default(),
            };
            let events = change(&mut stored, Utc::now())?;
            Ok((stored, events))
        })
        .await
    }

    /// Writes what `make` returns from the keyring as stored (`None`: none
    /// yet), and its events, under the row's lock; nothing if it fails.
    pub(super) async fn replace(
        &self,
        make: impl FnOnce(Option<&[u8]>) -> anyhow::Result<(StoredKeyring, Vec<Event>)>,
    ) -> anyhow::Result<()> {
        bounded(
            "changing",
            db::keyring::update(&self.db, |stored| {
                let (new, events) = make(stored)?;
                Ok::<_, anyhow::Error>(Written {
                    sealed: self.encode(&new)?,
                    events,
                    outcome: (),
                })
            }),
        )
        .await
    }
}

/// The keyring as a database stores it.
pub(super) fn sealed(secret: &KeyringSecret, stored: &StoredKeyring) -> anyhow::Result<Vec<u8>> {
    let json = serde_json::to_vec(stored).expect("the keyring serialises");
    seal::seal(secret, &json)
}

/// `work` on the keyring's row, given at most [`TIMEOUT`].
async fn bounded<T, E>(doing: &str, work: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    anyhow::Error: From<E>,
{
    match tokio::time::timeout(TIMEOUT, work).await {
        Ok(done) => done
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{doing} the signing keyring in the database")),
        Err(_) => anyhow::bail!(
            "{doing} the signing keyring in the database took more than {} s",
            TIMEOUT.as_secs()
        ),
    }
}
