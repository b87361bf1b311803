//! Errors to HTTP: the only place a status is chosen. RFC 9457 problem+json
//! for everything but the token endpoint, with RFC 6750 `WWW-Authenticate`
//! on bearer failures; the framework's own rejections are rewritten to match.

use std::{fmt, sync::Arc};

use poem::{
    error::ResponseError,
    http::{header, HeaderValue, Method, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};
use poem_openapi::{types::ToJSON, Object};

use super::routes::Routes;
use crate::{
    db,
    domain::tokens::TokenError,
    error::{self, Error},
    telemetry::metrics::{Metrics, Verification},
};

pub const PROBLEM_JSON: &str = "application/problem+json";
const REALM: &str = "latchkey";
/// How long a client should wait before it tries again after a `503`.
pub const RETRY_AFTER_SECS: &str = "5";

/// An RFC 9457 problem details object.
#[derive(Debug, Object)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` means the status says it all.
    #[oai(rename = "type")]
    pub kind: String,
    /// The status code's reason phrase.
    pub title: String,
    pub status: u16,
    /// What was wrong, in a sentence, and how to fix it.
    pub detail: String,
    /// The invalid fields, when the request named some.
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<InvalidField>>,
}

#[derive(Debug, Object)]
pub struct InvalidField {
    /// The field's name as sent, e.g. `title` or `expires_at`.
    pub field: String,
    pub message: String,
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    problem_with(status, detail.into(), None)
}

fn problem_with(status: StatusCode, detail: String, errors: Option<Vec<InvalidField>>) -> Response {
    let body = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        errors,
    };
    Response::builder()
        .status(status)
        .content_type(PROBLEM_JSON)
        .body(body.to_json_string())
}

fn invalid_fields(fields: &[error::FieldError]) -> Vec<InvalidField> {
    fields
        .iter()
        .map(|f| InvalidField {
            field: f.field.into(),
            message: f.message.clone(),
        })
        .collect()
}

fn bearer_challenge(extra: Option<String>) -> HeaderValue {
    let value = match extra {
        None => format!(r#"Bearer realm="{REALM}""#),
        Some(extra) => format!(r#"Bearer realm="{REALM}", {extra}"#),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn with_header(mut resp: Response, name: header::HeaderName, value: HeaderValue) -> Response {
    resp.headers_mut().insert(name, value);
    resp
}

const SERVER_FAILED: &str = "The server failed to handle this request; the error has been logged.";

impl ResponseError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) | Error::MissingScope(_) | Error::InsufficientScope { .. } => {
                StatusCode::FORBIDDEN
            }
            Error::MissingToken | Error::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Error::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) | Error::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let status = self.status();
        match self {
            Error::Invalid(fields) => {
                let names: Vec<_> = fields.iter().map(|f| format!("`{}`", f.field)).collect();
                let detail = format!(
                    "The request has invalid fields: {}. Correct them and try again.",
                    names.join(", ")
                );
                problem_with(status, detail, Some(invalid_fields(fields)))
            }
            Error::BadRequest(fields) => {
                let what: Vec<_> = fields
                    .iter()
                    .map(|f| format!("`{}` {}", f.field, f.message))
                    .collect();
                let detail = format!(
                    "The request asks for more than the credential making it can give: {}.",
                    what.join("; ")
                );
                problem_with(status, detail, Some(invalid_fields(fields)))
            }
            Error::MissingToken => with_header(
                problem(
                    status,
                    "This operation needs an access token: send `Authorization: Bearer <token>`, \
                     with a token from POST /auth/token.",
                ),
                header::WWW_AUTHENTICATE,
                bearer_challenge(None),
            ),
            Error::InvalidToken(e) => {
                let description = match e {
                    TokenError::Expired => "The access token expired",
                    _ => "The access token is invalid",
                };
                with_header(
                    problem(status, format!("{e}.")),
                    header::WWW_AUTHENTICATE,
                    bearer_challenge(Some(format!(
                        r#"error="invalid_token", error_description="{description}""#
                    ))),
                )
            }
            Error::MissingScope(scope) => with_header(
                problem(
                    status,
                    format!(
                        "The access token lacks the `{scope}` scope. Exchange a key that holds it, \
                         asking for `scope={scope}`."
                    ),
                ),
                header::WWW_AUTHENTICATE,
                bearer_challenge(Some(format!(
                    r#"error="insufficient_scope", scope="{scope}""#
                ))),
            ),
            Error::InsufficientScope { needed, missing } => with_header(
                problem(
                    status,
                    format!(
                        "The access token lacks `{missing}`: a token can hand on only scopes it \
                         holds. Ask for fewer scopes, or use a token that holds `{needed}` (a \
                         login gets every scope of your role)."
                    ),
                ),
                header::WWW_AUTHENTICATE,
                bearer_challenge(Some(format!(
                    r#"error="insufficient_scope", error_description="The access token lacks {missing}", scope="{needed}""#
                ))),
            ),
            Error::BodyTooLarge => problem(
                status,
                "The request body is larger than this server accepts.",
            ),
            Error::Storage(e) => with_header(
                problem(
                    status,
                    if db::outcome_unknown(e) {
                        "The database stopped answering while handling this request. If the \
                         request changes something, the change may or may not have been made: \
                         look before repeating it. The error has been logged; try again later."
                    } else {
                        "The database cannot store or read anything right now; nothing was \
                         changed. The error has been logged; try again later."
                    },
                ),
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            ),
            Error::Throttled(throttled) => with_header(
                problem(
                    status,
                    format!(
                        "Too many attempts from your address; try again in {} seconds \
                         (`Retry-After`).",
                        throttled.retry_after.as_secs()
                    ),
                ),
                header::RETRY_AFTER,
                HeaderValue::from(throttled.retry_after.as_secs()),
            ),
            Error::Unavailable(what) => with_header(
                problem(status, format!("{what}.")),
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            ),
            Error::Database(_) | Error::Internal(_) => problem(status, SERVER_FAILED),
            Error::NotFound(what) => problem(status, format!("{what}.")),
            Error::Conflict(what) => problem(status, format!("{what}.")),
            Error::Forbidden(what) => problem(status, format!("{what}.")),
        }
    }
}

