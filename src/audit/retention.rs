//! Events are kept for `--audit-retention`, then deleted in the background.

use std::time::Duration;

use crate::db::{self, Db};

/// How often events past the retention are deleted; the first time at
/// start.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes the events older than `retention` now and every [`PRUNE_EVERY`].
pub async fn prune_periodically(db: Db, retention: Duration) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return;
    };
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // A retention reaching back before any date keeps everything.
        let Some(before) = db::now().checked_sub_signed(retention) else {
            continue;
        };
        match db::audit::prune(&db, before).await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!(pruned, "audit log: deleted the events past the retention")
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit log: could not delete the events past the retention; will retry")
            }
        }
    }
}
