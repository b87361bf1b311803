//! A keyed rate limiter (GCRA, from `governor`) over a bounded table, which
//! can be asked whether a key is throttled without spending anything.

use std::{
    hash::Hash,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use dashmap::{mapref::entry::Entry, DashMap};
use governor::{
    clock::{Clock, DefaultClock, Reference},
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{keyed::ShrinkableKeyedStateStore, InMemoryState, NotKeyed, StateStore},
    Quota, RateLimiter,
};

use super::Throttled;

/// A budget per key: `spend` takes from it, `peek` only looks.
///
/// The table holds at most `capacity` keys; a key whose budget is whole
/// again is indistinguishable from a new one and is forgotten by
/// [`forget_idle`](Rate::forget_idle). When the table is full of keys that
/// all still count (every one of them recently spent), a new key shares one
/// overflow budget with every other key not in the table, rather than
/// growing the table or going unlimited: a flood of distinct keys then
/// throttles the newcomers together, and never buys anyone more than one
/// key's budget.
pub struct Rate<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<Probe<K>, Table<K>, C, NoOpMiddleware<C::Instant>>,
    start: C::Instant,
    capacity: usize,
    /// The table's count of keys, shared so that a spend learns whether the
    /// table is full without locking every shard to count.
    held: Arc<AtomicUsize>,
    /// The second (since `start`) the table was last swept because it was
    /// full: a full table is swept once a second at most, not per request.
    swept_full_at: AtomicU64,
}

/// How a key is put to the table: to spend a cell, or to look whether one
/// could be spent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Probe<K> {
    key: K,
    spend: bool,
}

