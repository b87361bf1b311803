//! The error every operation outside the token endpoint returns. Each variant
//! names what went wrong; `http::problem` alone decides its status and body.

use std::borrow::Cow;

use crate::{
    domain::{
        scopes::{Scope, Scopes},
        tokens::TokenError,
    },
    throttle::Throttled,
};

/// One invalid input field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// How a field error travels inside a framework parse error, which carries
/// only a message: `field `name` what is wrong`.
const FIELD_MARKER: &str = "field `";

/// The message a body parser reports for `field`.
pub fn field_message(field: &str, what: &str) -> String {
    format!("{FIELD_MARKER}{field}` {what}")
}

/// The field a parse error names, and what it says of it.
pub fn named_field(message: &str) -> Option<(&str, &str)> {
    let start = message.find(FIELD_MARKER)?;
    let rest = &message[start + FIELD_MARKER.len()..];
    let (field, tail) = rest.split_once('`')?;
    let description = tail
        .split(" (occurred while parsing")
        .next()
        .unwrap_or(tail);
    Some((field, description.trim()))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: the thing does not exist, or belongs to someone else.
    #[error("{0}")]
    NotFound(Cow<'static, str>),
    /// 409: the request clashes with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 422: the request was well-formed but these fields are not acceptable.
    #[error("{} field(s) are invalid", .0.len())]
    Invalid(Vec<FieldError>),
    /// 400: the request is well-formed, but asks for more than the credential
    /// making it can give (a key outliving the key whose token makes it, or
    /// left with no scope); these fields must change.
    #[error("{} field(s) ask for more than the credential can give", .0.len())]
    BadRequest(Vec<FieldError>),
    /// 403 (problem+json): an action this server does not allow anyone right now.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 401 with `WWW-Authenticate: Bearer realm="latchkey"`: no token at all.
    #[error("this operation needs a bearer token")]
    MissingToken,
    /// 401 with `error="invalid_token"`.
    #[error(transparent)]
    InvalidToken(TokenError),
    /// 403 with `error="insufficient_scope"`.
    #[error("the access token lacks the `{0}` scope")]
    MissingScope(Scope),
    /// 403 with `error="insufficient_scope"` and `scope` naming `needed`: the
    /// token asked to hand on scopes it does not hold itself (`missing`).
    #[error("the access token lacks `{missing}`")]
    InsufficientScope { needed: Scopes, missing: Scopes },
    /// 413: the request body is over the limit.
    #[error("the request body is too large")]
    BodyTooLarge,
    /// 429 with `Retry-After`: this client is over one of its abuse limits.
    #[error("too many requests; retry after {}s", .0.retry_after.as_secs())]
    Throttled(Throttled),
    /// 503 with `Retry-After`: a dependency is down or the server is busy.
    #[error("{0}")]
    Unavailable(&'static str),
    /// 503 with `Retry-After`, logged with its cause: the database cannot
    /// take the request now (a full disk, an I/O error); nothing was stored,
    /// unless it stopped answering in the middle (`db::outcome_unknown`).
    #[error("the database cannot take the request now")]
    Storage(#[source] sqlx::Error),
    /// 500, logged with its cause; the client learns nothing of it.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// 500, logged with its cause; the client learns nothing of it.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid(vec![FieldError::new(field, message)])
    }

    /// Whether the database failed the request (answered `503` or `500`).
    pub fn is_database_failure(&self) -> bool {
        matches!(self, Error::Storage(_) | Error::Database(_))
    }
}

/// Both values, or every field error among them, so a client learns of all
/// its mistakes in one round trip.
pub fn both<A, B>(a: Result<A, FieldError>, b: Result<B, FieldError>) -> Result<(A, B), Error> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => Err(Error::Invalid(a.err().into_iter().chain(b.err()).collect())),
    }
}

/// Both values, or every invalid field of both together; any other error
/// as it is.
pub fn together<A, B>(a: Result<A>, b: Result<B>) -> Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(Error::Invalid(mut first)), Err(Error::Invalid(second))) => {
            first.extend(second);
            Err(Error::Invalid(first))
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_message_names_its_field_and_other_messages_none() {
        assert_eq!(
            named_field(&field_message("name", "must be a JSON string")),
            Some(("name", "must be a JSON string"))
        );
        assert_eq!(named_field("no field here"), None);
    }
}
