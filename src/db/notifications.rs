//! On PostgreSQL, how an instance hears at once that another has recorded a
//! change to the revocation feed: the trigger of
//! `migrations/postgres/20261202000010_access_changes_notify.sql` notifies
//! on commit, and a listener on a connection of its own wakes up.
//!
//! A notification says only "look again": the follower reads the window back
//! (`changes::in_force`), so a lost notification or a reconnect costs a
//! reload, never a revocation.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::{Db, Pools};

/// The channel the trigger notifies on.
const CHANNEL: &str = "latchkey_access_changes";

/// How long connecting and subscribing may take before the attempt counts as
/// failed: the follower then retries rather than waiting on a stalled socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A subscription to the feed's notifications.
pub struct Notifications {
    listener: PgListener,
}

/// What a listener heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Some change was recorded: the window should be read again.
    Change,
    /// The connection was lost; notifications sent since are gone, so the
    /// subscriber reconnects and reads the window again.
    Lost,
}

impl Db {
    /// Subscribes to the feed's notifications; `None` on SQLite, where the
    /// changes of this process apply at once and those of other processes
    /// come with the periodic reload.
    ///
    /// The listener has a connection of its own, outside the request pool,
    /// because it holds it for as long as it listens: it must reach the
    /// server directly, not through a proxy that pools transactions (which
    /// would hand the session, and its LISTEN, to someone else).
    pub async fn listen(&self) -> Option<Result<Notifications, sqlx::Error>> {
        let Pools::Postgres(pool) = &self.pools else {
            return None;
        };
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        let subscribe = async {
            let mut listener = PgListener::connect_with(&own).await?;
            // A lost connection is reported, not silently re-established: the
            // subscriber must reload after reconnecting.
            listener.eager_reconnect(false);
            listener.listen(CHANNEL).await?;
            Ok(Notifications { listener })
        };
        Some(
            tokio::time::timeout(CONNECT_TIMEOUT, subscribe)
                .await
                .unwrap_or_else(|_| {
                    Err(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("subscribing took longer than {CONNECT_TIMEOUT:?}"),
                    )))
                }),
        )
    }
}

impl Notifications {
    /// Waits for the next notification. Those that arrived together are
    /// taken as one: one reload sees them all.
    pub async fn next(&mut self) -> Heard {
        match self.listener.try_recv().await {
            Ok(Some(_)) => {
                while self.listener.next_buffered().is_some() {}
                Heard::Change
            }
            Ok(None) | Err(_) => Heard::Lost,
        }
    }
}
