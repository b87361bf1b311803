//! Abuse limits kept in memory, per instance: failed client authentications
//! and registrations per client address, and failed logins per account and
//! address. Bad keys are throttled, never locked out: a key of 256 bits
//! cannot be guessed, and a lockout would hand whoever knows a key id a way
//! to stop its owner.

pub mod address;
pub mod argon2;
pub mod logins;
pub mod rate;

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::Quota;
use ipnet::IpNet;

pub use self::{address::ClientAddress, logins::Account};
use self::{logins::Logins, rate::Rate};
use crate::{
    config::Limits,
    telemetry::metrics::{Limiter, Metrics},
};

/// Client addresses each limiter remembers at most (about 10 MiB for all of
/// them when full); see [`Rate`] and [`Logins`] for what happens past it.
pub const MAX_ENTRIES: usize = 100_000;

/// How often idle entries are forgotten.
pub const FORGET_EVERY: Duration = Duration::from_secs(30);

/// A request over its budget, and how long until it may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// Waits of a whole number of seconds, at least one, never shorter than
    /// the real wait: `Retry-After` counts seconds, and a client that obeys
    /// it must not be refused again.
    pub fn after(wait: Duration) -> Throttled {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Throttled {
            retry_after: Duration::from_secs(secs.max(1)),
        }
    }

    /// The `Retry-After` value.
    pub fn retry_after_secs(&self) -> String {
        self.retry_after.as_secs().to_string()
    }
}

pub struct Throttle {
    trusted_proxies: Vec<IpNet>,
    key_failures: Rate<ClientAddress>,
    registrations: Rate<ClientAddress>,
    logins: Logins,
    /// Where each refusal is counted, by limiter.
    metrics: Arc<Metrics>,
}

impl Throttle {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Throttle {
        Throttle::with_capacity(limits, MAX_ENTRIES, metrics)
    }

    pub fn with_capacity(limits: &Limits, capacity: usize, metrics: Arc<Metrics>) -> Throttle {
        let per = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Throttle {
            trusted_proxies: limits.trusted_proxies.clone(),
            key_failures: Rate::new(
                Quota::per_minute(per(limits.key_failures_per_minute)),
                capacity,
            ),
            registrations: Rate::new(
                Quota::per_hour(per(limits.registrations_per_hour)),
                capacity,
            ),
            logins: Logins::new(limits.login_failures, capacity),
            metrics,
        }
    }

    /// The client of a request from `peer` with these `X-Forwarded-For`
    /// values, as `--trusted-proxies` allows it to be read.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl IntoIterator<Item = &'a str>,
    ) -> ClientAddress {
        address::client_address(peer, forwarded, &self.trusted_proxies)
    }

    /// Whether `client` may try to authenticate with a key now. Asked before
    /// the key is looked up, valid or not; a read.
    pub fn check_key(&self, client: ClientAddress) -> Result<(), Throttled> {
        self.counted(Limiter::KeyFailures, self.key_failures.peek(&client))
    }

    /// `client` failed to authenticate with a key. `Err` when this failure
    /// is past the budget: it is answered as throttled too.
    pub fn key_failed(&self, client: ClientAddress) -> Result<(), Throttled> {
        let outcome = self.key_failures.spend(&client);
        if let Err(throttled) = outcome {
            tracing::info!(%client, wait = ?throttled.retry_after, "failed client authentications throttled");
        }
        self.counted(Limiter::KeyFailures, outcome)
    }

    /// A registration attempt from `client`: every one counts.
    pub fn registration(&self, client: ClientAddress) -> Result<(), Throttled> {
        self.counted(Limiter::Registrations, self.registrations.spend(&client))
    }

    /// Whether a login of `account` from `client` may be tried now, before
    /// its password is checked; a read. Any operation that checks an
    /// account's password (a login, a password change) asks this first.
    pub fn check_login(&self, account: Account, client: ClientAddress) -> Result<(), Throttled> {
        self.counted(Limiter::Logins, self.logins.check(account, client))
    }

    /// A wrong password for `account` from `client`, or the right one of a
    /// disabled account.
    pub fn login_failed(&self, account: Account, client: ClientAddress) {
        self.logins.failed(account, client);
    }

    /// The right password for `account` from `client`: its failures from
    /// there are forgotten.
    pub fn login_succeeded(&self, account: Account, client: ClientAddress) {
        self.logins.succeeded(account, client);
    }

    fn counted(&self, limiter: Limiter, outcome: Result<(), Throttled>) -> Result<(), Throttled> {
        if outcome.is_err() {
            self.metrics.throttled(limiter);
        }
        outcome
    }

    /// Forgets what no longer counts and gives the memory back.
    pub fn forget_idle(&self) {
        self.key_failures.forget_idle();
        self.registrations.forget_idle();
        self.logins.forget_idle();
    }

    /// The entries held, for each limiter: key failures, registrations,
    /// logins.
    pub fn entries(&self) -> [usize; 3] {
        [
            self.key_failures.len(),
            self.registrations.len(),
            self.logins.len(),
        ]
    }
}
