//! Failed logins and exchanges, and throttled requests, tallied behind the
//! response.
//!
//! A failure only adds to a tally in memory: one per client address, action
//! and minute, in a sharded table that requests do not contend on. A
//! background task writes the tallies that grew every [`FLUSH_EVERY`], each
//! replacing its own earlier write, so a minute's failures from one address
//! stay one event however many there are; shutdown writes what is left. A
//! tally whose minute is over and whose count is stored is forgotten, and
//! logged then, once.
//!
//! Memory is bounded: past [`CAPACITY`] tallies, the failures of addresses
//! without one are tallied together, per action and minute, with no address.

use std::time::Duration;

use chrono::Utc;
use dashmap::DashMap;
use uuid::Uuid;

use crate::{
    db::{self, Db},
    domain::audit::{minute, Action, Event, Failure, Limit, Tally},
    tasks::Stopping,
    throttle::{ClientAddress, Throttled},
};

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Tallies held at most (a few hundred bytes each, a few kilobytes for one
/// that lists many targets).
pub const CAPACITY: usize = 10_000;

/// Which tally a failure adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    /// `None`: the tally of every address that found the table full.
    address: Option<ClientAddress>,
    action: Action,
    minute: i64,
}

struct Entry {
    tally: Tally,
    /// The count as last stored.
    stored: u64,
}

impl Entry {
    fn event(&self, key: &Key) -> Event {
        self.tally
            .event(key.action, key.address.map(|a| a.to_string()))
    }
}

pub struct Failures {
    tallies: DashMap<Key, Entry>,
    capacity: usize,
}

impl Default for Failures {
    fn default() -> Failures {
        Failures::with_capacity(CAPACITY)
    }
}

impl Failures {
    pub fn with_capacity(capacity: usize) -> Failures {
        Failures {
            tallies: DashMap::new(),
            capacity,
        }
    }

    /// Notes a failure from `address`. Never waits on I/O: an update of one
    /// shard of the table.
    pub fn failed(&self, address: ClientAddress, failure: Failure) {
        let now = Utc::now();
        let mut key = Key {
            address: Some(address),
            action: failure.action,
            minute: minute(now),
        };
        if let Some(mut entry) = self.tallies.get_mut(&key) {
            entry.tally.add(&failure, now);
            return;
        }
        if self.tallies.len() >= self.capacity {
            key.address = None;
        }
        self.tallies
            .entry(key)
            .or_insert_with(|| Entry {
                tally: Tally::new(now),
                stored: 0,
            })
            .tally
            .add(&failure, now);
    }

    /// What `limit` refused from `address` (as the caller, when it is known,
    /// `account`), noted as a `request.throttled`, for `map_err`: the
    /// refusal goes on as it was.
    pub fn refused(
        &self,
        address: ClientAddress,
        limit: Limit,
        account: Option<Uuid>,
    ) -> impl FnOnce(Throttled) -> Throttled + '_ {
        move |throttled| {
            self.failed(address, Failure::throttled(limit, account));
            throttled
        }
    }

    /// How many tallies are held.
    pub fn len(&self) -> usize {
        self.tallies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tallies.is_empty()
    }

    /// Writes every tally that grew since it was last stored, then forgets
    /// (and logs) those whose minute is over and whose count is stored. On
    /// failure nothing is forgotten, and the next flush writes it again.
    pub async fn flush(&self, db: &Db) -> Result<(), sqlx::Error> {
        let (grown, events): (Vec<(Key, u64)>, Vec<Event>) = self
            .tallies
            .iter()
            .filter(|entry| entry.tally.count != entry.stored)
            .map(|entry| ((*entry.key(), entry.tally.count), entry.event(entry.key())))
            .unzip();
        db::audit::write_tallies(db, &events).await?;
        for (key, count) in grown {
            if let Some(mut entry) = self.tallies.get_mut(&key) {
                entry.stored = entry.stored.max(count);
            }
        }
        let this_minute = minute(Utc::now());
        self.tallies.retain(|key, entry| {
            let done = key.minute < this_minute && entry.stored == entry.tally.count;
            if done {
                db::audit::logged(&entry.event(key));
            }
            !done
        });
        Ok(())
    }

    /// Writes every tally as it stands and forgets them all, logging each:
    /// at shutdown every tally is final.
    async fn flush_all(&self, db: &Db) -> Result<(), sqlx::Error> {
        let events: Vec<Event> = self
            .tallies
            .iter()
            .map(|entry| entry.event(entry.key()))
            .collect();
        db::audit::write_tallies(db, &events).await?;
        events.iter().for_each(db::audit::logged);
        self.tallies.clear();
        Ok(())
    }

    /// Flushes every [`FLUSH_EVERY`] until the server stops, then writes
    /// everything left.
    pub async fn write_behind(&self, db: Db, mut stopping: Stopping) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopping.wait() => break,
            }
            match self.flush(&db).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "could not record failed attempts in the audit log; will retry");
                }
                Err(_) => {}
            }
        }
        if let Err(e) = self.flush_all(&db).await {
            tracing::error!(error = %e, "could not record failed attempts in the audit log at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::domain::audit::{ExchangeFailure, LoginFailure};

    fn address(last: u8) -> ClientAddress {
        ClientAddress::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn failures_of_one_address_and_action_make_one_tally() {
        let failures = Failures::default();

        for _ in 0..50 {
            failures.failed(
                address(1),
                Failure::login(LoginFailure::UnknownAccount, None),
            );
        }
        let refused = failures.refused(address(1), Limit::LoginFailures, None);
        refused(Throttled::after(Duration::from_secs(1)));
        failures.failed(
            address(2),
            Failure::login(LoginFailure::UnknownAccount, None),
        );

        assert_eq!(failures.len(), 3);
    }

    #[test]
    fn past_its_capacity_new_addresses_share_one_tally_per_action() {
        let failures = Failures::with_capacity(3);
        let unknown = || Failure::exchange(ExchangeFailure::UnknownKey, None, Some("ab".into()));

        for last in 0..200 {
            failures.failed(address(last), unknown());
        }
        failures.failed(address(1), unknown());

        assert_eq!(failures.len(), 4);
        let shared = failures
            .tallies
            .iter()
            .find(|entry| entry.key().address.is_none())
            .unwrap();
        assert_eq!(shared.tally.count, 197);
    }
}
