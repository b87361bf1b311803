//! The metrics listener (`--metrics-bind`): `GET /metrics` and nothing
//! else, on an address of its own, so the series never reach the API's
//! clients.

use std::sync::Arc;

use poem::{get, handler, web::Data, Endpoint, EndpointExt, IntoResponse, Response, Route};

use super::problem;
use crate::state::AppState;

/// What prometheus-client writes: OpenMetrics text, which Prometheus asks for.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn app(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at("/metrics", get(scrape))
        .data(state)
        .catch_all_error(problem::not_metrics)
}

/// Every series, with the gauges that are read rather than counted brought
/// up to date first.
#[handler]
fn scrape(state: Data<&Arc<AppState>>) -> Response {
    state.metrics.set_revocation_lag(state.revocations.lag());
    for pool in state.db.connections() {
        state
            .metrics
            .set_connections(pool.pool, pool.in_use, pool.idle, pool.max);
    }
    state
        .metrics
        .encode()
        .with_content_type(CONTENT_TYPE)
        .into_response()
}
