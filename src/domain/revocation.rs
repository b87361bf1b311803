//! Which live tokens the recent revocations cover: the rules, free of I/O.
//!
//! A [`Window`] holds the changes younger than a token's lifetime plus the
//! clock leeway (older ones cannot matter: the tokens they name have expired).
//! It only grows by merging and shrinks by expiry, so the same set of changes,
//! learnt in any order and any number of times, gives the same answers: that
//! is what lets every instance build it from notifications and reloads alike.

use std::collections::{hash_map::Entry, HashMap};

use uuid::Uuid;

/// Milliseconds since the Unix epoch: a token's issue time is its UUIDv7
/// `jti`'s, finer than the whole seconds of `iat`, so a cut-off is exact.
pub type Millis = i64;

/// One row of the feed: a change to what a token or an exchange may rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The feed's order. An account's disables and enables are numbered while
    /// its row is locked, so their order is the order they committed in.
    pub seq: i64,
    pub user_id: Uuid,
    pub kind: ChangeKind,
    pub at: Millis,
    /// When the change stops mattering: the last moment a token it covers
    /// could still verify.
    pub until: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Every token minted from the key, whenever.
    KeyRevoked { key_id: Uuid },
    /// Every token of the account issued up to `at`: a sign-out, a new
    /// password, a new role.
    SignedOut,
    /// Every token of the account, until it is enabled again.
    Disabled,
    /// Ends a disable; tokens issued before it stay refused.
    Enabled,
    /// One token.
    TokenRevoked { jti: Uuid },
}

impl ChangeKind {
    /// The name stored in the feed's `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            ChangeKind::KeyRevoked { .. } => "key_revoked",
            ChangeKind::SignedOut => "signed_out",
            ChangeKind::Disabled => "disabled",
            ChangeKind::Enabled => "enabled",
            ChangeKind::TokenRevoked { .. } => "token_revoked",
        }
    }

    /// The kind a stored row names, with the id its kind needs.
    pub fn parse(name: &str, subject: Option<Uuid>) -> Option<ChangeKind> {
        Some(match (name, subject) {
            ("key_revoked", Some(key_id)) => ChangeKind::KeyRevoked { key_id },
            ("signed_out", _) => ChangeKind::SignedOut,
            ("disabled", _) => ChangeKind::Disabled,
            ("enabled", _) => ChangeKind::Enabled,
            ("token_revoked", Some(jti)) => ChangeKind::TokenRevoked { jti },
            _ => return None,
        })
    }

    /// The key or token the change names, if it names one.
    pub fn subject(&self) -> Option<Uuid> {
        match *self {
            ChangeKind::KeyRevoked { key_id } => Some(key_id),
            ChangeKind::TokenRevoked { jti } => Some(jti),
            _ => None,
        }
    }
}

/// What a verified token says about where it came from.
#[derive(Debug, Clone, Copy)]
pub struct TokenOrigin {
    pub user_id: Uuid,
    /// The key it was minted from; `None` for a password login.
    pub key_id: Option<Uuid>,
    pub jti: Uuid,
    pub issued: Millis,
}

/// What the window holds about one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserCutOff {
    /// Tokens issued at or before this are refused.
    pub before: Millis,
    /// Refused whatever their age: the account's latest disable is newer
    /// (by feed order) than its latest enable.
    pub disabled: bool,
}

/// The one rule: a token is refused if its own id was revoked, if the key it
/// came from was revoked, or if its account was cut off after it was issued
/// (or is disabled).
pub fn covered(
    token: &TokenOrigin,
    user: Option<UserCutOff>,
    key_revoked: bool,
    token_revoked: bool,
) -> bool {
    token_revoked
        || key_revoked
        || user.is_some_and(|cut| cut.disabled || token.issued <= cut.before)
}

/// The changes in force, by what they name.
#[derive(Debug, Clone, Default)]
pub struct Window {
    users: HashMap<Uuid, UserChanges>,
    keys: HashMap<Uuid, Millis>,
    tokens: HashMap<Uuid, Millis>,
}

