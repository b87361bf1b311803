//! Where a keyring is kept: the data directory's file (SQLite) or the
//! database (PostgreSQL). Both hold the same [`StoredKeyring`] and change it
//! the same way, read, change, write back under a lock, so the policy and
//! the watcher need not know which one they have.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{database::DatabaseStore, file::FileStore, policy::StoredKeyring};
use crate::{
    db::{self, Db},
    domain::audit::Event,
};

pub(super) enum Store {
    /// The file, and the database its changes are recorded in.
    File(FileStore, Db),
    Database(DatabaseStore),
}

impl Store {
    /// The keyring and the bytes it was read from (for the watcher to tell a
    /// change), or `None` if there is none yet.
    pub(super) async fn read(&self) -> anyhow::Result<Option<(StoredKeyring, Vec<u8>)>> {
        let Some(bytes) = self.stored_bytes().await? else {
            return Ok(None);
        };
        let stored = self.decode(&bytes)?;
        Ok(Some((stored, bytes)))
    }

    /// The keyring's bytes as stored now, without blocking the runtime, for
    /// [`Store::decode`].
    pub(super) async fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        self.stored_bytes()
            .await?
            .context("the signing keyring is gone")
    }

    async fn stored_bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Store::File(file, _) => file.bytes().await,
            Store::Database(database) => database.bytes().await,
        }
    }

    pub(super) fn decode(&self, bytes: &[u8]) -> anyhow::Result<StoredKeyring> {
        match self {
            Store::File(file, _) => file.decode(bytes),
            Store::Database(database) => database.decode(bytes),
        }
    }

    /// Changes the keyring and records the events `change` tells of: in the
    /// database's transaction, or, for a file, once the file is durably
    /// replaced (a file cannot share a transaction).
    pub(super) async fn update(
        &self,
        change: impl FnOnce(&mut StoredKeyring, DateTime<Utc>) -> anyhow::Result<Vec<Event>>,
    ) -> anyhow::Result<()> {
        match self {
            Store::File(file, audit) => {
                let events = file.update(change)?;
                db::audit::record_all(audit, &events)
                    .await
                    .with_context(|| {
                        format!(
                            "{} was changed, but the audit log could not record it",
                            file.path().display()
                        )
                    })
            }
            Store::Database(database) => database.update(change).await,
        }
    }
}
