//! The key records exchanges have read, held in memory so that the exchange
//! of a key this instance has seen needs no database round trip.
//!
//! The cache is kept true by the revocation feed: every change to what an
//! exchange depends on (a key revoked, an account disabled, enabled or given
//! another role) is a row of the feed, and the feed's new rows
//! [invalidate](KeyCache::invalidate) the entries they touch. Nothing else
//! changes a key record: a key's scopes and expiry are fixed when it is
//! made, and neither keys nor accounts are deleted.
//!
//! A fill races the feed: an exchange reads a record that is active, a
//! revocation commits and is heard here, then the exchange stores what it
//! read. The [epoch](Fill) settles it: a fill notes the epoch before it reads
//! the database and stores its record only if no change was applied since,
//! and invalidations and fills take turns on one mutex, so a revoked key's
//! entry never comes back. Lookups never take that mutex: only fills (the
//! first exchange of a key) and invalidations (rare events) do.
//!
//! Only records that may exchange are kept (an unrevoked key of an enabled
//! account): a refused key is refused by the database's answer again. The
//! expiry is checked at each use, from the record.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use quick_cache::sync::Cache;
use uuid::Uuid;

use crate::{
    db::keys::KeyOwner,
    domain::{
        keys::KeyHash,
        revocation::{Change, ChangeKind},
    },
};

/// The entries by key hash, and how fills and invalidations are ordered.
pub struct KeyCache {
    /// `None` when the cache is turned off (a size of 0).
    entries: Option<Cache<[u8; 32], KeyOwner>>,
    /// How many invalidations have been applied.
    epoch: AtomicU64,
    /// Fills and invalidations take turns.
    writing: Mutex<()>,
}

/// A fill begun: the epoch as it was before the database was read.
#[derive(Debug, Clone, Copy)]
#[must_use = "a fill stores nothing until it is finished"]
pub struct Fill(u64);

impl KeyCache {
    /// A cache of at most about `size` records (each about a hundred bytes);
    /// 0 turns it off.
    pub fn new(size: usize) -> KeyCache {
        KeyCache {
            entries: (size > 0).then(|| Cache::new(size)),
            epoch: AtomicU64::new(0),
            writing: Mutex::new(()),
        }
    }

    /// The record of the key with this hash, if it is held. A lookup takes
    /// no lock every request contends on (the cache's shards are locked for
    /// reading only).
    pub fn get(&self, hash: &KeyHash) -> Option<KeyOwner> {
        self.entries.as_ref()?.get(&hash.0)
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// To be called before the database is read for a record to store.
    pub fn begin_fill(&self) -> Fill {
        Fill(self.epoch.load(Ordering::Acquire))
    }

    /// Stores the record read since `fill` began, if it can exchange and no
    /// change was applied meanwhile (the record may predate it). Whether it
    /// was stored.
    pub fn finish_fill(&self, fill: Fill, hash: &KeyHash, owner: &KeyOwner) -> bool {
        let Some(entries) = &self.entries else {
            return false;
        };
        if owner.revoked || owner.disabled {
            return false;
        }
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) != fill.0 {
            return false;
        }
        entries.insert(hash.0, owner.clone());
        true
    }

