//! Wire types that several operations share.

use std::{borrow::Cow, marker::PhantomData};

use chrono::{DateTime, Utc};
use poem_openapi::{
    param::Query,
    registry::{MetaSchemaRef, Registry},
    types::{ParseError, ParseFromParameter, ParseResult, Type},
    Enum, Object,
};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    db,
    domain::{
        pages::{KEYS_LIMIT_DEFAULT, LIMIT_DEFAULT},
        scopes::Role,
    },
    error::field_message,
};

/// For `#[oai(default)]` on a list's `limit`, so the spec states the
/// default `domain::pages` takes when it is left out.
pub fn page_size() -> Option<i64> {
    Some(LIMIT_DEFAULT.into())
}

/// Like [`page_size`], for the lists of keys.
pub fn key_page_size() -> Option<i64> {
    Some(KEYS_LIMIT_DEFAULT.into())
}

/// An account.
#[derive(Debug, Object)]
pub struct User {
    pub id: Uuid,
    /// Lower-cased.
    pub email: String,
    pub role: RoleName,
    /// A disabled account can neither log in nor exchange its keys.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<db::users::User> for User {
    fn from(u: db::users::User) -> Self {
        User {
            id: u.id,
            email: u.email,
            role: u.role.into(),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// `user` may hold `todos:read`, `todos:write` and `keys:manage`; `admin` also `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RoleName {
    User,
    Admin,
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::User => RoleName::User,
            Role::Admin => RoleName::Admin,
        }
    }
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::User => Role::User,
            RoleName::Admin => Role::Admin,
        }
    }
}

impl RoleName {
    /// For `#[oai(deserialize_with)]`: only the two role names, and a message
    /// naming the field for anything else.
    pub fn parse_field(value: Option<Value>) -> ParseResult<Option<RoleName>> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s == "user" => Ok(Some(RoleName::User)),
            Some(Value::String(s)) if s == "admin" => Ok(Some(RoleName::Admin)),
            Some(_) => Err(ParseError::custom(field_message(
                "role",
                "must be \"user\" or \"admin\"",
            ))),
        }
    }
}

/// An API key's record. The key itself is never shown again after creation.
#[derive(Debug, Object)]
pub struct Key {
    /// Also the `client_id` for the client-credentials grant.
    pub id: Uuid,
    pub name: String,
    /// `lk_…` and the key's last four characters.
    pub hint: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Updated within a few seconds of each exchange.
    #[oai(nullable)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<db::keys::Key> for Key {
    fn from(k: db::keys::Key) -> Self {
        Key {
            id: k.id,
            name: k.name,
            hint: k.hint,
            scopes: k.scopes.names(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A page of keys.
#[derive(Debug, Object)]
pub struct KeyPage {
    /// Oldest first, revoked and expired keys included.
    pub items: Vec<Key>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

impl KeyPage {
    pub fn of((keys, next_cursor): (Vec<db::keys::Key>, Option<String>)) -> KeyPage {
        KeyPage {
            items: keys.into_iter().map(Key::from).collect(),
            next_cursor,
        }
    }
}

/// A query parameter documented as a `T`, but taken as the text sent, so
/// that the handler reads it and a bad value is a `422` naming the
/// parameter, as a bad `limit` is, rather than the framework's `400`.
pub struct Lenient<T>(String, PhantomData<T>);

impl<T> Lenient<T> {
    /// The text of an optional parameter.
    pub fn text(param: &Query<Option<Lenient<T>>>) -> Option<&str> {
        param.0.as_ref().map(|lenient| lenient.0.as_str())
    }
}

impl<T: Type> Type for Lenient<T> {
    const IS_REQUIRED: bool = true;

    type RawValueType = String;

    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl<T: Type> ParseFromParameter for Lenient<T> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Lenient(value.to_owned(), PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_role_is_one_of_the_two_names() {
        assert!(RoleName::parse_field(Some(json!("boss"))).is_err());
        assert!(RoleName::parse_field(Some(json!(1))).is_err());
        assert_eq!(
            RoleName::parse_field(Some(json!("admin"))).unwrap(),
            Some(RoleName::Admin)
        );
        assert_eq!(RoleName::parse_field(None).unwrap(), None);
    }
}
