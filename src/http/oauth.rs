//! RFC 6749 §5.2 error bodies, which the token, revocation and introspection
//! endpoints answer instead of problem+json: OAuth clients parse these.

use poem::{
    http::{header, StatusCode},
    IntoResponse, Response,
};
use poem_openapi::{payload::Json, Object};

use super::problem::RETRY_AFTER_SECS;
use crate::throttle::Throttled;

/// RFC 6749 §5.2.
#[derive(Debug, Object)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type`, `invalid_scope`, `too_many_requests`,
    /// `temporarily_unavailable` or `server_error`.
    pub error: String,
    pub error_description: String,
}

/// Every answer of these endpoints: a token or a client's secret must not
/// sit in a cache.
pub const NO_STORE: &str = "no-store";

/// The endpoints that answer these bodies.
pub const ENDPOINTS: [&str; 3] = ["/auth/token", "/auth/revoke", "/auth/introspect"];

pub fn is_endpoint(path: &str) -> bool {
    ENDPOINTS.contains(&path)
}

/// RFC 6749 §5.2's challenge for a client that failed HTTP Basic.
pub const BASIC_CHALLENGE: &str = r#"Basic realm="latchkey", charset="UTF-8""#;

pub fn error(error: &str, description: impl Into<String>) -> Json<OAuthError> {
    Json(OAuthError {
        error: error.into(),
        error_description: description.into(),
    })
}

/// The database cannot answer now; the cause is logged, not sent.
pub fn temporarily_unavailable(cause: &anyhow::Error) -> Json<OAuthError> {
    tracing::warn!(error = format!("{cause:#}"), "storage unavailable");
    error(
        "temporarily_unavailable",
        "The server cannot reach its database right now; retry after the time in Retry-After.",
    )
}

/// The client address is over its budget of failures.
pub fn too_many_requests(throttled: &Throttled) -> Json<OAuthError> {
    error(
        "too_many_requests",
        format!(
            "Too many failed attempts from your address; retry in {} seconds (Retry-After).",
            throttled.retry_after.as_secs()
        ),
    )
}

/// The argon2 queue is full.
pub fn busy() -> Json<OAuthError> {
    error(
        "temporarily_unavailable",
        "Too many password checks are waiting on this server; retry after the time in Retry-After.",
    )
}

/// A failure of the server's own; the cause is logged, not sent.
pub fn server_error(cause: &anyhow::Error) -> Json<OAuthError> {
    tracing::error!(error = ?cause, "OAuth request failed");
    error(
        "server_error",
        "The server failed; the error has been logged.",
    )
}

/// The body is over [`super::middleware::BODY_LIMIT`]: the `413` these
/// endpoints document.
pub fn body_too_large() -> Response {
    error(
        "invalid_request",
        format!(
            "The request body is over {} KiB; no OAuth request comes near that.",
            super::middleware::BODY_LIMIT / 1024
        ),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    .with_header(header::CACHE_CONTROL, NO_STORE)
    .into_response()
}

/// The request took longer than the server allows: the `503` these
/// endpoints document, with its `Retry-After`.
pub fn timed_out() -> Response {
    error(
        "temporarily_unavailable",
        format!(
            "{}; retry after the time in Retry-After.",
            super::middleware::TIMED_OUT
        ),
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .with_header(header::CACHE_CONTROL, NO_STORE)
    .with_header(header::RETRY_AFTER, RETRY_AFTER_SECS)
    .into_response()
}
