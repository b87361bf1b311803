//! The audit log's events and the rules for tallying failures: no I/O.
//!
//! A change (an account registered or updated, a key created or revoked, a
//! signing key rotated, a revocation) is one [`Event`], written in the
//! change's own transaction. Failures and throttled requests are many and
//! cheap to cause, so they are tallied per client address, action and
//! minute in a [`Tally`], which becomes one event with a count: a flood
//! grows a number, not the table.

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{json, Map, Value};
use uuid::{NoContext, Timestamp, Uuid};

use super::{scopes::Role, tokens::Claims};
use crate::error::{Error, FieldError};

/// What an event records. The list is closed: the spec names every action,
/// and a filter on another is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// An account was made, by `POST /users` or `latchkey admin create`.
    UserRegistered,
    /// An admin changed an account's role or disabled flag.
    UserUpdated,
    UserPasswordChanged,
    /// `POST /me/sign-out`.
    UserSignedOut,
    KeyCreated,
    /// By its owner, an admin, or whoever holds it (`POST /auth/revoke`).
    KeyRevoked,
    /// One access token, at `POST /auth/revoke`.
    TokenRevoked,
    /// A signing key made where the keyring had no current key of its
    /// algorithm (a first start, a new `--jwt-alg`).
    SigningKeyCreated,
    SigningKeyRotated,
    /// Tallied: wrong passwords, unknown or disabled accounts.
    LoginFailed,
    /// Tallied: API keys that failed to authenticate a client.
    ExchangeFailed,
    /// Tallied: requests refused for an abuse limit (`429`).
    RequestThrottled,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::UserRegistered,
        Action::UserUpdated,
        Action::UserPasswordChanged,
        Action::UserSignedOut,
        Action::KeyCreated,
        Action::KeyRevoked,
        Action::TokenRevoked,
        Action::SigningKeyCreated,
        Action::SigningKeyRotated,
        Action::LoginFailed,
        Action::ExchangeFailed,
        Action::RequestThrottled,
    ];

    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Action::UserRegistered => "user.registered",
            Action::UserUpdated => "user.updated",
            Action::UserPasswordChanged => "user.password_changed",
            Action::UserSignedOut => "user.signed_out",
            Action::KeyCreated => "key.created",
            Action::KeyRevoked => "key.revoked",
            Action::TokenRevoked => "token.revoked",
            Action::SigningKeyCreated => "signing_key.created",
            Action::SigningKeyRotated => "signing_key.rotated",
            Action::LoginFailed => "login.failed",
            Action::ExchangeFailed => "exchange.failed",
            Action::RequestThrottled => "request.throttled",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The `client_id` of what the command line does.
pub const CLI_CLIENT_ID: &str = "cli";
/// The `client_id` of what a server does by itself (its first signing key).
pub const SERVER_CLIENT_ID: &str = "server";

/// Who caused an event: an account (with the client its token came from,
/// a key id or `password`), the command line or the server itself, from an
/// address when it came over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub client_id: Option<String>,
    /// The client address as the abuse limits count it: an IPv4 address, or
    /// an IPv6 /64.
    pub address: Option<String>,
}

impl Actor {
    pub fn cli() -> Actor {
        Actor {
            client_id: Some(CLI_CLIENT_ID.into()),
            ..Actor::default()
        }
    }

    pub fn server() -> Actor {
        Actor {
            client_id: Some(SERVER_CLIENT_ID.into()),
            ..Actor::default()
        }
    }

    /// Someone who showed no credential, or none that held.
    pub fn anonymous(address: impl fmt::Display) -> Actor {
        Actor {
            address: Some(address.to_string()),
            ..Actor::default()
        }
    }

    /// The holder of a token.
    pub fn holder(claims: &Claims, address: impl fmt::Display) -> Actor {
        Actor {
            user_id: Some(claims.user_id),
            client_id: Some(claims.client_id.clone()),
            address: Some(address.to_string()),
        }
    }

