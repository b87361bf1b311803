//! What a new API key may be: its name, the scopes it may hold and when it
//! may expire, all checked together so a client learns of every mistake at once.
//! A credential never makes one with more rights or a longer life than its own.

use chrono::{DateTime, Utc};

use super::scopes::{Scope, Scopes};
use crate::error::{Error, FieldError};

pub const NAME_MAX: usize = 100;
/// What a key holds when its creator names no scopes: enough for the Todo API.
pub const DEFAULT_SCOPES: [Scope; 2] = [Scope::TodosRead, Scope::TodosWrite];

/// A key as asked for.
pub struct KeyRequest {
    pub name: String,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What bounds a new key: the owner's role as it is now, and the token that
/// asks for the key. Without the token's bounds, a key holding only
/// `keys:manage` could mint an `admin` key, and a key expiring in five
/// minutes one that never expires.
#[derive(Debug, Clone, Copy)]
pub struct Creator {
    /// What the owner's role may hold now.
    pub role: Scopes,
    /// What the creating token holds.
    pub token: Scopes,
    /// When the key the creating token was minted from expires: `None` for a
    /// login's token, or a key that never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key that may be created.
#[derive(Debug, PartialEq, Eq)]
pub struct ValidKey {
    pub name: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Checks a new key's fields together, so every bad one is reported at once,
/// then its bounds: first what the request is (`422` for a field no creator
/// could accept), then whether this token may hand on the scopes asked for
/// (`403`), then what the creator's own bounds leave of the key (`400`).
pub fn validate(new: KeyRequest, creator: Creator, now: DateTime<Utc>) -> Result<ValidKey, Error> {
    let mut errors = Vec::new();
    let name = new.name.trim().to_owned();
    let name_len = name.chars().count();
    if name_len == 0 || name_len > NAME_MAX {
        errors.push(FieldError::new(
            "name",
            format!("must be 1 to {NAME_MAX} characters"),
        ));
    } else if super::todos::has_control(&name) {
        errors.push(FieldError::new("name", super::todos::CONTROL_REFUSED));
    }
    let asked = new.scopes.map(
        |list| match Scopes::parse_all(list.iter().map(String::as_str)) {
            Err(e) => {
                errors.push(FieldError::new(
                    "scopes",
                    format!("{e}; known scopes are {}", Scope::listed()),
                ));
                Scopes::NONE
            }
            Ok(s) if s.is_empty() => {
                errors.push(FieldError::new("scopes", "must name at least one scope"));
                s
            }
            Ok(s) if !s.is_subset_of(creator.role) => {
                errors.push(FieldError::new(
                    "scopes",
                    format!("your role does not allow: {}", s.difference(creator.role)),
                ));
                s
            }
            Ok(s) => s,
        },
    );
    if new.expires_at.is_some_and(|at| at <= now) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }

    if let Some(asked) = asked {
        if !asked.is_subset_of(creator.token) {
            return Err(Error::InsufficientScope {
                needed: asked.with(Scope::KeysManage),
                missing: asked.difference(creator.token),
            });
        }
    }
    let scopes = asked.unwrap_or_else(|| {
        Scopes::of(&DEFAULT_SCOPES)
            .intersect(creator.token)
            .intersect(creator.role)
    });
    if scopes.is_empty() {
        errors.push(FieldError::new(
            "scopes",
            format!(
                "must name the scopes the key should hold: the token creating it holds none of \
                 `{}`, which a key gets by default (it holds `{}`)",
                Scopes::of(&DEFAULT_SCOPES),
                creator.token
            ),
        ));
    }
    let expires_at = match (new.expires_at, creator.expires_at) {
        (Some(asked), Some(bound)) if asked > bound => {
            errors.push(FieldError::new(
                "expires_at",
                format!(
                    "must be no later than {}, when the key this token was minted from \
                     expires; leave it out to expire then",
                    bound.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                ),
            ));
            None
        }
        (asked, bound) => asked.or(bound),
    };
    if !errors.is_empty() {
        return Err(Error::BadRequest(errors));
    }
    Ok(ValidKey {
        name,
        scopes,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::scopes::Role;

    fn request(name: &str, scopes: Option<&[&str]>) -> KeyRequest {
        KeyRequest {
            name: name.into(),
            scopes: scopes.map(|s| s.iter().map(|s| (*s).to_owned()).collect()),
            expires_at: None,
        }
    }

    /// A login's token: every scope of the role, and no expiry of its own.
    fn login(role: Role) -> Creator {
        Creator {
            role: role.allowed_scopes(),
            token: role.allowed_scopes(),
            expires_at: None,
        }
    }

    /// A token holding `token` only, minted from a key expiring at `expires_at`.
    fn key_token(role: Role, token: &[Scope], expires_at: Option<DateTime<Utc>>) -> Creator {
        Creator {
            role: role.allowed_scopes(),
            token: Scopes::of(token),
            expires_at,
        }
    }

    fn invalid_fields(result: Result<ValidKey, Error>) -> Vec<&'static str> {
        match result {
            Err(Error::Invalid(fields)) => fields.iter().map(|f| f.field).collect(),
            other => panic!("expected invalid fields, got {other:?}"),
        }
    }

    fn bad_request_fields(result: Result<ValidKey, Error>) -> Vec<&'static str> {
        match result {
            Err(Error::BadRequest(fields)) => fields.iter().map(|f| f.field).collect(),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn a_key_without_scopes_gets_the_todo_scopes_and_a_trimmed_name() {
        let key = validate(request("  ci  ", None), login(Role::User), Utc::now()).unwrap();
        assert_eq!(key.name, "ci");
        assert_eq!(key.scopes, Scopes::of(&DEFAULT_SCOPES));
        assert_eq!(key.expires_at, None);
    }

    #[test]
    fn a_name_is_1_to_100_characters_after_trimming_without_control_characters() {
        let allowed = login(Role::User);
        let now = Utc::now();
        for bad in [
            "",
            "   ",
            &"x".repeat(NAME_MAX + 1),
            "nul\0",
            "two\nlines",
            "tab\tbed",
            "\u{1b}[2Jcleared",
            "c1\u{9b}csi",
        ] {
            assert_eq!(
                invalid_fields(validate(request(bad, None), allowed, now)),
                ["name"]
            );
        }
        assert!(validate(request(&"é".repeat(NAME_MAX), None), allowed, now).is_ok());
    }

    #[test]
    fn scopes_must_be_known_non_empty_and_within_the_role() {
        let user = login(Role::User);
        let now = Utc::now();
        for bad in [&["todos:delete"][..], &[], &["admin"]] {
            assert_eq!(
                invalid_fields(validate(request("k", Some(bad)), user, now)),
                ["scopes"],
                "{bad:?}"
            );
        }
        let admin = validate(request("k", Some(&["admin"])), login(Role::Admin), now).unwrap();
        assert_eq!(admin.scopes, Scopes::of(&[Scope::Admin]));
    }

    #[test]
    fn an_unknown_scope_s_message_lists_the_known_ones() {
        let Err(Error::Invalid(fields)) = validate(
            request("k", Some(&["todos:delete"])),
            login(Role::User),
            Utc::now(),
        ) else {
            panic!("an unknown scope is invalid");
        };
        assert!(fields[0].message.contains(&Scope::listed()));
    }

    #[test]
    fn an_expiry_must_be_in_the_future_and_every_bad_field_is_reported() {
        let now = Utc::now();
        let mut past = request("", Some(&["nope"]));
        past.expires_at = Some(now);
        assert_eq!(
            invalid_fields(validate(past, login(Role::User), now)),
            ["name", "scopes", "expires_at"]
        );
        let mut future = request("k", None);
        future.expires_at = Some(now + Duration::seconds(1));
        assert!(validate(future, login(Role::User), now).is_ok());
    }

    #[test]
    fn asking_for_a_scope_the_token_lacks_is_insufficient_scope_naming_it() {
        let manage_only = key_token(Role::Admin, &[Scope::KeysManage], None);
        for (asked, missing) in [
            (&["admin"][..], Scopes::of(&[Scope::Admin])),
            (&["todos:write"], Scopes::of(&[Scope::TodosWrite])),
            (
                &["keys:manage", "todos:write", "admin"],
                Scopes::of(&[Scope::TodosWrite, Scope::Admin]),
            ),
        ] {
            match validate(request("k", Some(asked)), manage_only, Utc::now()) {
                Err(Error::InsufficientScope {
                    needed,
                    missing: lacked,
                }) => {
                    assert_eq!(lacked, missing, "{asked:?}");
                    assert!(needed.contains(Scope::KeysManage));
                    assert_eq!(needed.difference(Scopes::of(&[Scope::KeysManage])), {
                        Scopes::parse_all(asked.iter().copied())
                            .unwrap()
                            .difference(Scopes::of(&[Scope::KeysManage]))
                    });
                }
                other => panic!("{asked:?}: expected insufficient scope, got {other:?}"),
            }
        }
        let same = validate(
            request("k", Some(&["keys:manage"])),
            manage_only,
            Utc::now(),
        );
        assert_eq!(same.unwrap().scopes, Scopes::of(&[Scope::KeysManage]));
    }

    #[test]
    fn a_field_no_creator_could_accept_is_reported_before_the_token_s_bounds() {
        let manage_only = key_token(Role::User, &[Scope::KeysManage], None);
        assert_eq!(
            invalid_fields(validate(
                request("", Some(&["todos:write"])),
                manage_only,
                Utc::now()
            )),
            ["name"]
        );
        assert_eq!(
            invalid_fields(validate(
                request("k", Some(&["admin"])),
                manage_only,
                Utc::now()
            )),
            ["scopes"],
            "beyond the role is the field's fault, whatever the token holds"
        );
    }

    #[test]
    fn the_default_scopes_are_narrowed_to_the_token_and_nothing_left_asks_for_scopes() {
        let now = Utc::now();
        let read = key_token(Role::User, &[Scope::KeysManage, Scope::TodosRead], None);
        assert_eq!(
            validate(request("k", None), read, now).unwrap().scopes,
            Scopes::of(&[Scope::TodosRead])
        );
        let manage_only = key_token(Role::User, &[Scope::KeysManage], None);
        let result = validate(request("k", None), manage_only, now);
        let Err(Error::BadRequest(fields)) = &result else {
            panic!("nothing is left of the default: {result:?}");
        };
        assert_eq!(fields[0].field, "scopes");
        assert!(fields[0].message.contains("keys:manage"), "{fields:?}");
    }

    #[test]
    fn a_key_made_with_a_key_s_token_expires_no_later_than_that_key() {
        let now = Utc::now();
        let parent_expires = now + Duration::minutes(5);
        let creator = key_token(
            Role::User,
            &[Scope::KeysManage, Scope::TodosRead],
            Some(parent_expires),
        );

        let inherited = validate(request("k", None), creator, now).unwrap();
        assert_eq!(inherited.expires_at, Some(parent_expires));

        let mut sooner = request("k", None);
        sooner.expires_at = Some(now + Duration::minutes(1));
        assert_eq!(
            validate(sooner, creator, now).unwrap().expires_at,
            Some(now + Duration::minutes(1))
        );

        let mut same = request("k", None);
        same.expires_at = Some(parent_expires);
        assert!(validate(same, creator, now).is_ok());

        let mut later = request("k", None);
        later.expires_at = Some(parent_expires + Duration::milliseconds(1));
        assert_eq!(
            bad_request_fields(validate(later, creator, now)),
            ["expires_at"]
        );
    }

    #[test]
    fn a_login_s_key_and_a_never_expiring_key_s_child_may_never_expire() {
        let now = Utc::now();
        assert_eq!(
            validate(request("k", None), login(Role::User), now)
                .unwrap()
                .expires_at,
            None
        );
        let mut far = request("k", None);
        far.expires_at = Some(now + Duration::days(3650));
        let forever = key_token(Role::User, &[Scope::KeysManage, Scope::TodosRead], None);
        assert!(validate(far, forever, now).is_ok());
    }

    #[test]
    fn every_bound_the_request_exceeds_is_reported_at_once() {
        let now = Utc::now();
        let parent_expires = now + Duration::minutes(5);
        let manage_only = key_token(Role::User, &[Scope::KeysManage], Some(parent_expires));
        let mut both = request("k", None);
        both.expires_at = Some(parent_expires + Duration::seconds(1));
        assert_eq!(
            bad_request_fields(validate(both, manage_only, now)),
            ["scopes", "expires_at"]
        );
    }
}
