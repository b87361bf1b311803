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
    tasks::Stopping,
};

/// How often the window is read back from the database.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);

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
}

impl Revocations {
    pub fn new(
        token_ttl: Duration,
        max_lag: Option<Duration>,
        reload_every: Duration,
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
        }
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

    fn merge(&self, changes: impl IntoIterator<Item = Change>) {
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut window = Window::clone(&self.window.load());
        for change in changes {
            window.apply(&change);
        }
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
        let changes = db::changes::in_force(db, db::now_ms()).await?;
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
