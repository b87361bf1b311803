//! What every request passes through before it reaches an operation.

use std::time::Duration;

use poem::{
    http::{header, Version},
    Body, Endpoint, IntoResponse, Request, Response,
};

use super::oauth;
use crate::error::Error;

/// No request this API takes comes near this; anything larger is refused before
/// it is read.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Refuses a body over [`BODY_LIMIT`]: by its declared length before reading
/// anything, or, for a body of unknown length (HTTP/1.1 chunked, or any
/// HTTP/2 stream), as soon as it passes the limit. HTTP/1.1 requests without a
/// body (most of them) pass untouched. The `413` is RFC 6749's
/// `invalid_request` at the OAuth endpoints, problem+json elsewhere.
pub async fn limit_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let too_large = |path: &str| {
        if oauth::is_endpoint(path) {
            Ok(oauth::body_too_large())
        } else {
            Err(Error::BodyTooLarge.into())
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > BODY_LIMIT as u64 => return too_large(req.uri().path()),
        Some(_) => {}
        None if req.version() >= Version::HTTP_2
            || req.headers().contains_key(header::TRANSFER_ENCODING) =>
        {
            match req.take_body().into_bytes_limit(BODY_LIMIT).await {
                Ok(body) => req.set_body(Body::from(body)),
                Err(_) => return too_large(req.uri().path()),
            }
        }
        None => {}
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// What a client whose request ran out of time is told.
pub const TIMED_OUT: &str = "The request took longer than this server allows. If it changes \
     something, the change may or may not have been made: look before repeating it";

/// Answers `503` with `Retry-After` for a request not answered within
/// `limit`, its body included (a client that sends it slowly holds nothing
/// for longer): RFC 6749's `temporarily_unavailable` at the OAuth endpoints,
/// problem+json elsewhere. The request's work is dropped where it stands.
pub async fn time_limit<E: Endpoint>(
    next: E,
    req: Request,
    limit: Duration,
) -> poem::Result<Response> {
    let oauth = oauth::is_endpoint(req.uri().path());
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(answered) => answered.map(IntoResponse::into_response),
        Err(_) => {
            tracing::warn!(%method, path, ?limit, "request timed out");
            if oauth {
                Ok(oauth::timed_out())
            } else {
                Err(Error::Unavailable(TIMED_OUT).into())
            }
        }
    }
}
