//! `last_used_at`, recorded behind the response.
//!
//! The token exchange only notes the use in memory; a background task writes
//! the notes in batches, and shutdown writes what is left. Many uses of one key
//! between two flushes become one row update.

use std::{
    collections::HashMap,
    mem,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::{sync::Notify, task::JoinHandle};
use uuid::Uuid;

use crate::db::{self, Db};

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
    stop: Notify,
}

impl UsageRecorder {
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
        let result = db::keys::record_last_used(db.writer(), &uses).await;
        if result.is_err() {
            for (id, at) in uses {
                self.record(id, at);
            }
        }
        result
    }

    /// Flushes every [`FLUSH_EVERY`] until [`UsageRecorder::stop`] is called,
    /// then flushes one last time.
    pub fn spawn_flusher(self: &Arc<Self>, db: Db) -> JoinHandle<()> {
        let recorder = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = recorder.stop.notified() => break,
                }
                if let Err(e) = recorder.flush(&db).await {
                    tracing::warn!(error = %e, "could not record key use; will retry");
                }
            }
            if let Err(e) = recorder.flush(&db).await {
                tracing::error!(error = %e, "could not record key use at shutdown");
            }
        })
    }

    pub fn stop(&self) {
        self.stop.notify_one();
    }
}