    /// The holder of an API key: the key is its own client.
    pub fn key_holder(key_id: Uuid, owner: Uuid, address: impl fmt::Display) -> Actor {
        Actor {
            user_id: Some(owner),
            client_id: Some(key_id.to_string()),
            address: Some(address.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    User,
    Key,
    Token,
    SigningKey,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::User => "user",
            TargetKind::Key => "key",
            TargetKind::Token => "token",
            TargetKind::SigningKey => "signing_key",
        }
    }

    pub fn parse(name: &str) -> Option<TargetKind> {
        [
            TargetKind::User,
            TargetKind::Key,
            TargetKind::Token,
            TargetKind::SigningKey,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub kind: TargetKind,
    /// A UUID, or a signing key's `kid`.
    pub id: String,
    /// The account the target is, or belongs to: an account sees the
    /// events about its keys and tokens as well as about itself.
    pub account: Option<Uuid>,
}

impl Target {
    pub fn user(id: Uuid) -> Target {
        Target {
            kind: TargetKind::User,
            id: id.to_string(),
            account: Some(id),
        }
    }

    pub fn key(id: Uuid, owner: Uuid) -> Target {
        Target {
            kind: TargetKind::Key,
            id: id.to_string(),
            account: Some(owner),
        }
    }

    pub fn token(jti: Uuid, owner: Uuid) -> Target {
        Target {
            kind: TargetKind::Token,
            id: jti.to_string(),
            account: Some(owner),
        }
    }

    pub fn signing_key(kid: &str) -> Target {
        Target {
            kind: TargetKind::SigningKey,
            id: kid.to_owned(),
            account: None,
        }
    }
}

/// One entry of the audit log. Never holds a secret: keys are named by
/// their id, or an unknown one by a fingerprint of its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// A UUIDv7 made from `at`, so that id order is time order.
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub action: Action,
    pub actor: Actor,
    pub target: Option<Target>,
    /// A JSON object.
    pub details: Value,
}

impl Event {
    /// An event happening now. `details` is a JSON object (`json!({})` for
    /// nothing more to say).
    pub fn now(action: Action, actor: Actor, target: Option<Target>, details: Value) -> Event {
        Event::at(Utc::now(), action, actor, target, details)
    }

    pub fn at(
        at: DateTime<Utc>,
        action: Action,
        actor: Actor,
        target: Option<Target>,
        details: Value,
    ) -> Event {
        // Stored to the millisecond, as every time is.
        let at = at.trunc_subsecs(3);
        Event {
            id: id_at(at),
            at,
            action,
            actor,
            target,
            details,
        }
    }
}

/// A UUIDv7 whose time is `at`.
fn id_at(at: DateTime<Utc>) -> Uuid {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(
        NoContext,
        secs,
        at.timestamp_subsec_nanos(),
    ))
}

/// Which events a page of the log holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub action: Option<Action>,
    /// Events whose actor is this account, or whose target is it or one of
    /// its keys or tokens.
    pub user_id: Option<Uuid>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    /// The filter that query parameters ask for, reporting every bad one at
    /// once.
    pub fn parse(
        action: Option<&str>,
        user_id: Option<&str>,
        since: Option<&str>,
    ) -> Result<Filter, Error> {
        let mut errors = Vec::new();
        let action = action.and_then(|a| {
            let parsed = Action::parse(a);
            if parsed.is_none() {
                let names: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
                let message = format!("must be one of {}", names.join(", "));
                errors.push(FieldError::new("action", message));
            }
            parsed
        });
        let user_id = user_id.and_then(|id| {
            let parsed = Uuid::parse_str(id).ok();
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "user_id",
                    "must be an account's id, a UUID",
                ));
            }
            parsed
        });
        let since = since.and_then(|at| {
            let parsed = DateTime::parse_from_rfc3339(at).ok();
            if parsed.is_none() {
                let message = "must be an RFC 3339 time such as 2030-01-01T00:00:00Z";
                errors.push(FieldError::new("since", message));
            }
            parsed.map(|at| at.with_timezone(&Utc))
        });
        if errors.is_empty() {
            Ok(Filter {
                action,
                user_id,
                since,
            })
        } else {
            Err(Error::Invalid(errors))
        }
    }
}

// ---- what changes record ----

pub fn registered(role: Role) -> Value {
    json!({ "role": role.as_str() })
}