impl<K: Hash + Eq + Clone> Rate<K> {
    pub fn new(quota: Quota, capacity: usize) -> Rate<K> {
        Rate::with_clock(quota, capacity, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> Rate<K, C> {
    pub fn with_clock(quota: Quota, capacity: usize, clock: C) -> Rate<K, C> {
        let start = clock.now();
        let table = Table::new(capacity);
        let held = Arc::clone(&table.held);
        Rate {
            limiter: RateLimiter::new(quota, table, clock),
            start,
            capacity,
            held,
            swept_full_at: AtomicU64::new(0),
        }
    }

    /// Whether `key` could spend a cell now, without spending it: a read of
    /// one shard of the table.
    pub fn peek(&self, key: &K) -> Result<(), Throttled> {
        self.check(key, false)
    }

    /// Spends a cell of `key`'s budget, or says how long until one is back
    /// (a refusal writes nothing).
    pub fn spend(&self, key: &K) -> Result<(), Throttled> {
        if self.held.load(Ordering::Acquire) >= self.capacity {
            self.sweep_full();
        }
        self.check(key, true)
    }

    fn check(&self, key: &K, spend: bool) -> Result<(), Throttled> {
        let probe = Probe {
            key: key.clone(),
            spend,
        };
        self.limiter.check_key(&probe).map_err(|not_until| {
            Throttled::after(not_until.wait_time_from(self.limiter.clock().now()))
        })
    }

    /// Forgets every key whose budget is whole again.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn sweep_full(&self) {
        let second = self
            .limiter
            .clock()
            .now()
            .duration_since(self.start)
            .as_u64()
            / 1_000_000_000
            + 1;
        let last = self.swept_full_at.load(Ordering::Relaxed);
        if second > last
            && self
                .swept_full_at
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the table holds (the overflow not counted).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// The GCRA states (each a theoretical arrival time in an atomic), at most
/// `capacity` of them, and the overflow's.
pub struct Table<K> {
    map: DashMap<K, InMemoryState>,
    /// Reserved slots: counted before an insert, so that racing inserts
    /// cannot pass the capacity together.
    held: Arc<AtomicUsize>,
    capacity: usize,
    overflow: InMemoryState,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(capacity: usize) -> Table<K> {
        Table {
            map: DashMap::new(),
            held: Arc::new(AtomicUsize::new(0)),
            capacity,
            overflow: InMemoryState::default(),
        }
    }

    fn reserve(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.capacity).then_some(held + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }

    fn is_full(&self) -> bool {
        self.held.load(Ordering::Acquire) >= self.capacity
    }
}

/// The state as it is, through the only door `InMemoryState` has: a
/// decision that refuses writes nothing, and hands back what it saw.
fn read(state: &InMemoryState) -> Option<Nanos> {
    state
        .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
        .unwrap_err()
}

/// What GCRA decides on `state`, written back only when spending.
fn decide<T, E>(
    state: &InMemoryState,
    spend: bool,
    f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
) -> Result<T, E> {
    if spend {
        state.measure_and_replace(&NotKeyed::NonKey, f)
    } else {
        f(read(state)).map(|(outcome, _)| outcome)
    }
}

impl<K: Hash + Eq + Clone> StateStore for Table<K> {
    type Key = Probe<K>;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe<K>, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.map.get(&probe.key) {
            return decide(&state, probe.spend, f);
        }
        if !probe.spend {
            return if self.is_full() {
                decide(&self.overflow, false, f)
            } else {
                f(None).map(|(outcome, _)| outcome)
            };
        }
        if !self.reserve() {
            return decide(&self.overflow, true, f);
        }
        match self.map.entry(probe.key.clone()) {
            Entry::Occupied(state) => {
                // Another request put the key in first.
                self.release();
                decide(state.get(), true, f)
            }
            Entry::Vacant(vacant) => decide(&vacant.insert(InMemoryState::default()), true, f),
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<Probe<K>> for Table<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain(|_, state| {
            let keep = read(state).is_some_and(|tat| tat > drop_below);
            if !keep {
                self.release();
            }
            keep
        });
        if read(&self.overflow).is_some_and(|tat| tat <= drop_below) {
            // The overflow's budget is whole again too: start it afresh.
            let _ = self
                .overflow
                .measure_and_replace(&NotKeyed::NonKey, |_| Ok::<_, ()>(((), Nanos::new(0))));
        }
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, time::Duration};

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn per_minute(n: u32) -> Quota {
        Quota::per_minute(NonZeroU32::new(n).unwrap())
    }

    fn rate(n: u32, capacity: usize) -> (Rate<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            Rate::with_clock(per_minute(n), capacity, clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_key_spends_its_budget_then_waits_and_others_are_unaffected() {
        let (rate, _) = rate(3, 100);
        for _ in 0..3 {
            rate.spend(&1).unwrap();
        }
        let throttled = rate.spend(&1).unwrap_err();
        assert_eq!(throttled.retry_after, Duration::from_secs(20));
        assert!(rate.peek(&1).is_err());
        assert!(rate.peek(&2).is_ok());
        rate.spend(&2).unwrap();
    }

    #[test]
    fn peeking_spends_nothing_and_stores_nothing() {
        let (rate, _) = rate(2, 100);
        for _ in 0..10 {
            rate.peek(&1).unwrap();
        }
        assert_eq!(rate.len(), 0);
        rate.spend(&1).unwrap();
        rate.spend(&1).unwrap();
        assert!(rate.spend(&1).is_err());
    }

    #[test]
    fn a_refused_spend_does_not_push_the_wait_further() {
        let (rate, clock) = rate(1, 100);
        rate.spend(&1).unwrap();
        for _ in 0..5 {
            assert!(rate.spend(&1).is_err());
        }
        clock.advance(Duration::from_secs(60));
        rate.spend(&1).unwrap();
    }

    #[test]
    fn whole_budgets_are_forgotten() {
        let (rate, clock) = rate(2, 100);
        rate.spend(&1).unwrap();
        rate.spend(&2).unwrap();
        rate.spend(&2).unwrap();
        // governor forgets a key one cell's time (30 s) after its budget is
        // whole: 1's was whole after 30 s, 2's after 60 s.
        clock.advance(Duration::from_secs(75));
        rate.forget_idle();
        assert_eq!(rate.len(), 1);
        clock.advance(Duration::from_secs(30));
        rate.forget_idle();
        assert_eq!(rate.len(), 0);
    }

    #[test]
    fn a_flood_of_keys_never_grows_the_table_past_its_capacity() {
        let (rate, clock) = rate(2, 50);
        for key in 0..10_000 {
            let _ = rate.spend(&key);
            assert!(rate.len() <= 50);
            if key % 1000 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        assert_eq!(rate.len(), 50);
        // Newcomers shared the overflow's budget, which the flood spent.
        assert!(rate.peek(&1_000_000).is_err());
        // Keys in the table keep their own budget.
        let (rate, _) = self::rate(2, 2);
        rate.spend(&1).unwrap();
        rate.spend(&2).unwrap();
        rate.spend(&3).unwrap();
        rate.spend(&4).unwrap();
        assert!(rate.spend(&5).is_err());
        rate.spend(&1).unwrap();
        assert!(rate.spend(&1).is_err());
    }

    #[test]
    fn a_full_table_makes_room_by_forgetting_whole_budgets() {
        let (rate, clock) = rate(2, 10);
        for key in 0..10 {
            rate.spend(&key).unwrap();
        }
        clock.advance(Duration::from_secs(61));
        // Every key has its budget back: the newcomer gets a place of its own.
        rate.spend(&100).unwrap();
        rate.spend(&100).unwrap();
        assert!(rate.spend(&100).is_err());
        assert!(rate.peek(&101).is_ok());
    }

    #[test]
    fn concurrent_spends_respect_the_capacity() {
        let rate = std::sync::Arc::new(Rate::<u32>::new(per_minute(5), 1000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let rate = std::sync::Arc::clone(&rate);
                std::thread::spawn(move || {
                    for key in 0..5000 {
                        let _ = rate.spend(&(key * 4 + t));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(rate.len() <= 1000, "{}", rate.len());
    }
}