    /// Forgets the records the changes touch: a revoked key's, and every
    /// record of an account disabled, enabled or signed out (a sign-out is
    /// also what a role change writes). A revoked token touches no record.
    /// Fills begun before this store nothing.
    ///
    /// The records are found by a scan, under the mutex fills take: these
    /// changes are rare, and a second index by key and account would cost
    /// every entry memory and every fill work.
    pub fn invalidate<'a>(&self, changes: impl IntoIterator<Item = &'a Change>) {
        let mut keys: Vec<Uuid> = Vec::new();
        let mut users: Vec<Uuid> = Vec::new();
        for change in changes {
            match change.kind {
                ChangeKind::KeyRevoked { key_id } => keys.push(key_id),
                ChangeKind::SignedOut | ChangeKind::Disabled | ChangeKind::Enabled => {
                    users.push(change.user_id)
                }
                ChangeKind::TokenRevoked { .. } => {}
            }
        }
        if keys.is_empty() && users.is_empty() {
            return;
        }
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.retain(|_, owner| {
                !keys.contains(&owner.key_id) && !users.contains(&owner.user_id)
            });
        }
    }

    /// Forgets every record, and fills begun before this store nothing: for
    /// when changes may have been missed.
    pub fn clear(&self) {
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::scopes::{Role, Scopes};

    use super::*;

    fn owner(user_id: Uuid) -> KeyOwner {
        KeyOwner {
            key_id: Uuid::now_v7(),
            user_id,
            scopes: Scopes::default(),
            expires_at: None,
            revoked: false,
            role: Role::User,
            disabled: false,
        }
    }

    fn hash(n: u8) -> KeyHash {
        KeyHash([n; 32])
    }

    fn change(user_id: Uuid, kind: ChangeKind) -> Change {
        Change {
            seq: 1,
            user_id,
            kind,
            at: 0,
            until: 65_000,
        }
    }

    fn filled(cache: &KeyCache, hash: &KeyHash, owner: &KeyOwner) -> bool {
        let fill = cache.begin_fill();
        cache.finish_fill(fill, hash, owner)
    }

    #[test]
    fn a_filled_record_is_found_by_its_hash_only() {
        let cache = KeyCache::new(100);
        let ada = owner(Uuid::now_v7());
        assert!(filled(&cache, &hash(1), &ada));
        assert_eq!(cache.get(&hash(1)).map(|o| o.key_id), Some(ada.key_id));
        assert!(cache.get(&hash(2)).is_none());
    }

    #[test]
    fn a_record_that_cannot_exchange_is_not_kept() {
        let cache = KeyCache::new(100);
        let revoked = KeyOwner {
            revoked: true,
            ..owner(Uuid::now_v7())
        };
        let disabled = KeyOwner {
            disabled: true,
            ..owner(Uuid::now_v7())
        };
        assert!(!filled(&cache, &hash(1), &revoked));
        assert!(!filled(&cache, &hash(2), &disabled));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_revoked_key_forgets_that_key_only() {
        let cache = KeyCache::new(100);
        let user = Uuid::now_v7();
        let (one, two) = (owner(user), owner(user));
        assert!(filled(&cache, &hash(1), &one));
        assert!(filled(&cache, &hash(2), &two));
        cache.invalidate(&[change(user, ChangeKind::KeyRevoked { key_id: one.key_id })]);
        assert!(cache.get(&hash(1)).is_none());
        assert!(cache.get(&hash(2)).is_some());
    }

    #[test]
    fn an_account_change_forgets_every_key_of_that_account_only() {
        for kind in [
            ChangeKind::SignedOut,
            ChangeKind::Disabled,
            ChangeKind::Enabled,
        ] {
            let cache = KeyCache::new(100);
            let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
            assert!(filled(&cache, &hash(1), &owner(ada)));
            assert!(filled(&cache, &hash(2), &owner(ada)));
            assert!(filled(&cache, &hash(3), &owner(bob)));
            cache.invalidate(&[change(ada, kind)]);
            assert!(cache.get(&hash(1)).is_none(), "{kind:?}");
            assert!(cache.get(&hash(2)).is_none(), "{kind:?}");
            assert!(cache.get(&hash(3)).is_some(), "{kind:?}");
        }
    }

    #[test]
    fn a_revoked_token_forgets_nothing_and_does_not_stop_a_fill() {
        let cache = KeyCache::new(100);
        let ada = owner(Uuid::now_v7());
        let fill = cache.begin_fill();
        cache.invalidate(&[change(
            ada.user_id,
            ChangeKind::TokenRevoked {
                jti: Uuid::now_v7(),
            },
        )]);
        assert!(cache.finish_fill(fill, &hash(1), &ada));
    }

    /// The interleaving the epoch exists for: the record is read while the
    /// key is active, the revocation is applied, then the fill tries to
    /// store what it read.
    #[test]
    fn a_fill_racing_a_revocation_never_brings_the_key_back() {
        let cache = KeyCache::new(100);
        let ada = owner(Uuid::now_v7());

        // An exchange misses and reads the database: the key is active.
        let fill = cache.begin_fill();
        let read = ada.clone();
        // The revocation commits and is heard before the fill stores.
        cache.invalidate(&[change(
            ada.user_id,
            ChangeKind::KeyRevoked { key_id: ada.key_id },
        )]);
        assert!(!cache.finish_fill(fill, &hash(1), &read));
        assert!(cache.get(&hash(1)).is_none());

        // A fill begun after the revocation reads the revoked record, which
        // is not kept either.
        let after = KeyOwner {
            revoked: true,
            ..read
        };
        assert!(!filled(&cache, &hash(1), &after));
        assert!(cache.get(&hash(1)).is_none());
    }

    #[test]
    fn a_fill_begun_before_a_clear_stores_nothing() {
        let cache = KeyCache::new(100);
        let ada = owner(Uuid::now_v7());
        assert!(filled(&cache, &hash(1), &ada));
        let fill = cache.begin_fill();
        cache.clear();
        assert!(cache.is_empty());
        assert!(!cache.finish_fill(fill, &hash(2), &owner(Uuid::now_v7())));
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_holds_about_its_size_and_no_more() {
        let cache = KeyCache::new(50);
        for n in 0..=255u8 {
            let _ = filled(&cache, &hash(n), &owner(Uuid::now_v7()));
        }
        assert!(cache.len() <= 60, "{} records held", cache.len());
        assert!(cache.len() >= 25, "{} records held", cache.len());
    }

    #[test]
    fn a_cache_of_size_zero_holds_nothing() {
        let cache = KeyCache::new(0);
        assert!(!filled(&cache, &hash(1), &owner(Uuid::now_v7())));
        assert!(cache.get(&hash(1)).is_none());
    }
}