/// What an admin's update changed, `None` if nothing: an update that
/// changes nothing is no event.
pub fn updated(before: (Role, bool), after: (Role, bool)) -> Option<Value> {
    let mut changed = Map::new();
    if before.0 != after.0 {
        changed.insert(
            "role".into(),
            json!({ "from": before.0.as_str(), "to": after.0.as_str() }),
        );
    }
    if before.1 != after.1 {
        changed.insert(
            "disabled".into(),
            json!({ "from": before.1, "to": after.1 }),
        );
    }
    (!changed.is_empty()).then_some(Value::Object(changed))
}

/// Who revoked a key, as `key.revoked` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// `DELETE /keys/{id}`.
    Owner,
    /// `DELETE /admin/keys/{id}`.
    Admin,
    /// Whoever held the key, at `POST /auth/revoke`.
    Holder,
}

/// `owner`: whose key it was, which the actor (an admin) need not be.
pub fn key_revoked(by: RevokedBy, owner: Uuid) -> Value {
    let by = match by {
        RevokedBy::Owner => "owner",
        RevokedBy::Admin => "admin",
        RevokedBy::Holder => "holder",
    };
    json!({ "by": by, "owner": owner })
}

/// `covers`: `token`, or `account` when the account held so many single
/// revocations that this one signed it out instead.
pub fn token_revoked(whole_account: bool) -> Value {
    json!({ "covers": if whole_account { "account" } else { "token" } })
}

// ---- failures, tallied ----

/// Why a login failed. An unknown account names no target: what was typed
/// as its email is never kept (people type passwords there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    UnknownAccount,
    WrongPassword,
    /// The account is disabled, whatever the password.
    DisabledAccount,
    /// A wrong `current_password` at `PUT /me/password`.
    WrongCurrentPassword,
}

/// Why an API key failed to authenticate a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeFailure {
    /// Not an API key at all (it fails the format or its checksum): named
    /// by nothing, since it may be a password sent in the wrong field.
    MalformedKey,
    /// A well-formed key this server does not know: named by a fingerprint.
    UnknownKey,
    RevokedKey,
    ExpiredKey,
    /// The key's owner is disabled.
    DisabledOwner,
    /// The request's `client_id` is not the key's id.
    WrongClientId,
}

/// Which abuse limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    KeyFailures,
    LoginFailures,
    Registrations,
}

/// One failure, as it is tallied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub action: Action,
    reason: &'static str,
    target: Option<Target>,
    fingerprint: Option<String>,
}

impl Failure {
    /// A failed login; `account` when it names one that exists.
    pub fn login(why: LoginFailure, account: Option<Uuid>) -> Failure {
        let reason = match why {
            LoginFailure::UnknownAccount => "unknown_account",
            LoginFailure::WrongPassword => "wrong_password",
            LoginFailure::DisabledAccount => "disabled_account",
            LoginFailure::WrongCurrentPassword => "wrong_current_password",
        };
        Failure {
            action: Action::LoginFailed,
            reason,
            target: account.map(Target::user),
            fingerprint: None,
        }
    }

    /// A key that failed to authenticate: `key` is the key's id and owner
    /// when it is known, `fingerprint` its fingerprint when it is unknown.
    pub fn exchange(
        why: ExchangeFailure,
        key: Option<(Uuid, Uuid)>,
        fingerprint: Option<String>,
    ) -> Failure {
        let reason = match why {
            ExchangeFailure::MalformedKey => "malformed_key",
            ExchangeFailure::UnknownKey => "unknown_key",
            ExchangeFailure::RevokedKey => "revoked_key",
            ExchangeFailure::ExpiredKey => "expired_key",
            ExchangeFailure::DisabledOwner => "disabled_owner",
            ExchangeFailure::WrongClientId => "wrong_client_id",
        };
        Failure {
            action: Action::ExchangeFailed,
            reason,
            target: key.map(|(id, owner)| Target::key(id, owner)),
            fingerprint,
        }
    }

