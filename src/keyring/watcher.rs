//! The reload loop of a running server. A rotation is written by another
//! process, so the only way to learn of it is to look at the file again.

use std::sync::Arc;

use chrono::Utc;

use super::{store::parse, Keyring, RELOAD_INTERVAL};
use crate::domain::tokens::Tokens;

impl Keyring {
    /// Keeps `tokens` in step with the file: a rotation, or the end of a
    /// replaced key's grace period, changes the keys in force within a
    /// [`RELOAD_INTERVAL`]. A file that cannot be read leaves the keys as
    /// they are, with a warning.
    ///
    /// It never ends by itself: whoever runs it decides how long it lives,
    /// and stops it by dropping it (or aborting its task).
    pub async fn watch(mut self, tokens: Arc<Tokens>) {
        let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
        loop {
            ticks.tick().await;
            let now_bytes = match self.store.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the signing keyring; keeping the keys in use");
                    continue;
                }
            };
            let changed = self.seen.as_deref() != Some(now_bytes.as_slice());
            let stored = match parse(&now_bytes) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(error = %e, "the signing keyring does not parse; keeping the keys in use");
                    continue;
                }
            };
            if !changed && !stored.grace_ended(&tokens.key_ids(), self.grace, Utc::now()) {
                continue;
            }
            self.seen = Some(now_bytes);
            match stored.in_force(self.alg, self.grace, Utc::now()) {
                Ok(Some(keys)) => {
                    let kid = keys.current.kid().to_owned();
                    let verifying = keys.previous.len();
                    tokens.replace_keys(keys);
                    tracing::info!(kid, verifying, "signing keys reloaded");
                }
                Ok(None) => tracing::warn!(
                    "the signing keyring has no current {} key; keeping the keys in use",
                    self.alg.as_str()
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "the signing keyring is unusable; keeping the keys in use")
                }
            }
        }
    }
}