#[derive(Debug, Clone, Copy)]
struct UserChanges {
    /// The latest sign-out or enable.
    before: Millis,
    /// The feed positions of the latest disable and enable (0: none).
    disabled_seq: i64,
    enabled_seq: i64,
    until: Millis,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.keys.is_empty() && self.tokens.is_empty()
    }

    pub fn len(&self) -> usize {
        self.users.len() + self.keys.len() + self.tokens.len()
    }

    /// Whether any change in the window covers the token.
    pub fn covers(&self, token: &TokenOrigin) -> bool {
        if self.is_empty() {
            return false;
        }
        covered(
            token,
            self.user_cut_off(token.user_id),
            token.key_id.is_some_and(|k| self.keys.contains_key(&k)),
            self.tokens.contains_key(&token.jti),
        )
    }

    pub fn user_cut_off(&self, user_id: Uuid) -> Option<UserCutOff> {
        self.users.get(&user_id).map(|u| UserCutOff {
            before: u.before,
            disabled: u.disabled_seq > u.enabled_seq,
        })
    }

    /// Adds a change, and says whether it was new: whether the window holds
    /// more than before (a key or token it did not name, a later cut-off, a
    /// disable or enable later in feed order). Applying one twice, or older
    /// ones after newer ones, changes nothing more and is not new.
    pub fn apply(&mut self, change: &Change) -> bool {
        let user = || UserChanges {
            before: Millis::MIN,
            disabled_seq: 0,
            enabled_seq: 0,
            until: Millis::MIN,
        };
        let named = |map: &mut HashMap<Uuid, Millis>, id| match map.entry(id) {
            Entry::Occupied(mut held) => {
                let until = held.get_mut();
                *until = (*until).max(change.until);
                false
            }
            Entry::Vacant(empty) => {
                empty.insert(change.until);
                true
            }
        };
        match change.kind {
            ChangeKind::KeyRevoked { key_id } => named(&mut self.keys, key_id),
            ChangeKind::TokenRevoked { jti } => named(&mut self.tokens, jti),
            kind => {
                let u = self.users.entry(change.user_id).or_insert_with(user);
                u.until = u.until.max(change.until);
                let was = (u.before, u.disabled_seq, u.enabled_seq);
                match kind {
                    ChangeKind::SignedOut => u.before = u.before.max(change.at),
                    ChangeKind::Disabled => u.disabled_seq = u.disabled_seq.max(change.seq),
                    ChangeKind::Enabled => {
                        u.enabled_seq = u.enabled_seq.max(change.seq);
                        u.before = u.before.max(change.at);
                    }
                    ChangeKind::KeyRevoked { .. } | ChangeKind::TokenRevoked { .. } => {
                        unreachable!("handled above")
                    }
                }
                (u.before, u.disabled_seq, u.enabled_seq) != was
            }
        }
    }

    /// Forgets what can no longer cover a live token.
    pub fn expire(&mut self, now: Millis) {
        self.users.retain(|_, u| u.until >= now);
        self.keys.retain(|_, until| *until >= now);
        self.tokens.retain(|_, until| *until >= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUED: Millis = 1_000_000;

    fn token(key: Option<Uuid>) -> TokenOrigin {
        TokenOrigin {
            user_id: Uuid::now_v7(),
            key_id: key,
            jti: Uuid::now_v7(),
            issued: ISSUED,
        }
    }

    fn cut(before: Millis, disabled: bool) -> Option<UserCutOff> {
        Some(UserCutOff { before, disabled })
    }

    /// Every combination of the three cut-offs: the user's (none, older than
    /// the token, as old, newer, or a disable), the key's and the token's own.
    #[test]
    fn a_token_is_covered_by_any_cut_off_that_applies_to_it() {
        let users = [
            (None, false),
            (cut(ISSUED - 1, false), false),
            (cut(ISSUED, false), true),
            (cut(ISSUED + 1, false), true),
            (cut(ISSUED - 1, true), true),
            (cut(Millis::MIN, true), true),
        ];
        for (user, user_covers) in users {
            for key_revoked in [false, true] {
                for token_revoked in [false, true] {
                    let expected = user_covers || key_revoked || token_revoked;
                    assert_eq!(
                        covered(
                            &token(Some(Uuid::now_v7())),
                            user,
                            key_revoked,
                            token_revoked
                        ),
                        expected,
                        "user {user:?}, key revoked {key_revoked}, token revoked {token_revoked}"
                    );
                }
            }
        }
    }

    fn change(seq: i64, user_id: Uuid, kind: ChangeKind, at: Millis) -> Change {
        Change {
            seq,
            user_id,
            kind,
            at,
            until: at + 65_000,
        }
    }

    #[test]
    fn a_revoked_key_covers_its_tokens_and_no_others() {
        let key = Uuid::now_v7();
        let t = token(Some(key));
        let mut window = Window::default();
        window.apply(&change(
            1,
            t.user_id,
            ChangeKind::KeyRevoked { key_id: key },
            0,
        ));
        assert!(window.covers(&t));
        assert!(!window.covers(&TokenOrigin {
            key_id: Some(Uuid::now_v7()),
            ..t
        }));
        assert!(!window.covers(&TokenOrigin { key_id: None, ..t }));
    }

    #[test]
    fn a_sign_out_covers_tokens_up_to_its_millisecond_only() {
        let t = token(None);
        let mut window = Window::default();
        window.apply(&change(1, t.user_id, ChangeKind::SignedOut, ISSUED));
        assert!(window.covers(&t));
        assert!(!window.covers(&TokenOrigin {
            issued: ISSUED + 1,
            ..t
        }));
        assert!(!window.covers(&TokenOrigin {
            user_id: Uuid::now_v7(),
            ..t
        }));
    }

    #[test]
    fn a_disable_covers_every_token_until_an_enable_ends_it() {
        let t = token(None);
        let later = TokenOrigin {
            issued: ISSUED + 10,
            ..t
        };
        let disable = change(1, t.user_id, ChangeKind::Disabled, ISSUED + 5);
        let enable = change(2, t.user_id, ChangeKind::Enabled, ISSUED + 7);

        let mut window = Window::default();
        window.apply(&disable);
        assert!(window.covers(&t) && window.covers(&later));
        window.apply(&enable);
        assert!(window.covers(&t), "issued before the enable");
        assert!(!window.covers(&later), "issued after it");

        // The same changes learnt the other way round mean the same.
        let mut reversed = Window::default();
        reversed.apply(&enable);
        reversed.apply(&disable);
        assert_eq!(
            reversed.user_cut_off(t.user_id),
            window.user_cut_off(t.user_id)
        );

        // A disable after the enable (by feed order) is in force again.
        window.apply(&change(3, t.user_id, ChangeKind::Disabled, ISSUED + 8));
        assert!(window.covers(&later));
    }

    #[test]
    fn a_revoked_token_id_covers_that_token_only() {
        let t = token(None);
        let mut window = Window::default();
        window.apply(&change(
            1,
            t.user_id,
            ChangeKind::TokenRevoked { jti: t.jti },
            0,
        ));
        assert!(window.covers(&t));
        assert!(!window.covers(&TokenOrigin {
            jti: Uuid::now_v7(),
            ..t
        }));
    }

    #[test]
    fn a_change_is_new_only_the_first_time_and_only_if_it_adds_something() {
        let user = Uuid::now_v7();
        let key = Uuid::now_v7();
        let jti = Uuid::now_v7();
        let mut window = Window::default();
        let changes = [
            change(1, user, ChangeKind::KeyRevoked { key_id: key }, ISSUED),
            change(2, user, ChangeKind::TokenRevoked { jti }, ISSUED),
            change(3, user, ChangeKind::SignedOut, ISSUED),
            change(4, user, ChangeKind::Disabled, ISSUED + 1),
            change(5, user, ChangeKind::Enabled, ISSUED + 2),
        ];
        for c in &changes {
            assert!(window.apply(c), "{:?} the first time", c.kind);
        }
        // The periodic reload merges them all again.
        for c in &changes {
            assert!(!window.apply(c), "{:?} again", c.kind);
        }
        // A sign-out older than the enable's cut-off adds nothing; a later
        // one, or a disable later in feed order, does.
        assert!(!window.apply(&change(6, user, ChangeKind::SignedOut, ISSUED + 1)));
        assert!(window.apply(&change(7, user, ChangeKind::SignedOut, ISSUED + 3)));
        assert!(window.apply(&change(8, user, ChangeKind::Disabled, ISSUED + 4)));
        // The same key revoked again (a longer life) is not new.
        let again = Change {
            until: ISSUED + 100_000,
            ..change(9, user, ChangeKind::KeyRevoked { key_id: key }, ISSUED)
        };
        assert!(!window.apply(&again));
    }

    #[test]
    fn merging_is_idempotent_and_keeps_the_latest_cut_off() {
        let t = token(None);
        let mut window = Window::default();
        let newer = change(2, t.user_id, ChangeKind::SignedOut, ISSUED + 3);
        let older = change(1, t.user_id, ChangeKind::SignedOut, ISSUED - 3);
        for c in [&newer, &older, &newer] {
            window.apply(c);
        }
        assert_eq!(window.user_cut_off(t.user_id).unwrap().before, ISSUED + 3);
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn expiry_forgets_changes_that_can_cover_no_live_token() {
        let t = token(Some(Uuid::now_v7()));
        let mut window = Window::default();
        window.apply(&change(1, t.user_id, ChangeKind::SignedOut, ISSUED));
        window.apply(&change(
            2,
            t.user_id,
            ChangeKind::KeyRevoked {
                key_id: t.key_id.unwrap(),
            },
            ISSUED,
        ));
        window.apply(&change(
            3,
            t.user_id,
            ChangeKind::TokenRevoked { jti: t.jti },
            ISSUED,
        ));
        window.expire(ISSUED + 65_000);
        assert_eq!(window.len(), 3, "still in force at its last moment");
        window.expire(ISSUED + 65_001);
        assert!(window.is_empty());
    }

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        let id = Uuid::now_v7();
        for kind in [
            ChangeKind::KeyRevoked { key_id: id },
            ChangeKind::SignedOut,
            ChangeKind::Disabled,
            ChangeKind::Enabled,
            ChangeKind::TokenRevoked { jti: id },
        ] {
            assert_eq!(ChangeKind::parse(kind.name(), kind.subject()), Some(kind));
        }
        assert_eq!(ChangeKind::parse("key_revoked", None), None);
        assert_eq!(ChangeKind::parse("unknown", Some(id)), None);
    }
}