    /// A request refused for `limit`; `account` when the caller is known
    /// (a token holder), never looked up for it.
    pub fn throttled(limit: Limit, account: Option<Uuid>) -> Failure {
        let reason = match limit {
            Limit::KeyFailures => "key_failures",
            Limit::LoginFailures => "login_failures",
            Limit::Registrations => "registrations",
        };
        Failure {
            action: Action::RequestThrottled,
            reason,
            target: account.map(Target::user),
            fingerprint: None,
        }
    }
}

/// How many distinct targets, and fingerprints, a tally lists; the rest are
/// only counted, so a tally stays small whatever a flood sends.
pub const LISTED: usize = 10;

/// The minute an instant falls in, as tallies are keyed.
pub fn minute(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The failures of one client address, action and minute: one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// The event's id, the same at every write of the tally, so that its
    /// event is replaced rather than repeated as the count grows.
    pub id: Uuid,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub count: u64,
    reasons: BTreeMap<&'static str, u64>,
    targets: Vec<(Target, u64)>,
    fingerprints: Vec<String>,
    /// Failures whose target or fingerprint went unlisted.
    unlisted: u64,
}

impl Tally {
    pub fn new(at: DateTime<Utc>) -> Tally {
        let at = at.trunc_subsecs(3);
        Tally {
            id: id_at(at),
            first_at: at,
            last_at: at,
            count: 0,
            reasons: BTreeMap::new(),
            targets: Vec::new(),
            fingerprints: Vec::new(),
            unlisted: 0,
        }
    }

    pub fn add(&mut self, failure: &Failure, at: DateTime<Utc>) {
        self.count += 1;
        self.last_at = self.last_at.max(at.trunc_subsecs(3));
        *self.reasons.entry(failure.reason).or_default() += 1;
        let mut unlisted = false;
        if let Some(target) = &failure.target {
            let listed = self.targets.len();
            match self.targets.iter_mut().find(|(t, _)| t == target) {
                Some((_, n)) => *n += 1,
                None if listed < LISTED => self.targets.push((target.clone(), 1)),
                None => unlisted = true,
            }
        }
        if let Some(fingerprint) = &failure.fingerprint {
            if !self.fingerprints.contains(fingerprint) {
                if self.fingerprints.len() < LISTED {
                    self.fingerprints.push(fingerprint.clone());
                } else {
                    unlisted = true;
                }
            }
        }
        self.unlisted += u64::from(unlisted);
    }

