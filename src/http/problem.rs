//! Errors to HTTP: the only place a status is chosen. RFC 9457 problem+json
//! for everything but the token endpoint, with RFC 6750 `WWW-Authenticate`
//! on bearer failures; the framework's own rejections are rewritten to match.

use std::{fmt, marker::PhantomData, sync::OnceLock};

use poem::{
    error::ResponseError,
    http::{header, HeaderValue, Method, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};
use poem_openapi::{
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::{ToJSON, Type},
    ApiResponse, Object,
};

use super::fields;
use crate::{domain::tokens::TokenError, error::Error};

pub const PROBLEM_JSON: &str = "application/problem+json";
const REALM: &str = "latchkey";

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

pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
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

fn bearer_challenge(extra: Option<String>) -> HeaderValue {
    let value = match extra {
        None => format!(r#"Bearer realm="{REALM}""#),
        Some(extra) => format!(r#"Bearer realm="{REALM}", {extra}"#),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn with_challenge(mut resp: Response, challenge: HeaderValue) -> Response {
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    resp
}

impl ResponseError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Forbidden(_) | Error::MissingScope(_) => StatusCode::FORBIDDEN,
            Error::MissingToken | Error::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
                let errors = fields
                    .iter()
                    .map(|f| InvalidField {
                        field: f.field.into(),
                        message: f.message.clone(),
                    })
                    .collect();
                problem_with(status, detail, Some(errors))
            }
            Error::MissingToken => with_challenge(
                problem(
                    status,
                    "This operation needs an access token: send `Authorization: Bearer <token>`, \
                     with a token from POST /auth/token.",
                ),
                bearer_challenge(None),
            ),
            Error::InvalidToken(e) => {
                let description = match e {
                    TokenError::Expired => "The access token expired",
                    _ => "The access token is invalid",
                };
                with_challenge(
                    problem(status, format!("{e}.")),
                    bearer_challenge(Some(format!(
                        r#"error="invalid_token", error_description="{description}""#
                    ))),
                )
            }
            Error::MissingScope(scope) => with_challenge(
                problem(
                    status,
                    format!(
                        "The access token lacks the `{scope}` scope. Exchange a key that holds it, \
                         asking for `scope={scope}`."
                    ),
                ),
                bearer_challenge(Some(format!(
                    r#"error="insufficient_scope", scope="{scope}""#
                ))),
            ),
            Error::Database(_) | Error::Internal(_) => problem(
                status,
                "The server failed to handle this request; the error has been logged.",
            ),
            Error::NotFound(what) => problem(status, format!("{what}.")),
            Error::Conflict(what) => problem(status, format!("{what}.")),
            Error::Forbidden(what) | Error::Unavailable(what) => {
                problem(status, format!("{what}."))
            }
        }
    }
}

/// Wraps the whole app: every error that escapes a handler or the framework
/// becomes problem+json, and internal errors are logged here, once.
pub async fn problems<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match next.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => Ok(render(err, &method, &path)),
    }
}

