//! The revocations this instance enforces, held in memory so verification
//! stays free of I/O.
//!
//! Changes reach the window in three ways: a change made here is applied as
//! soon as it commits; on PostgreSQL, a notification from another instance
//! wakes a reload at once; and every [`RELOAD_EVERY`] the window is read back
//! from the database anyway, which brings what a lost notification missed and
//! what other processes on the same SQLite file wrote. What nobody needs any
//! more is pruned. Because merging a change twice or out of order changes
//! nothing, no source has to be trusted to be complete or in sequence.
//!
//! The same feed keeps the [key cache](KeyCache) true: a change new to this
//! instance forgets the key records it touches, and a reload after the
//! database was out of reach forgets them all (changes may have come and
//! gone from the window meanwhile).

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::{
    db::{
        self,
        notifications::{Heard, Notifications},
        Db,
    },
    domain::{
        revocation::{Change, ChangeKind, Millis, Window},
        tokens::{Claims, LEEWAY_SECS},
    },
    key_cache::KeyCache,
    tasks::Stopping,
};

/// How often the window is read back from the database.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);

/// How recently the database must have answered for a cached key record to
/// serve an exchange: a few reloads, so one slow reload does not send every
/// exchange to the database, and far less than the shortest time a change
/// stays in the window (a token lifetime of 1 s plus the leeway), so a
/// change is never missed while the feed counts as fresh.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// How long the listener waits before subscribing again after a failure,
/// doubling up to [`LISTEN_RETRY_MAX`].
const LISTEN_RETRY_FIRST: Duration = Duration::from_millis(250);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(5);

/// How often changes no token can need are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Single-token revocations of one account beyond this many become a
/// sign-out of the account, so the window stays bounded.
pub const TOKEN_REVOCATIONS_PER_ACCOUNT: i64 = 100;

/// Why a verified token is refused anyway.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A revocation covers it.
    Revoked,
    /// The instance has not heard from the database for longer than
    /// `--revocation-max-lag`, so it cannot know.
    Stale,
}

pub struct Revocations {
    window: ArcSwap<Window>,
    /// Writers of the window take turns, so none loses another's change.
    writing: Mutex<()>,
    /// How long a change matters: the token lifetime plus the clock leeway.
    lifetime: Millis,
    max_lag: Option<Duration>,
    /// How often the window is read back whatever was heard.
    reload_every: Duration,
    started: Instant,
    /// When the database last answered a reload, in ms since `started`.
    heard_at: AtomicI64,
    /// The key records the feed keeps true.
    keys: Arc<KeyCache>,
}

impl Revocations {
    pub fn new(
        token_ttl: Duration,
        max_lag: Option<Duration>,
        reload_every: Duration,
        keys: Arc<KeyCache>,
    ) -> Revocations {
        let lifetime = token_ttl + Duration::from_secs(LEEWAY_SECS);
        Revocations {
            window: ArcSwap::from_pointee(Window::default()),
            writing: Mutex::new(()),
            lifetime: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
            max_lag,
            reload_every,
            started: Instant::now(),
            heard_at: AtomicI64::new(0),
            keys,
        }
    }

    /// Whether the feed is fresh enough for a cached key record to serve an
    /// exchange (see [`FRESH_FOR`]).
    pub fn is_fresh(&self) -> bool {
        self.lag() < FRESH_FOR
    }

    /// How long a change recorded now must be kept.
    pub fn lifetime(&self) -> Millis {
        self.lifetime
    }

    /// The verification path's check: memory only, no lock.
    pub fn check(&self, claims: &Claims) -> Result<(), Refusal> {
        if let Some(max_lag) = self.max_lag {
            if self.lag() > max_lag {
                return Err(Refusal::Stale);
            }
        }
        if self.window.load().covers(&claims.origin()) {
            Err(Refusal::Revoked)
        } else {
            Ok(())
        }
    }

    /// How many changes the window holds.
    pub fn len(&self) -> usize {
        self.window.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.load().is_empty()
    }

