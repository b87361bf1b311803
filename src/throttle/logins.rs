//! Password guessing: consecutive failed logins of one account from one
//! address, which make that address wait, for longer each time. Other
//! addresses are not affected, so nobody can lock an owner out.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex,
    },
    time::Duration,
};

use dashmap::{mapref::entry::Entry, DashMap};
use governor::clock::{Clock, DefaultClock, Reference};

use super::{ClientAddress, Throttled};
use crate::domain::users::Email;

/// The first wait, once the budget of failures is spent.
pub const FIRST_WAIT: Duration = Duration::from_secs(60);
/// Each further failure doubles the wait, up to this.
pub const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long after its last failure (or the end of its wait) an account and
/// address pair is forgotten: long enough that waiting it out buys an
/// attacker no more guesses than the longest wait allows.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// The account a login names, as the limiter knows it: a hash of the email
/// in its normal form, or of what was typed when it is not an email, so an
/// unknown account is counted like a known one (the answer must not tell
/// them apart), and nothing typed in the username field (people type
/// passwords there) stays in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Account([u8; 16]);

impl Account {
    /// The account `username` names, in the normal form of [`Email`].
    pub fn named(username: &str) -> Account {
        let hash = match Email::parse(username) {
            Ok(email) => blake3::hash(email.as_str().as_bytes()),
            Err(_) => blake3::hash(username.as_bytes()),
        };
        let mut key = [0; 16];
        key.copy_from_slice(&hash.as_bytes()[..16]);
        Account(key)
    }
}

type Pair = (Account, ClientAddress);

/// A pair's run of failures. Times are nanoseconds since the limiter began.
#[derive(Debug, Default, Clone, Copy)]
struct Failures {
    count: u32,
    /// Attempts are refused until then.
    blocked_until: u64,
    last: u64,
}

impl Failures {
    fn record(&mut self, now: u64, budget: u32) {
        self.count = self.count.saturating_add(1);
        self.last = now;
        if self.count >= budget {
            let doublings = (self.count - budget).min(16);
            let wait = (FIRST_WAIT * 2u32.pow(doublings)).min(LONGEST_WAIT);
            self.blocked_until = now.saturating_add(nanos(wait));
        }
    }

    fn check(&self, now: u64) -> Result<(), Throttled> {
        if self.blocked_until > now {
            Err(Throttled::after(Duration::from_nanos(
                self.blocked_until - now,
            )))
        } else {
            Ok(())
        }
    }

    fn idle(&self, now: u64) -> bool {
        self.last
            .max(self.blocked_until)
            .saturating_add(nanos(FORGET_AFTER))
            <= now
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The failures of every account and address pair that has some, at most
/// `capacity` pairs.
///
/// When the table is full, it first forgets (at most once a second) the pairs
/// still under their budget: forgetting them gives back fewer guesses than a
/// fresh address has. A pair over its budget is kept until it is idle. When
/// even then there is no room, a new pair shares one overflow run of
/// failures with every pair not in the table, so a flood of pairs can make
/// newcomers wait together but never lets them guess unchecked.
pub struct Logins<C: Clock = DefaultClock> {
    map: DashMap<Pair, Failures>,
    held: AtomicUsize,
    capacity: usize,
    overflow: Mutex<Failures>,
    budget: u32,
    clock: C,
    start: C::Instant,
    swept_full_at: AtomicU64,
}

impl Logins {
    pub fn new(budget: u32, capacity: usize) -> Logins {
        Logins::with_clock(budget, capacity, DefaultClock::default())
    }
}

impl<C: Clock> Logins<C> {
    pub fn with_clock(budget: u32, capacity: usize, clock: C) -> Logins<C> {
        let start = clock.now();
        Logins {
            map: DashMap::new(),
            held: AtomicUsize::new(0),
            capacity,
            overflow: Mutex::new(Failures::default()),
            budget: budget.max(1),
            clock,
            start,
            swept_full_at: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    fn is_full(&self) -> bool {
        self.held.load(Ordering::Acquire) >= self.capacity
    }

    /// Whether a login of `account` from `client` may be tried now: a read.
    pub fn check(&self, account: Account, client: ClientAddress) -> Result<(), Throttled> {
        let now = self.now();
        if let Some(failures) = self.map.get(&(account, client)) {
            return failures.check(now);
        }
        if self.is_full() {
            return self.overflow().check(now);
        }
        Ok(())
    }

    /// A wrong password (or the right one of a disabled account).
    pub fn failed(&self, account: Account, client: ClientAddress) {
        let now = self.now();
        let pair = (account, client);
        if let Some(mut failures) = self.map.get_mut(&pair) {
            return failures.record(now, self.budget);
        }
        if self.is_full() {
            self.sweep_full(now);
        }
        let reserved = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.capacity).then_some(held + 1)
            })
            .is_ok();
        if !reserved {
            return self.overflow().record(now, self.budget);
        }
        match self.map.entry(pair) {
            Entry::Occupied(mut failures) => {
                self.held.fetch_sub(1, Ordering::AcqRel);
                failures.get_mut().record(now, self.budget);
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Failures::default()).record(now, self.budget);
            }
        }
    }

