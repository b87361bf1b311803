//! The error every handler outside the token endpoint returns. Each variant
//! names what went wrong; `http::problem` alone decides its status and body.

use crate::domain::{scopes::Scope, tokens::TokenError};

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: the thing does not exist, or belongs to someone else.
    #[error("{0}")]
    NotFound(&'static str),
    /// 409: the request clashes with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 422: the request was well-formed but these fields are not acceptable.
    #[error("{} field(s) are invalid", .0.len())]
    Invalid(Vec<FieldError>),
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
    /// 503: a dependency is down.
    #[error("{0}")]
    Unavailable(&'static str),
    /// 500, logged with its cause; the client learns nothing of it.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// 500, logged with its cause; the client learns nothing of it.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid(vec![FieldError::new(field, message)])
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
