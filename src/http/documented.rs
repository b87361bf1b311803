//! The error responses each operation documents in the spec, carried in the
//! type of its handler's error, so the spec cannot forget one.

use std::marker::PhantomData;

use poem_openapi::{
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
    ApiResponse,
};

use serde_json::{json, Map, Value};

use super::{
    middleware::BODY_LIMIT,
    oauth,
    problem::{Problem, PROBLEM_JSON},
};
use crate::error::Error;

/// Why any operation may answer `503` whatever its handler does: the
/// middleware around every route answers it for a request that outlives
/// `--request-timeout`.
const TIMED_OUT: &str = "the request took longer than the request timeout \
    (`--request-timeout`), and a change it asked for may or may not have been made";

/// Why an operation that takes a token may answer `503`: the bearer check
/// answers it with `--revocation-max-lag` set, before the handler runs.
const STALE_FEED: &str = "this server has not heard from its database for longer than \
    `--revocation-max-lag` (when set), so it cannot tell whether the token was revoked";

/// The `431` the connection answers, before any route sees the request, for
/// headers over [`crate::server::MAX_HEADERS_SIZE`]; it has no body.
const HEADERS_TOO_LARGE: &str = "The request's headers are over 16 KiB in all (HTTP/1.1: the \
    request line and headers; HTTP/2: the header list). The answer has no body, and over \
    HTTP/1.1 the connection is closed.";

/// The `415` of a JSON body sent as something else, which poem answers
/// before the handler runs.
const NOT_JSON: &str = "The body is not sent as JSON: send it with \
    `Content-Type: application/json`.";

/// The `400` of a parameter or a body that does not parse, which poem
/// answers before the handler runs.
const MALFORMED: &str = "A parameter or the body is not of its documented type or shape.";

/// What an operation is, as far as the answers it shares with others go.
struct Shape {
    /// It answers RFC 6749 error bodies instead of problem+json.
    oauth: bool,
    takes_body: bool,
    takes_parameters: bool,
    /// It needs a bearer token.
    protected: bool,
}

impl Shape {
    fn of(path: &str, op: &Map<String, Value>) -> Shape {
        let non_empty = |key: &str| {
            op.get(key)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        };
        Shape {
            oauth: oauth::is_endpoint(path),
            takes_body: op.contains_key("requestBody"),
            takes_parameters: non_empty("parameters"),
            protected: non_empty("security"),
        }
    }

    /// The body of its errors: an RFC 6749 one (with the `Cache-Control`
    /// those endpoints send with every answer) or a problem.
    fn error(&self, description: String, retry_after: bool) -> Value {
        let mut headers = Map::new();
        let (content_type, schema) = if self.oauth {
            headers.insert("Cache-Control".into(), header_doc("`no-store`."));
            ("application/json; charset=utf-8", "OAuthError")
        } else {
            (PROBLEM_JSON, "Problem")
        };
        if retry_after {
            headers.insert(
                "Retry-After".into(),
                header_doc("Seconds to wait before trying again."),
            );
        }
        let mut response = json!({
            "description": description,
            "content": { content_type: { "schema": { "$ref": format!("#/components/schemas/{schema}") } } },
        });
        if !headers.is_empty() {
            response["headers"] = Value::Object(headers);
        }
        response
    }
}

fn header_doc(description: &str) -> Value {
    json!({ "description": description, "deprecated": false, "schema": { "type": "string" } })
}

