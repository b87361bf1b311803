//! `last_used_at`, recorded behind the response.
//!
//! The token exchange only notes the use in memory; a background task writes
//! the notes in batches, and shutdown writes what is left. Many uses of one key
//! between two flushes become one row update.

use std::{collections::HashMap, mem, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    db::{self, Db},
    tasks::Stopping,
};

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl LastUsed {
    /// Notes that a key was used. Never waits on I/O: a map insert under a
    /// lock held for that insert only.
    pub fn record(&self, key_id: Uuid, at: DateTime<Utc>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let latest = pending.entry(key_id).or_insert(at);
        *latest = (*latest).max(at);
    }

    /// Writes everything noted so far. On failure the batch goes back to be
    /// retried, unless a newer use of the same key has been noted meanwhile.
    pub async fn flush(&self, db: &Db) -> Result<(), sqlx::Error> {
        let batch = mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return Ok(());
        }
        let uses: Vec<_> = batch.into_iter().collect();
        let result = db::keys::record_last_used(db, &uses).await;
        if result.is_err() {
            for (id, at) in uses {
                self.record(id, at);
            }
        }
        result
    }

    /// Flushes every [`FLUSH_EVERY`] until the server stops, then flushes one
    /// last time.
    pub async fn write_behind(&self, db: Db, mut stopping: Stopping) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopping.wait() => break,
            }
            if let Err(e) = self.flush(&db).await {
                tracing::warn!(error = %e, "could not record key use; will retry");
            }
        }
        if let Err(e) = self.flush(&db).await {
            tracing::error!(error = %e, "could not record key use at shutdown");
        }
    }
}