    /// How long since the database last answered a reload: how far behind
    /// the window may be.
    pub fn lag(&self) -> Duration {
        let now = self.elapsed_ms();
        let heard = self.heard_at.load(Ordering::Relaxed);
        Duration::from_millis(u64::try_from(now - heard).unwrap_or(0))
    }

    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Merges changes into the window. The key records that the changes new
    /// to this instance touch are forgotten first: only those can have
    /// changed since a record was read (a reload merges the whole window
    /// again twice a second).
    fn merge(&self, changes: impl IntoIterator<Item = Change>) {
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut window = Window::clone(&self.window.load());
        let new: Vec<Change> = changes
            .into_iter()
            .filter(|change| window.apply(change))
            .collect();
        self.keys.invalidate(&new);
        window.expire(db::now_ms());
        self.window.store(Arc::new(window));
    }

    /// Applies changes this instance has just committed, then returns once
    /// the clock has passed them: a token issued after the caller answers is
    /// then never covered, even in the same second.
    ///
    /// A cut-off takes the time it is applied here rather than the one it was
    /// recorded with, which is a little earlier: an exchange that read the
    /// account before the change committed was issued before this moment,
    /// and is covered too.
    pub async fn committed(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        // Forgotten before the cut-off's time is taken: an exchange that
        // found the record before this took its time earlier still, and so
        // is covered.
        self.keys.invalidate(&changes);
        let now = db::now_ms();
        let at = changes.iter().map(|c| c.at).max().unwrap_or(now).max(now);
        self.merge(changes.into_iter().map(|c| match c.kind {
            ChangeKind::SignedOut | ChangeKind::Enabled => Change { at, ..c },
            _ => c,
        }));
        while db::now_ms() <= at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Reads the changes in force from the database into the window.
    pub async fn reload(&self, db: &Db) -> Result<(), sqlx::Error> {
        let started = self.elapsed_ms();
        let was_fresh = self.is_fresh();
        let changes = db::changes::in_force(db, db::now_ms()).await?;
        if !was_fresh {
            // Out of touch for a while: a change may have been made and
            // left the window meanwhile, never to be heard of here.
            self.keys.clear();
        }
        self.merge(changes);
        // Heard as of when the read began: it saw everything committed then.
        self.heard_at.fetch_max(started, Ordering::Relaxed);
        Ok(())
    }

    /// Keeps the window in step with the database until the server stops:
    /// on PostgreSQL a notification wakes a reload at once; on every backend
    /// the window is also reloaded every [`RELOAD_EVERY`], which covers a
    /// notification lost with its connection and the changes of other
    /// processes on the same SQLite file. What no token can need any more is
    /// pruned every [`PRUNE_EVERY`].
    pub async fn follow(self: Arc<Self>, db: Db, stopping: Stopping) {
        // The periodic reload tells the listener when the database answers
        // again after failing: its connection may have stalled unnoticed
        // meanwhile, so it subscribes afresh.
        let recovered = Notify::new();
        tokio::join!(
            self.reload_periodically(&db, &recovered, stopping.clone()),
            self.listen(&db, &recovered, stopping),
        );
    }

    async fn reload_periodically(&self, db: &Db, recovered: &Notify, mut stopping: Stopping) {
        let mut reload = tokio::time::interval(self.reload_every);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = reload.tick() => match self.reload(db).await {
                    Ok(()) if failing => {
                        failing = false;
                        recovered.notify_one();
                        tracing::info!("revocations: the database answers again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "revocations: could not reload; verifying with what is known");
                    }
                    Err(_) => {}
                },
                _ = prune.tick() => {
                    // Kept one lifetime longer than needed: instances' clocks differ.
                    if let Err(e) = db::changes::prune(db, db::now_ms() - self.lifetime).await {
                        tracing::warn!(error = %e, "revocations: could not prune");
                    }
                }
                () = stopping.wait() => break,
            }
        }
    }