/// Documents on every operation of `doc` what it may answer whatever its
/// handler does, by what the operation is rather than by its name, so that a
/// new operation gets them too:
/// - any operation: the `431` of oversized headers, and the `503` of the
///   request timeout (added to the description of a `503` it documents
///   already);
/// - one that takes a body: the `413` of a body over the limit, the `415` of
///   a body that is not JSON (the OAuth endpoints, which also take forms,
///   answer their `400 invalid_request` instead), and a `400` for a body
///   that does not parse;
/// - one that takes parameters: a `400` for one that does not parse;
/// - one that takes a token: the `503` of a stale revocation feed.
pub fn document_shared(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut().filter_map(Value::as_object_mut) {
            let shape = Shape::of(path, op);
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            if shape.takes_body {
                let too_large = format!(
                    "The request body is over {} KiB; nothing was changed.",
                    BODY_LIMIT / 1024
                );
                responses
                    .entry("413")
                    .or_insert_with(|| shape.error(too_large, false));
                if !shape.oauth {
                    responses
                        .entry("415")
                        .or_insert_with(|| shape.error(NOT_JSON.into(), false));
                }
            }
            if shape.takes_body || shape.takes_parameters {
                responses
                    .entry("400")
                    .or_insert_with(|| shape.error(MALFORMED.into(), false));
            }
            document_unavailable(responses, &shape);
            responses.insert("431".into(), json!({ "description": HEADERS_TOO_LARGE }));
            responses.sort_keys();
        }
    }
}

/// The `503`s that come from around the handler, added to the one the
/// handler documents, or documented on their own.
fn document_unavailable(responses: &mut Map<String, Value>, shape: &Shape) {
    let documented = responses
        .get("503")
        .and_then(|r| r["description"].as_str())
        .map(str::to_owned);
    let mut when = vec![TIMED_OUT];
    if shape.protected
        && !documented
            .as_deref()
            .is_some_and(|d| d.contains("--revocation-max-lag"))
    {
        when.push(STALE_FEED);
    }
    let when = when.join("; or when ");
    match (documented, responses.get_mut("503")) {
        (Some(before), Some(response)) => {
            response["description"] = Value::String(format!("{before} Also when {when}."));
        }
        _ => {
            let description = format!("When {when}. Try again after `Retry-After` seconds.");
            responses.insert("503".into(), shape.error(description, true));
        }
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

impl<D: Documented> From<Failure<D>> for poem::Error {
    fn from(f: Failure<D>) -> Self {
        // In debug builds (the tests), an answer the spec does not document
        // is a bug: it panics, and the request fails with a 500.
        #[cfg(debug_assertions)]
        {
            let status = poem::error::ResponseError::status(&f.0).as_u16();
            assert!(
                D::STATUSES
                    .iter()
                    .any(|&(documented, _)| documented == status),
                "{} does not document the {status} it answered: {}",
                std::any::type_name::<D>(),
                f.0
            );
        }
        poem::Error::from(f.0)
    }
}

fn header(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.into(),
        description: Some(description.into()),
        required: false,
        deprecated: false,
        schema: String::schema_ref(),
    }
}

impl<D: Documented> ApiResponse for Failure<D> {
    fn meta() -> MetaResponses {
        // An operation that documents 401 takes a bearer token, so its 401
        // and 403 carry a challenge; a public one's 403 does not.
        let takes_token = D::STATUSES.iter().any(|s| s.0 == 401);
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
                headers: match status {
                    401 | 403 if status == 401 || takes_token => vec![header(
                        "WWW-Authenticate",
                        "The RFC 6750 bearer challenge, on token and scope failures.",
                    )],
                    429 | 503 => vec![header(
                        "Retry-After",
                        "Seconds to wait before trying again.",
                    )],
                    _ => Vec::new(),
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
            impl $crate::http::documented::Documented for $name {
                const STATUSES: &'static [(u16, &'static str)] = &[$(($status, $description)),*];
            }
        )*
    };
}
pub(crate) use documented;

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    documented! {
        OnlyNotFound {
            404 => "There is no such thing."
        }
    }

    #[test]
    fn a_documented_status_passes() {
        let error = Error::NotFound("There is no such thing".into());
        let answered = poem::Error::from(Failure::<OnlyNotFound>::from(error));
        assert_eq!(answered.status().as_u16(), 404);
    }

    #[test]
    #[should_panic(expected = "does not document the 409 it answered")]
    fn an_undocumented_status_fails_in_debug_builds() {
        let error = Error::Conflict("Taken".into());
        let _ = poem::Error::from(Failure::<OnlyNotFound>::from(error));
    }
}
