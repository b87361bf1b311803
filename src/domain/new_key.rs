//! What a new API key may be: its name, the scopes it may hold and when it
//! may expire, all checked together so a client learns of every mistake at once.

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

/// A key that may be created.
#[derive(Debug, PartialEq, Eq)]
pub struct ValidKey {
    pub name: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Checks a new key's fields together, so every bad one is reported at once.
/// `allowed` is what the owner's role may hold now.
pub fn validate(new: KeyRequest, allowed: Scopes, now: DateTime<Utc>) -> Result<ValidKey, Error> {
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
    let scopes = match new.scopes {
        None => Scopes::of(&DEFAULT_SCOPES),
        Some(list) => match Scopes::parse_all(list.iter().map(String::as_str)) {
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
            Ok(s) if !s.is_subset_of(allowed) => {
                errors.push(FieldError::new(
                    "scopes",
                    format!("your role does not allow: {}", s.difference(allowed)),
                ));
                s
            }
            Ok(s) => s,
        },
    };
    if new.expires_at.is_some_and(|at| at <= now) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if errors.is_empty() {
        Ok(ValidKey {
            name,
            scopes,
            expires_at: new.expires_at,
        })
    } else {
        Err(Error::Invalid(errors))
    }
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

    fn invalid_fields(result: Result<ValidKey, Error>) -> Vec<&'static str> {
        match result {
            Err(Error::Invalid(fields)) => fields.iter().map(|f| f.field).collect(),
            other => panic!("expected invalid fields, got {other:?}"),
        }
    }

    #[test]
    fn a_key_without_scopes_gets_the_todo_scopes_and_a_trimmed_name() {
        let key = validate(
            request("  ci  ", None),
            Role::User.allowed_scopes(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(key.name, "ci");
        assert_eq!(key.scopes, Scopes::of(&DEFAULT_SCOPES));
        assert_eq!(key.expires_at, None);
    }

    #[test]
    fn a_name_is_1_to_100_characters_after_trimming_without_control_characters() {
        let allowed = Role::User.allowed_scopes();
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
        let user = Role::User.allowed_scopes();
        let now = Utc::now();
        for bad in [&["todos:delete"][..], &[], &["admin"]] {
            assert_eq!(
                invalid_fields(validate(request("k", Some(bad)), user, now)),
                ["scopes"],
                "{bad:?}"
            );
        }
        let admin = validate(
            request("k", Some(&["admin"])),
            Role::Admin.allowed_scopes(),
            now,
        )
        .unwrap();
        assert_eq!(admin.scopes, Scopes::of(&[Scope::Admin]));
    }

    #[test]
    fn an_unknown_scope_s_message_lists_the_known_ones() {
        let Err(Error::Invalid(fields)) = validate(
            request("k", Some(&["todos:delete"])),
            Role::User.allowed_scopes(),
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
            invalid_fields(validate(past, Role::User.allowed_scopes(), now)),
            ["name", "scopes", "expires_at"]
        );
        let mut future = request("k", None);
        future.expires_at = Some(now + Duration::seconds(1));
        assert!(validate(future, Role::User.allowed_scopes(), now).is_ok());
    }
}