    /// The right password: the pair's run of failures ends. Reads only,
    /// unless there was a run.
    pub fn succeeded(&self, account: Account, client: ClientAddress) {
        let pair = (account, client);
        if self.map.contains_key(&pair) && self.map.remove(&pair).is_some() {
            self.held.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Forgets the pairs idle for [`FORGET_AFTER`].
    pub fn forget_idle(&self) {
        let now = self.now();
        self.retain(|failures| !failures.idle(now));
        let mut overflow = self.overflow();
        if overflow.idle(now) {
            *overflow = Failures::default();
        }
        drop(overflow);
        self.map.shrink_to_fit();
    }

    fn sweep_full(&self, now: u64) {
        let second = now / 1_000_000_000 + 1;
        let last = self.swept_full_at.load(Ordering::Relaxed);
        if second > last
            && self
                .swept_full_at
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let budget = self.budget;
            self.retain(|failures| failures.count >= budget && !failures.idle(now));
        }
    }

    fn retain(&self, keep: impl Fn(&Failures) -> bool) {
        self.map.retain(|_, failures| {
            let kept = keep(failures);
            if !kept {
                self.held.fetch_sub(1, Ordering::AcqRel);
            }
            kept
        });
    }

    fn overflow(&self) -> std::sync::MutexGuard<'_, Failures> {
        // A panic while holding it leaves a valid `Failures`.
        self.overflow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the table holds (the overflow not counted).
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn client(n: u32) -> ClientAddress {
        ClientAddress::V4(Ipv4Addr::from(n))
    }

    fn logins(budget: u32, capacity: usize) -> (Logins<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Logins::with_clock(budget, capacity, clock.clone()), clock)
    }

    fn waits(logins: &Logins<FakeRelativeClock>, account: Account, n: u32) -> Duration {
        logins.check(account, client(n)).unwrap_err().retry_after
    }

    #[test]
    fn the_wait_begins_at_the_budget_and_doubles_to_a_quarter_hour() {
        let (logins, clock) = logins(3, 100);
        let ada = Account::named("ada@example.com");
        for _ in 0..3 {
            logins.check(ada, client(1)).unwrap();
            logins.failed(ada, client(1));
        }
        assert_eq!(waits(&logins, ada, 1), Duration::from_secs(60));
        let mut expected = 60;
        for _ in 0..6 {
            clock.advance(Duration::from_secs(expected));
            logins.check(ada, client(1)).unwrap();
            logins.failed(ada, client(1));
            expected = (expected * 2).min(900);
            assert_eq!(waits(&logins, ada, 1), Duration::from_secs(expected));
        }
        assert_eq!(expected, 900);
    }

    #[test]
    fn another_address_and_another_account_are_not_affected() {
        let (logins, _) = logins(2, 100);
        let ada = Account::named("ada@example.com");
        logins.failed(ada, client(1));
        logins.failed(ada, client(1));
        assert!(logins.check(ada, client(1)).is_err());
        logins.check(ada, client(2)).unwrap();
        logins
            .check(Account::named("bob@example.com"), client(1))
            .unwrap();
    }

    #[test]
    fn a_success_ends_the_run() {
        let (logins, _) = logins(3, 100);
        let ada = Account::named("ada@example.com");
        logins.failed(ada, client(1));
        logins.failed(ada, client(1));
        logins.succeeded(ada, client(1));
        assert_eq!(logins.len(), 0);
        logins.failed(ada, client(1));
        logins.failed(ada, client(1));
        logins.check(ada, client(1)).unwrap();
    }

    #[test]
    fn spellings_of_one_email_are_one_account() {
        assert_eq!(
            Account::named(" Ada@Example.COM "),
            Account::named("ada@example.com")
        );
        assert_ne!(
            Account::named("not an email"),
            Account::named("ada@example.com")
        );
    }

    #[test]
    fn idle_pairs_are_forgotten() {
        let (logins, clock) = logins(2, 100);
        let ada = Account::named("ada@example.com");
        logins.failed(ada, client(1));
        logins.failed(ada, client(1));
        clock.advance(FIRST_WAIT + FORGET_AFTER - Duration::from_secs(1));
        logins.forget_idle();
        assert_eq!(logins.len(), 1);
        clock.advance(Duration::from_secs(1));
        logins.forget_idle();
        assert_eq!(logins.len(), 0);
    }

    #[test]
    fn a_flood_of_pairs_never_grows_the_table_past_its_capacity() {
        let (logins, clock) = logins(2, 50);
        for n in 0..10_000 {
            let account = Account::named(&format!("user{n}@example.com"));
            logins.failed(account, client(n));
            logins.failed(account, client(n));
            assert!(logins.len() <= 50);
            clock.advance(Duration::from_millis(1));
        }
        assert_eq!(logins.len(), 50);
        // Newcomers share the overflow run, which the flood pushed over.
        let newcomer = Account::named("carol@example.com");
        assert!(logins.check(newcomer, client(7)).is_err());
    }

    #[test]
    fn a_full_table_makes_room_by_forgetting_pairs_under_their_budget() {
        let (logins, clock) = logins(3, 10);
        for n in 0..10 {
            logins.failed(Account::named("ada@example.com"), client(n));
        }
        clock.advance(Duration::from_secs(2));
        let bob = Account::named("bob@example.com");
        logins.failed(bob, client(1));
        assert_eq!(logins.len(), 1);
        logins
            .check(Account::named("carol@example.com"), client(1))
            .unwrap();
    }
}