fn render(err: poem::Error, method: &Method, path: &str) -> Response {
    if let Some(e) = err.downcast_ref::<Error>() {
        if matches!(e, Error::Database(_) | Error::Internal(_)) {
            tracing::error!(error = %ErrorChain(e), %method, path, "request failed");
        }
        return e.as_response();
    }
    if err.is::<poem_openapi::error::AuthorizationError>() {
        return Error::MissingToken.as_response();
    }
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(error = %err, %method, path, "request failed");
        return Error::Internal(anyhow::anyhow!("framework error")).as_response();
    }
    let detail = match status {
        StatusCode::NOT_FOUND if err.is::<poem::error::NotFoundError>() => {
            format!("There is no route {method} {path}. The API is described at /openapi.json.")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = allowed_methods(path);
            let mut resp = problem(
                status,
                format!(
                    "{path} does not accept {method}; it accepts {}. The API is described at /openapi.json.",
                    allowed.join(", ")
                ),
            );
            // RFC 9110 §15.5.6: a 405 names the methods the resource supports.
            if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, value);
            }
            return resp;
        }
        StatusCode::BAD_REQUEST if err.is::<poem_openapi::error::ParsePathError>() => {
            format!("{path} has a malformed id: ids are UUIDs such as 01890a5d-ac96-774b-bcce-b302099a8057.")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!(
            "{}. Send the body as JSON, with `Content-Type: application/json`.",
            err.to_string().trim_end_matches('.')
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "The request body is larger than this server accepts.".to_owned()
        }
        _ => {
            let message = err.to_string();
            if let Some((field, what)) = fields::named_field(&message) {
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

/// The methods the spec lists for the path template `path` matches. Only
/// asked on a 405, so the spec is read once, on the first one.
fn allowed_methods(path: &str) -> Vec<String> {
    static ROUTES: OnceLock<Vec<(Vec<String>, Vec<String>)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(&super::spec_json()).unwrap_or_default();
        let mut routes: Vec<_> = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(template, ops)| {
                let segments = template.split('/').map(str::to_owned).collect();
                let methods = ops
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(m, _)| m.to_uppercase())
                    .collect();
                (segments, methods)
            })
            .collect();
        routes.extend([
            (
                vec![String::new(), "openapi.json".into()],
                vec!["GET".into()],
            ),
            (
                vec![String::new(), "openapi.yaml".into()],
                vec!["GET".into()],
            ),
        ]);
        routes
    });
    let segments: Vec<&str> = path.split('/').collect();
    routes
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')))
        })
        .map(|(_, methods)| methods.clone())
        .unwrap_or_else(|| vec!["GET".into()])
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

/// The error statuses an operation documents, each with what it means there.
pub trait Documented: Send + Sync + 'static {
    const STATUSES: &'static [(u16, &'static str)];
}

/// A handler's error, carrying in its type the responses it documents.
pub struct Failure<D>(pub Error, PhantomData<D>);

impl<D> From<Error> for Failure<D> {
    fn from(e: Error) -> Self {
        Failure(e, PhantomData)
    }
}

impl<D> From<sqlx::Error> for Failure<D> {
    fn from(e: sqlx::Error) -> Self {
        Failure(e.into(), PhantomData)
    }
}

impl<D> From<anyhow::Error> for Failure<D> {
    fn from(e: anyhow::Error) -> Self {
        Failure(e.into(), PhantomData)
    }
}

impl<D> From<Failure<D>> for poem::Error {
    fn from(f: Failure<D>) -> Self {
        poem::Error::from(f.0)
    }
}

impl<D: Documented> ApiResponse for Failure<D> {
    fn meta() -> MetaResponses {
        let responses = D::STATUSES
            .iter()
            .map(|&(status, description)| MetaResponse {
                description,
                status: Some(status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: PROBLEM_JSON,
                    schema: Problem::schema_ref(),
                }],
                // An operation that documents 401 takes a bearer token, so its
                // 401 and 403 carry a challenge; a public one's 403 does not.
                headers: if status == 401
                    || (status == 403 && D::STATUSES.iter().any(|s| s.0 == 401))
                {
                    vec![MetaHeader {
                        name: "WWW-Authenticate".into(),
                        description: Some(
                            "The RFC 6750 bearer challenge, on token and scope failures.".into(),
                        ),
                        required: false,
                        deprecated: false,
                        schema: String::schema_ref(),
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

/// Declares a set of documented error responses.
macro_rules! documented {
    ($($name:ident { $($status:literal => $description:literal),* $(,)? })*) => {
        $(
            pub struct $name;
            impl $crate::http::problem::Documented for $name {
                const STATUSES: &'static [(u16, &'static str)] = &[$(($status, $description)),*];
            }
        )*
    };
}
pub(crate) use documented;

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
