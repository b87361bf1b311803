//! What every request handler shares.

use std::sync::{atomic::AtomicBool, Arc};

use crate::{
    audit::failures::Failures,
    config::Limits,
    db::Db,
    domain::tokens::Tokens,
    http::cors::Cors,
    key_cache::KeyCache,
    last_used::LastUsed,
    revocations::Revocations,
    telemetry::metrics::Metrics,
    throttle::{argon2::Argon2Queue, Throttle},
};

pub struct AppState {
    pub db: Db,
    pub tokens: Arc<Tokens>,
    pub last_used: Arc<LastUsed>,
    pub revocations: Arc<Revocations>,
    /// The key records exchanges read, kept true by the revocation feed.
    pub keys: Arc<KeyCache>,
    pub registration_open: bool,
    pub limits: Limits,
    /// The abuse limiters of this instance.
    pub throttle: Arc<Throttle>,
    /// Where password hashes and checks wait for a core.
    pub argon2: Arc<Argon2Queue>,
    /// Failed logins and exchanges and throttled requests, tallied for the
    /// audit log.
    pub failures: Arc<Failures>,
    /// Set once shutdown begins, so `/ready` sends load balancers elsewhere
    /// while requests drain.
    pub draining: AtomicBool,
    /// This instance's own series.
    pub metrics: Arc<Metrics>,
    /// The origins browser apps may call from.
    pub cors: Arc<Cors>,
}