    /// The event the tally is, as of now. Its target is the one target the
    /// failures named, if they named exactly one; `details.targets` lists
    /// them otherwise.
    pub fn event(&self, action: Action, address: Option<String>) -> Event {
        let target = match self.targets.as_slice() {
            [(only, _)] if self.unlisted == 0 => Some(only.clone()),
            _ => None,
        };
        let mut details = Map::new();
        details.insert("count".into(), json!(self.count));
        details.insert("last_at".into(), json!(self.last_at));
        details.insert("reasons".into(), json!(self.reasons));
        if target.is_none() && !self.targets.is_empty() {
            let listed: Vec<Value> = self
                .targets
                .iter()
                .map(|(t, n)| json!({ "type": t.kind.name(), "id": t.id, "count": n }))
                .collect();
            details.insert("targets".into(), Value::Array(listed));
        }
        if !self.fingerprints.is_empty() {
            details.insert("fingerprints".into(), json!(self.fingerprints));
        }
        if self.unlisted > 0 {
            details.insert("unlisted".into(), json!(self.unlisted));
        }
        Event {
            id: self.id,
            at: self.first_at,
            action,
            actor: Actor {
                address,
                ..Actor::default()
            },
            target,
            details: Value::Object(details),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_name_that_parses_back() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
        assert_eq!(Action::parse("user.deleted"), None);
        assert_eq!(Action::parse("USER.REGISTERED"), None);
    }

    #[test]
    fn a_filter_reads_its_parameters_and_names_every_bad_one() {
        let ada = Uuid::now_v7();

        let good = Filter::parse(
            Some("key.revoked"),
            Some(&ada.to_string()),
            Some("2030-01-01T01:00:00+01:00"),
        );
        let bad = Filter::parse(Some("key.deleted"), Some("ada"), Some("yesterday"));

        assert_eq!(
            good.unwrap(),
            Filter {
                action: Some(Action::KeyRevoked),
                user_id: Some(ada),
                since: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            }
        );
        let Err(Error::Invalid(fields)) = bad else {
            panic!("every parameter is bad");
        };
        let names: Vec<_> = fields.iter().map(|f| f.field).collect();
        assert_eq!(names, ["action", "user_id", "since"]);
        assert!(fields[0].message.contains("user.registered"));
        assert_eq!(Filter::parse(None, None, None).unwrap(), Filter::default());
    }

    #[test]
    fn an_event_id_sorts_with_its_time() {
        let earlier = Utc::now() - chrono::Duration::minutes(5);
        let first = Event::at(earlier, Action::KeyCreated, Actor::cli(), None, json!({}));
        let second = Event::now(Action::KeyCreated, Actor::cli(), None, json!({}));

        assert!(first.id < second.id);
        assert_eq!(first.at, earlier.trunc_subsecs(3));
    }

    #[test]
    fn an_update_that_changes_nothing_is_no_event() {
        assert_eq!(updated((Role::User, false), (Role::User, false)), None);
        assert_eq!(
            updated((Role::User, false), (Role::Admin, true)),
            Some(json!({
                "role": { "from": "user", "to": "admin" },
                "disabled": { "from": false, "to": true },
            }))
        );
    }

    #[test]
    fn a_tally_counts_each_reason_and_names_its_one_target() {
        let ada = Uuid::now_v7();
        let now = Utc::now();
        let mut tally = Tally::new(now);
        tally.add(&Failure::login(LoginFailure::WrongPassword, Some(ada)), now);
        tally.add(&Failure::login(LoginFailure::WrongPassword, Some(ada)), now);
        tally.add(&Failure::login(LoginFailure::UnknownAccount, None), now);

        let event = tally.event(Action::LoginFailed, Some("192.0.2.1".into()));

        assert_eq!(event.id, tally.id);
        assert_eq!(event.target, Some(Target::user(ada)));
        assert_eq!(event.actor, Actor::anonymous("192.0.2.1"));
        assert_eq!(event.details["count"], 3);
        assert_eq!(
            event.details["reasons"],
            json!({ "unknown_account": 1, "wrong_password": 2 })
        );
        assert!(event.details.get("targets").is_none());
    }

    #[test]
    fn a_tally_of_many_targets_lists_a_few_and_counts_the_rest() {
        let now = Utc::now();
        let mut tally = Tally::new(now);
        for _ in 0..LISTED + 5 {
            let key = (Uuid::now_v7(), Uuid::now_v7());
            tally.add(
                &Failure::exchange(ExchangeFailure::RevokedKey, Some(key), None),
                now,
            );
            let fingerprint = Uuid::now_v7().simple().to_string();
            tally.add(
                &Failure::exchange(ExchangeFailure::UnknownKey, None, Some(fingerprint)),
                now,
            );
        }

        let event = tally.event(Action::ExchangeFailed, None);

        assert_eq!(event.target, None);
        assert_eq!(event.details["count"], 2 * (LISTED + 5));
        assert_eq!(event.details["targets"].as_array().unwrap().len(), LISTED);
        assert_eq!(
            event.details["fingerprints"].as_array().unwrap().len(),
            LISTED
        );
        assert_eq!(event.details["unlisted"], 10);
    }

    #[test]
    fn the_same_fingerprint_is_listed_once() {
        let now = Utc::now();
        let mut tally = Tally::new(now);
        let unknown = Failure::exchange(ExchangeFailure::UnknownKey, None, Some("ab12".into()));
        tally.add(&unknown, now);
        tally.add(&unknown, now + chrono::Duration::seconds(3));

        let event = tally.event(Action::ExchangeFailed, None);

        assert_eq!(event.details["fingerprints"], json!(["ab12"]));
        assert_eq!(event.at, now.trunc_subsecs(3));
        assert_eq!(
            event.details["last_at"],
            json!((now + chrono::Duration::seconds(3)).trunc_subsecs(3))
        );
    }

    #[test]
    fn minutes_start_on_the_minute() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:41:59.999Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = DateTime::parse_from_rfc3339("2026-12-03T10:42:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(minute(at) + 1, minute(next));
    }
}