    /// Reloads whenever another instance records a change, reconnecting by
    /// itself; returns at once on SQLite, which has no notifications.
    async fn listen(&self, db: &Db, recovered: &Notify, mut stopping: Stopping) {
        let mut retry_in = LISTEN_RETRY_FIRST;
        let mut failing = false;
        loop {
            let subscribed = tokio::select! {
                subscribed = db.listen() => subscribed,
                () = stopping.wait() => return,
            };
            let lasted = match subscribed {
                None => return,
                Some(Ok(mut notifications)) => {
                    if failing {
                        failing = false;
                        tracing::info!("revocations: listening for changes again");
                    }
                    let since = Instant::now();
                    match self
                        .hear(db, &mut notifications, recovered, &mut stopping)
                        .await
                    {
                        Some(()) => since.elapsed(),
                        None => return,
                    }
                }
                Some(Err(e)) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %e, "revocations: cannot listen for changes; reloading every {:?} meanwhile", self.reload_every);
                    }
                    Duration::ZERO
                }
            };
            // A subscription that ends as soon as it is made (a server that
            // drops it at once) is retried less and less often, not in a
            // tight loop; one that lasted is retried at once.
            if lasted > LISTEN_RETRY_MAX {
                retry_in = LISTEN_RETRY_FIRST;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = stopping.wait() => return,
            }
            retry_in = (retry_in * 2).min(LISTEN_RETRY_MAX);
        }
    }

    /// Reloads on every notification until the subscription is lost, or the
    /// periodic reload says the database answers again after failing (the
    /// subscription's connection may have stalled unnoticed meanwhile).
    /// `None` once the server stops.
    async fn hear(
        &self,
        db: &Db,
        notifications: &mut Notifications,
        recovered: &Notify,
        stopping: &mut Stopping,
    ) -> Option<()> {
        // What was recorded while nobody listened is read back, rather than
        // trusting a sequence number to say what was missed. A failure is the
        // periodic reload's to report.
        let _ = self.reload(db).await;
        loop {
            tokio::select! {
                heard = notifications.next() => match heard {
                    Heard::Change => {
                        let _ = self.reload(db).await;
                    }
                    Heard::Lost => return Some(()),
                },
                () = recovered.notified() => return Some(()),
                () = stopping.wait() => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::{
        db::keys::KeyOwner,
        domain::{
            keys::KeyHash,
            scopes::{Role, Scopes},
        },
    };

    fn revocations() -> (Revocations, Arc<KeyCache>) {
        let keys = Arc::new(KeyCache::new(100));
        let revocations = Revocations::new(
            Duration::from_secs(60),
            None,
            RELOAD_EVERY,
            Arc::clone(&keys),
        );
        (revocations, keys)
    }

    fn owner() -> KeyOwner {
        KeyOwner {
            key_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            scopes: Scopes::default(),
            expires_at: None,
            revoked: false,
            role: Role::User,
            disabled: false,
        }
    }

    fn key_revoked(owner: &KeyOwner) -> Change {
        let at = db::now_ms();
        Change {
            seq: 1,
            user_id: owner.user_id,
            kind: ChangeKind::KeyRevoked {
                key_id: owner.key_id,
            },
            at,
            until: at + 65_000,
        }
    }

    #[tokio::test]
    async fn a_change_committed_here_stops_a_fill_begun_before_it() {
        let (revocations, keys) = revocations();
        let ada = owner();
        let hash = KeyHash([1; 32]);

        let fill = keys.begin_fill();
        revocations.committed(vec![key_revoked(&ada)]).await;

        assert!(!keys.finish_fill(fill, &hash, &ada));
        assert!(keys.get(&hash).is_none());
    }

    #[test]
    fn a_change_heard_again_by_a_reload_forgets_nothing_more() {
        let (revocations, keys) = revocations();
        let (ada, bob) = (owner(), owner());
        let revoked = key_revoked(&ada);
        revocations.merge([revoked.clone()]);
        let (ada_hash, bob_hash) = (KeyHash([1; 32]), KeyHash([2; 32]));
        let fill = keys.begin_fill();
        assert!(keys.finish_fill(fill, &bob_hash, &bob));

        // The periodic reload brings the same change again: not new, so a
        // fill in flight still stores, and nothing is forgotten.
        let (carl, carl_hash) = (owner(), KeyHash([3; 32]));
        let fill = keys.begin_fill();
        revocations.merge([revoked]);
        assert!(keys.finish_fill(fill, &carl_hash, &carl));
        assert!(keys.get(&bob_hash).is_some());

        // A new change forgets the records it touches.
        revocations.merge([key_revoked(&bob)]);
        assert!(keys.get(&bob_hash).is_none());
        assert!(keys.get(&carl_hash).is_some());
        assert!(keys.get(&ada_hash).is_none());
    }
}
