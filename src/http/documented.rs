//! The error responses each operation documents in the spec, carried in the
//! type of its handler's error, so the spec cannot forget one.

use std::marker::PhantomData;

use poem_openapi::{
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
    ApiResponse,
};

use serde_json::{json, Value};

use super::problem::{Problem, PROBLEM_JSON};
use crate::error::Error;

/// The `503` of a request that outlives `--request-timeout`, which the
/// middleware around every route answers, not a handler.
const TIMED_OUT: &str = "The request took longer than the request timeout \
    (`--request-timeout`); if it changes something, the change may or may not have been \
    made. Try again after `Retry-After` seconds.";

/// The `431` the connection answers, before any route sees the request, for
/// headers over [`crate::server::MAX_HEADERS_SIZE`]; it has no body.
const HEADERS_TOO_LARGE: &str = "The request's headers are over 16 KiB in all (HTTP/1.1: the \
    request line and headers; HTTP/2: the header list). The answer has no body, and over \
    HTTP/1.1 the connection is closed.";

/// Documents on every operation of `doc` what any of them may answer
/// whatever its handler does: the `431` of oversized headers, and the `503`
/// of the request timeout (where an operation already documents a `503`,
/// its description says so too; elsewhere it is added as problem+json).
pub fn document_shared(doc: &mut Value) {
    let operations = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|ops| ops.values_mut());
    for op in operations {
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        match responses.get_mut("503") {
            Some(documented) => {
                let before = documented["description"].as_str().unwrap_or_default();
                let also = format!("{before} Also: {}", TIMED_OUT.replacen("The", "the", 1));
                documented["description"] = Value::String(also);
            }
            None => {
                responses.insert(
                    "503".into(),
                    json!({
                        "description": TIMED_OUT,
                        "content": {
                            PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } }
                        },
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before trying again.",
                                "deprecated": false,
                                "schema": { "type": "string" }
                            }
                        }
                    }),
                );
            }
        }
        responses.insert("431".into(), json!({ "description": HEADERS_TOO_LARGE }));
        responses.sort_keys();
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
