//! What every request leaves behind, whatever its answer: an `X-Request-Id`
//! on the response, one line in the request log (target `request`), and its
//! duration in the request histogram. It wraps everything else, so a
//! timeout, a panic or an unknown route is seen with the status the client
//! got.
//!
//! The log line names the route by its template and never the path or
//! query (ids, cursors, and whatever a client puts there), nor a header or
//! a body: `/auth/token` takes keys and passwords in both.

use std::{sync::Arc, time::Instant};

use poem::{
    http::{header::HeaderName, HeaderMap, HeaderValue},
    Endpoint, IntoResponse, Request, Response,
};
use tracing::Instrument;
use uuid::Uuid;

use super::{client, routes::Routes};
use crate::{
    state::AppState,
    telemetry::metrics::{self, RequestDurations, UNMATCHED},
};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id a client may choose.
pub const MAX_REQUEST_ID: usize = 128;

pub struct Observer {
    state: Arc<AppState>,
    routes: Arc<Routes>,
    durations: RequestDurations,
}

impl Observer {
    pub fn new(state: Arc<AppState>, routes: Arc<Routes>) -> Observer {
        let durations = state.metrics.request_durations(routes.templates());
        Observer {
            state,
            routes,
            durations,
        }
    }
}

pub async fn observe<E: Endpoint>(
    next: E,
    req: Request,
    observer: Arc<Observer>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id(req.headers());
    let id_text = id.to_str().unwrap_or_default();
    let route = observer.routes.find(req.uri().path());
    let method = req.method().clone();
    let client = client::address(&req, &observer.state);
    // Whatever else is logged while the request runs carries its id.
    let span = tracing::info_span!(target: "request", "request", request_id = id_text);
    let mut resp = match next.call(req).instrument(span).await {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    };
    let took = started.elapsed();
    resp.headers_mut().insert(REQUEST_ID, id.clone());
    observer
        .durations
        .observe(route, &method, resp.status(), took);
    tracing::info!(
        target: "request",
        method = metrics::method_label(&method),
        route = route.map_or(UNMATCHED, |r| observer.routes.template(r)),
        status = resp.status().as_u16(),
        // To the microsecond: finer is noise.
        duration_ms = took.as_micros() as f64 / 1000.0,
        request_id = id_text,
        client = %client,
        "answered"
    );
    Ok(resp)
}

/// The client's `X-Request-Id` when it is 1 to [`MAX_REQUEST_ID`] visible
/// ASCII characters (so it is safe to log and to echo), else a new UUIDv7.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|value| acceptable(value.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&Uuid::now_v7().to_string())
                .expect("a UUID is a valid header value")
        })
}

fn acceptable(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(sent: Option<&[u8]>) -> HeaderValue {
        let mut headers = HeaderMap::new();
        if let Some(sent) = sent {
            headers.insert(REQUEST_ID, HeaderValue::from_bytes(sent).unwrap());
        }
        request_id(&headers)
    }

    #[test]
    fn a_visible_ascii_id_of_up_to_128_characters_is_kept_and_any_other_replaced() {
        let longest = "x".repeat(MAX_REQUEST_ID);
        for kept in ["a", "req-42", "~!#$%&'*+.^_`|", longest.as_str()] {
            assert_eq!(id_for(Some(kept.as_bytes())), kept);
        }
        let too_long = "x".repeat(MAX_REQUEST_ID + 1);
        for replaced in [
            too_long.as_bytes(),
            b"",
            b"with space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ] {
            let id = id_for(Some(replaced));
            let uuid = Uuid::parse_str(id.to_str().unwrap()).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{replaced:?}");
        }
        let generated = id_for(None);
        assert_eq!(
            Uuid::parse_str(generated.to_str().unwrap())
                .unwrap()
                .get_version_num(),
            7
        );
    }
}
