//! What the keyring holds and what follows from it at a given time: which
//! keys are in force, which no server can need any more, what a rotation
//! changes and how each key is listed. The clock is a parameter and nothing
//! here touches the file system, so every rule can be checked at the instant
//! it turns.

use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Listed, Rotation, SigningKeyState, RELOAD_INTERVAL};
use crate::{
    config::MAX_TOKEN_TTL,
    domain::{
        signing::{SigningAlg, SigningKey},
        tokens::{KeySet, LEEWAY_SECS},
    },
};

/// How long a replaced key keeps verifying: a server may sign with it until it
/// next reads the file, and its tokens then live their lifetime plus the
/// leeway.
pub fn grace(token_ttl: Duration) -> chrono::Duration {
    let grace = token_ttl + Duration::from_secs(LEEWAY_SECS) + 2 * RELOAD_INTERVAL;
    chrono::Duration::from_std(grace).expect("token lifetimes are bounded")
}

#[derive(Default, Serialize, Deserialize)]
pub(super) struct StoredKeyring {
    pub(super) keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredKey {
    pub(super) kid: String,
    pub(super) alg: SigningAlg,
    pub(super) created_at: DateTime<Utc>,
    /// When another key replaced this one; `None` while it is current.
    pub(super) retired_at: Option<DateTime<Utc>>,
    /// The HS256 secret, or the Ed25519 key as PKCS#8 PEM.
    pub(super) private_key: String,
}

impl StoredKeyring {
    pub(super) fn current(&self, alg: SigningAlg) -> Option<&StoredKey> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.retired_at.is_none())
            .max_by_key(|k| k.created_at)
    }

    pub(super) fn add(&mut self, key: SigningKey, now: DateTime<Utc>) {
        self.keys.push(StoredKey {
            kid: key.kid().to_owned(),
            alg: key.alg(),
            created_at: now,
            retired_at: None,
            private_key: key.private_text(),
        });
    }

    fn retire(&mut self, alg: SigningAlg, now: DateTime<Utc>) -> Vec<String> {
        self.keys
            .iter_mut()
            .filter(|k| k.alg == alg && k.retired_at.is_none())
            .map(|k| {
                k.retired_at = Some(now);
                k.kid.clone()
            })
            .collect()
    }

    /// Adds a current key of `alg` if there is none (first start, or a change
    /// of algorithm); tells the id of the key it made, if it made one.
    pub(super) fn ensure_current(
        &mut self,
        alg: SigningAlg,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<String>> {
        if self.current(alg).is_some() {
            return Ok(None);
        }
        let key = SigningKey::generate(alg)?;
        let kid = key.kid().to_owned();
        self.add(key, now);
        Ok(Some(kid))
    }

    /// Makes a new key current for every algorithm that has one (so a
    /// rotation cannot miss the key a server signs with), or for `alg` in a
    /// new keyring, and starts the grace period of the keys they replace.
    pub(super) fn rotate(
        &mut self,
        alg: SigningAlg,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Rotation>> {
        let mut algs: Vec<SigningAlg> = [SigningAlg::HS256, SigningAlg::EdDSA]
            .into_iter()
            .filter(|alg| self.current(*alg).is_some())
            .collect();
        if algs.is_empty() {
            algs.push(alg);
        }
        let mut rotations = Vec::new();
        for alg in algs {
            let retired = self.retire(alg, now);
            let key = SigningKey::generate(alg)?;
            rotations.push(Rotation {
                alg,
                current: key.kid().to_owned(),
                retired,
            });
            self.add(key, now);
        }
        Ok(rotations)
    }

    /// Drops the keys no server can need any more, whatever its token
    /// lifetime: the lifetime of the process writing the file may not be the
    /// servers'.
    pub(super) fn prune(&mut self, now: DateTime<Utc>) {
        let longest = grace(MAX_TOKEN_TTL);
        self.keys.retain(|k| k.verifies_at(now, longest));
    }

    /// The current key of `alg` and the replaced ones still in their grace
    /// period; `None` if there is no current key.
    pub(super) fn in_force(
        &self,
        alg: SigningAlg,
        grace: chrono::Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<KeySet>> {
        let Some(current) = self.current(alg) else {
            return Ok(None);
        };
        let previous = self
            .keys
            .iter()
            .filter(|k| k.alg == alg)
            .filter(|k| k.retired_at.is_some() && k.verifies_at(now, grace))
            .map(StoredKey::key)
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(KeySet {
            current: current.key()?,
            previous,
        }))
    }

    /// Whether a key that verifies now (one of `in_use`) has passed its grace
    /// period.
    pub(super) fn grace_ended(
        &self,
        in_use: &[String],
        grace: chrono::Duration,
        now: DateTime<Utc>,
    ) -> bool {
        self.keys.iter().any(|k| {
            k.retired_at.is_some() && !k.verifies_at(now, grace) && in_use.contains(&k.kid)
        })
    }

    pub(super) fn list(&self, grace: chrono::Duration, now: DateTime<Utc>) -> Vec<Listed> {
        self.keys
            .iter()
            .map(|k| Listed {
                kid: k.kid.clone(),
                alg: k.alg,
                created_at: k.created_at,
                state: k.state(grace, now),
            })
            .collect()
    }
}

impl StoredKey {
    /// Whether tokens it signed may still be verified at `now`: always while
    /// it is current, then for `grace` after it was replaced.
    fn verifies_at(&self, now: DateTime<Utc>, grace: chrono::Duration) -> bool {
        self.retired_at.is_none_or(|at| now < at + grace)
    }

    fn state(&self, grace: chrono::Duration, now: DateTime<Utc>) -> SigningKeyState {
        match self.retired_at {
            None => SigningKeyState::Current,
            Some(at) if self.verifies_at(now, grace) => {
                SigningKeyState::Verifying { until: at + grace }
            }
            Some(_) => SigningKeyState::Expired,
        }
    }

    fn key(&self) -> anyhow::Result<SigningKey> {
        let key = SigningKey::from_private_text(self.alg, &self.private_key)
            .with_context(|| format!("signing key {}", self.kid))?;
        if key.kid() != self.kid {
            bail!("signing key {} does not match its id", self.kid);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed instant, so each rule is checked at the moment it turns.
    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).unwrap()
    }

    fn with_current(alg: SigningAlg, now: DateTime<Utc>) -> StoredKeyring {
        let mut stored = StoredKeyring::default();
        stored.ensure_current(alg, now).unwrap();
        stored
    }

    fn kids(stored: &StoredKeyring) -> Vec<String> {
        stored.keys.iter().map(|k| k.kid.clone()).collect()
    }

    #[test]
    fn a_rotation_keeps_the_replaced_key_for_the_lifetime_plus_leeway_plus_two_reloads() {
        let mut stored = with_current(SigningAlg::HS256, t0());
        let old = stored.current(SigningAlg::HS256).unwrap().kid.clone();
        let rotations = stored
            .rotate(SigningAlg::HS256, t0() + chrono::Duration::minutes(1))
            .unwrap();
        assert_eq!(rotations.len(), 1);
        assert_eq!(rotations[0].retired, vec![old.clone()]);

        let retired_at = stored
            .keys
            .iter()
            .find(|k| k.kid == old)
            .unwrap()
            .retired_at
            .unwrap();
        let configured = grace(Duration::from_secs(60));
        // 60 s tokens, 5 s leeway, two one-second reloads.
        let grace = chrono::Duration::seconds(67);
        let keys = stored
            .in_force(
                SigningAlg::HS256,
                configured,
                retired_at + grace - chrono::Duration::milliseconds(1),
            )
            .unwrap()
            .unwrap();
        assert_eq!(keys.current.kid(), rotations[0].current);
        assert_eq!(keys.previous.len(), 1);
        assert_eq!(keys.previous[0].kid(), old);

        let later = stored
            .in_force(SigningAlg::HS256, configured, retired_at + grace)
            .unwrap()
            .unwrap();
        assert_eq!(later.current.kid(), rotations[0].current);
        assert!(later.previous.is_empty());
    }

    #[test]
    fn a_rotation_rotates_the_algorithm_in_use_whatever_it_is_told() {
        let mut stored = with_current(SigningAlg::EdDSA, t0());
        let ed = stored.current(SigningAlg::EdDSA).unwrap().kid.clone();
        let rotations = stored.rotate(SigningAlg::HS256, t0()).unwrap();
        assert_eq!(rotations.len(), 1);
        assert_eq!(rotations[0].alg, SigningAlg::EdDSA);
        assert_eq!(rotations[0].retired, vec![ed]);
    }

    #[test]
    fn a_rotation_by_a_short_lived_configuration_keeps_keys_a_longer_one_needs() {
        let mut stored = with_current(SigningAlg::EdDSA, t0());
        let first = stored.current(SigningAlg::EdDSA).unwrap().kid.clone();
        // Each change to the file prunes first, as the keyring's writes do.
        stored.prune(t0());
        stored.rotate(SigningAlg::EdDSA, t0()).unwrap();
        // A second rotation soon after, however short this process's token
        // lifetime, must not drop the first key: a server may use 24 h tokens.
        let soon = t0() + grace(Duration::from_secs(1));
        stored.prune(soon);
        stored.rotate(SigningAlg::EdDSA, soon).unwrap();
        let kept = kids(&stored);
        assert!(kept.contains(&first), "{kept:?}");
        assert_eq!(kept.len(), 3);
    }

    #[test]
    fn a_new_keyring_rotates_the_algorithm_it_is_told() {
        let mut stored = StoredKeyring::default();
        let rotations = stored.rotate(SigningAlg::HS256, t0()).unwrap();
        assert_eq!(rotations.len(), 1);
        assert_eq!(rotations[0].alg, SigningAlg::HS256);
        assert!(rotations[0].retired.is_empty());
        assert_eq!(
            stored.current(SigningAlg::HS256).unwrap().kid,
            rotations[0].current
        );
    }

    #[test]
    fn pruning_drops_a_replaced_key_once_no_24_hour_token_can_need_it() {
        let mut stored = with_current(SigningAlg::EdDSA, t0());
        let old = stored.current(SigningAlg::EdDSA).unwrap().kid.clone();
        let retired_at = t0() + chrono::Duration::hours(1);
        stored.rotate(SigningAlg::EdDSA, retired_at).unwrap();
        let new = stored.current(SigningAlg::EdDSA).unwrap().kid.clone();
        // 24 h tokens, 5 s leeway, two one-second reloads.
        let longest = chrono::Duration::hours(24) + chrono::Duration::seconds(7);
        assert_eq!(grace(MAX_TOKEN_TTL), longest);

        stored.prune(retired_at + longest - chrono::Duration::milliseconds(1));
        assert_eq!(kids(&stored), vec![old, new.clone()]);

        stored.prune(retired_at + longest);
        assert_eq!(kids(&stored), vec![new]);
    }

    #[test]
    fn pruning_keeps_current_keys_however_old() {
        let mut stored = with_current(SigningAlg::HS256, t0());
        stored.ensure_current(SigningAlg::EdDSA, t0()).unwrap();
        stored.prune(t0() + chrono::Duration::days(3650));
        assert_eq!(stored.keys.len(), 2);
    }

    #[test]
    fn a_replaced_key_is_listed_verifying_for_its_grace_period_then_expired() {
        let mut stored = with_current(SigningAlg::EdDSA, t0());
        let old = stored.current(SigningAlg::EdDSA).unwrap().kid.clone();
        let retired_at = t0() + chrono::Duration::minutes(5);
        stored.rotate(SigningAlg::EdDSA, retired_at).unwrap();
        let new = stored.current(SigningAlg::EdDSA).unwrap().kid.clone();
        let grace = grace(Duration::from_secs(60));
        let end = retired_at + grace;
        let states = |now| {
            stored
                .list(grace, now)
                .into_iter()
                .map(|listed| (listed.kid, listed.state))
                .collect::<Vec<_>>()
        };

        assert_eq!(
            states(retired_at),
            vec![
                (old.clone(), SigningKeyState::Verifying { until: end }),
                (new.clone(), SigningKeyState::Current)
            ]
        );
        assert_eq!(
            states(end - chrono::Duration::milliseconds(1))[0],
            (old.clone(), SigningKeyState::Verifying { until: end })
        );
        assert_eq!(
            states(end),
            vec![
                (old, SigningKeyState::Expired),
                (new, SigningKeyState::Current)
            ]
        );

        let listed = stored.list(grace, end);
        assert_eq!(listed[0].alg, SigningAlg::EdDSA);
        assert_eq!(listed[0].created_at, t0());
        assert_eq!(listed[1].created_at, retired_at);
    }

    #[test]
    fn the_end_of_a_grace_period_matters_only_for_a_key_still_in_use() {
        let mut stored = with_current(SigningAlg::HS256, t0());
        let old = stored.current(SigningAlg::HS256).unwrap().kid.clone();
        stored.rotate(SigningAlg::HS256, t0()).unwrap();
        let new = stored.current(SigningAlg::HS256).unwrap().kid.clone();
        let grace = grace(Duration::from_secs(60));
        let in_use = vec![new.clone(), old];

        assert!(!stored.grace_ended(
            &in_use,
            grace,
            t0() + grace - chrono::Duration::milliseconds(1)
        ));
        assert!(stored.grace_ended(&in_use, grace, t0() + grace));
        assert!(!stored.grace_ended(&[new], grace, t0() + grace));
    }
}
