//! The reload loop of a running server. A rotation is written by another
//! process (or, on PostgreSQL, another machine), so the only way to learn of
//! it is to read the keyring again.

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use tokio::time::MissedTickBehavior;

use super::{Keyring, RELOAD_INTERVAL};
use crate::domain::tokens::Tokens;

impl Keyring {
    /// Keeps `tokens` in step with the keyring: a rotation, or the end of a
    /// replaced key's grace period, changes the keys in force within a
    /// [`RELOAD_INTERVAL`]. A keyring that cannot be read or used (a lost
    /// database, a damaged file) leaves the keys as they are, with one
    /// warning when that starts and a note when it ends, however long it
    /// lasts.
    ///
    /// It never ends by itself: whoever runs it decides how long it lives,
    /// and stops it by dropping it (or aborting its task).
    pub async fn watch(mut self, tokens: Arc<Tokens>) {
        let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
        // After a slow read, the next one waits a whole interval rather than
        // catching up with a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut outage = Outage::default();
        loop {
            ticks.tick().await;
            match self.reload(&tokens).await {
                Ok(()) => {
                    if outage.ended() {
                        tracing::info!("the signing keyring reads again");
                    }
                }
                Err(e) => {
                    if outage.began() {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "cannot use the signing keyring; keeping the keys in use until it reads again"
                        );
                    }
                }
            }
        }
    }

    /// Reads the keyring and, if it changed or a key in use passed its grace
    /// period, puts its keys in force.
    async fn reload(&mut self, tokens: &Tokens) -> anyhow::Result<()> {
        let now_bytes = self.store.bytes().await?;
        let changed = self.seen.as_deref() != Some(now_bytes.as_slice());
        let stored = self.store.decode(&now_bytes)?;
        if !changed && !stored.grace_ended(&tokens.key_ids(), self.grace, Utc::now()) {
            return Ok(());
        }
        let keys = stored
            .in_force(self.alg, self.grace, Utc::now())?
            .with_context(|| {
                format!(
                    "the signing keyring has no current {} key",
                    self.alg.as_str()
                )
            })?;
        self.seen = Some(now_bytes);
        let kid = keys.current.kid().to_owned();
        let verifying = keys.previous.len();
        tokens.replace_keys(keys);
        tracing::info!(kid, verifying, "signing keys reloaded");
        Ok(())
    }
}

/// Whether the keyring is failing to read, so that a failure repeated every
/// second is reported once.
#[derive(Default)]
struct Outage {
    ongoing: bool,
}

impl Outage {
    /// A read failed: true if the one before it had not.
    fn began(&mut self) -> bool {
        !std::mem::replace(&mut self.ongoing, true)
    }

    /// A read succeeded: true if the one before it had failed.
    fn ended(&mut self) -> bool {
        std::mem::replace(&mut self.ongoing, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_when_it_begins_and_when_it_ends_only() {
        let mut outage = Outage::default();

        let reports: Vec<(&str, bool)> = vec![
            ("ok", outage.ended()),
            ("failed", outage.began()),
            ("failed", outage.began()),
            ("failed", outage.began()),
            ("ok", outage.ended()),
            ("ok", outage.ended()),
            ("failed", outage.began()),
        ];

        assert_eq!(
            reports,
            vec![
                ("ok", false),
                ("failed", true),
                ("failed", false),
                ("failed", false),
                ("ok", true),
                ("ok", false),
                ("failed", true),
            ]
        );
    }
}