/// The answer to a request whose handler panicked (the panic itself is
/// reported by the panic hook).
pub fn panicked() -> Response {
    tracing::error!("a request handler panicked");
    problem(StatusCode::INTERNAL_SERVER_ERROR, SERVER_FAILED)
}

/// Wraps the whole app: every error that escapes a handler or the framework
/// becomes problem+json, and internal errors are logged and counted here,
/// once.
pub async fn problems<E: Endpoint>(
    next: E,
    req: Request,
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match next.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => Ok(render(err, &method, &path, &routes, &metrics)),
    }
}

fn render(
    err: poem::Error,
    method: &Method,
    path: &str,
    routes: &Routes,
    metrics: &Metrics,
) -> Response {
    if let Some(e) = err.downcast_ref::<Error>() {
        if e.is_database_failure() {
            metrics.database_error();
        }
        if matches!(
            e,
            Error::Database(_) | Error::Storage(_) | Error::Internal(_)
        ) {
            tracing::error!(error = %ErrorChain(e), %method, path, "request failed");
        }
        return e.as_response();
    }
    // Neither security scheme found a bearer token (a token that is there
    // is counted by its check, in `auth`).
    if err.is::<poem_openapi::error::AuthorizationError>() {
        metrics.verification(Verification::Missing);
        return Error::MissingToken.as_response();
    }
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(error = %err, %method, path, "request failed");
        return problem(StatusCode::INTERNAL_SERVER_ERROR, SERVER_FAILED);
    }
    let detail = match status {
        StatusCode::NOT_FOUND if err.is::<poem::error::NotFoundError>() => {
            format!("There is no route {method} {path}. The API is described at /openapi.json.")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = routes.allowed(path).join(", ");
            let resp = problem(
                status,
                format!(
                    "{path} does not accept {method}; it accepts {allowed}. The API is described at /openapi.json."
                ),
            );
            return match HeaderValue::from_str(&allowed) {
                Ok(value) => with_header(resp, header::ALLOW, value),
                Err(_) => resp,
            };
        }
        StatusCode::BAD_REQUEST if err.is::<poem_openapi::error::ParsePathError>() => {
            format!("{path} has a malformed id: ids are UUIDs such as 01890a5d-ac96-774b-bcce-b302099a8057.")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!(
            "{}. Send the body as JSON, with `Content-Type: application/json`.",
            err.to_string().trim_end_matches('.')
        ),
        StatusCode::PAYLOAD_TOO_LARGE => return Error::BodyTooLarge.as_response(),
        _ => {
            let message = err.to_string();
            if let Some((field, what)) = error::named_field(&message) {
                return problem_with(
                    status,
                    format!("The request body is invalid: `{field}` {what}."),
                    Some(vec![InvalidField {
                        field: field.into(),
                        message: what.into(),
                    }]),
                );
            }
            format!("{}.", redact_values(&message).trim_end_matches('.'))
        }
    };
    problem(status, detail)
}

/// What the metrics listener answers to anything but `GET /metrics`.
pub async fn not_metrics(err: poem::Error) -> Response {
    if err.status() == StatusCode::METHOD_NOT_ALLOWED {
        with_header(
            problem(StatusCode::METHOD_NOT_ALLOWED, "/metrics accepts GET only."),
            header::ALLOW,
            HeaderValue::from_static("GET"),
        )
    } else {
        problem(
            StatusCode::NOT_FOUND,
            "This listener serves only GET /metrics; the API is on the other one.",
        )
    }
}

/// Parse errors quote the offending value ("found 12345678"); that value may
/// be a secret sent in the wrong field, so it is cut out.
fn redact_values(message: &str) -> String {
    let Some(start) = message.find(", found ") else {
        return message.to_owned();
    };
    let end = message[start..]
        .find(". (occurred while parsing")
        .map_or(message.len(), |i| start + i);
    format!("{}{}", &message[..start], &message[end..])
}

/// Formats an error with its chain of causes, for the log.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_cut_from_parse_errors() {
        let msg = r#"parse request payload error: Expected input type "string", found 12345678. (occurred while parsing "NewUser")"#;
        assert_eq!(
            redact_values(msg),
            r#"parse request payload error: Expected input type "string". (occurred while parsing "NewUser")"#
        );
        assert_eq!(
            redact_values(r#"Expected input type "boolean", found "s3cret"."#),
            r#"Expected input type "boolean""#
        );
        assert_eq!(redact_values("no value here"), "no value here");
    }
}
