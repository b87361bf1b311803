//! Strict parsing of JSON body fields, naming the field in every error.
//!
//! poem-openapi turns a JSON number or boolean into a `String` field (so
//! `{"password": 12345678}` would be taken), and its missing-field errors do
//! not say which field. Body fields that people or scripts type go through
//! these instead (a form's fields are strings already).

use chrono::{DateTime, Utc};
use poem_openapi::types::{ParseError, ParseResult};
use serde_json::Value;

use crate::error::field_message;

fn required_string(field: &str, value: Option<Value>) -> ParseResult<String> {
    match value {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ParseError::custom(field_message(
            field,
            "is required and must be a JSON string",
        ))),
        Some(_) => Err(ParseError::custom(field_message(
            field,
            "must be a JSON string",
        ))),
    }
}

fn optional_string(field: &str, value: Option<Value>) -> ParseResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::custom(field_message(
            field,
            "must be a JSON string",
        ))),
    }
}

fn optional_bool(field: &str, value: Option<Value>) -> ParseResult<Option<bool>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ParseError::custom(field_message(
            field,
            "must be true or false",
        ))),
    }
}

/// One parser per field, for `#[oai(deserialize_with = "…")]`, which passes
/// only the value.
macro_rules! field_parsers {
    ($($parser:ident: $kind:ident $ty:ty = $field:literal;)*) => {
        $(
            pub fn $parser(value: Option<Value>) -> ParseResult<$ty> {
                $kind($field, value)
            }
        )*
    };
}

field_parsers! {
    email: required_string String = "email";
    password: required_string String = "password";
    current_password: required_string String = "current_password";
    new_password: required_string String = "new_password";
    name: required_string String = "name";
    title: required_string String = "title";
    optional_title: optional_string Option<String> = "title";
    completed: optional_bool Option<bool> = "completed";
    disabled: optional_bool Option<bool> = "disabled";
    // The OAuth endpoints' JSON bodies.
    grant_type: required_string String = "grant_type";
    client_id: optional_string Option<String> = "client_id";
    client_secret: optional_string Option<String> = "client_secret";
    username: optional_string Option<String> = "username";
    login_password: optional_string Option<String> = "password";
    scope: optional_string Option<String> = "scope";
    token: optional_string Option<String> = "token";
    token_type_hint: optional_string Option<String> = "token_type_hint";
}

pub fn expires_at(value: Option<Value>) -> ParseResult<Option<DateTime<Utc>>> {
    let bad = || {
        ParseError::custom(field_message(
            "expires_at",
            "must be an RFC 3339 time such as 2030-01-01T00:00:00Z",
        ))
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_json_string_is_a_string() {
        assert_eq!(title(Some(json!("milk"))).unwrap(), "milk");
        assert!(title(Some(json!(5))).is_err());
        assert!(title(Some(json!(true))).is_err());
        assert!(title(None).is_err());
        assert_eq!(optional_title(None).unwrap(), None);
        assert!(optional_title(Some(json!(1))).is_err());
        assert!(completed(Some(json!("yes"))).is_err());
        assert!(expires_at(Some(json!("tomorrow"))).is_err());
        assert!(expires_at(Some(json!("2030-01-01T00:00:00Z")))
            .unwrap()
            .is_some());
    }

    #[test]
    fn errors_name_their_field() {
        let message = title(None).unwrap_err().into_message();
        assert_eq!(
            crate::error::named_field(&format!("{message} (occurred while parsing \"NewTodo\")")),
            Some(("title", "is required and must be a JSON string"))
        );
    }
}
