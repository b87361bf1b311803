//! The HTTP surface: the routes and what wraps them. The operations are in
//! `api`, the document in `spec`, `problem` turns every error into its
//! response, and `observe` logs, times and tags every request. The metrics
//! listener's own app is `metrics`.

pub mod api;
pub mod auth;
pub mod client;
pub mod cors;
pub mod docs;
pub mod documented;
pub mod fields;
pub mod headers;
pub mod metrics;
pub mod middleware;
pub mod oauth;
pub mod observe;
pub mod problem;
pub mod routes;
pub mod schema_rules;
pub mod spec;
pub mod token_request;
pub mod types;

use std::sync::Arc;

use poem::{
    endpoint::make_sync, get, middleware::CatchPanic, Endpoint, EndpointExt, IntoResponse, Route,
};

use self::{headers::SecurityHeaders, observe::Observer, routes::Routes, spec::Spec};
use crate::state::AppState;

pub fn app(state: Arc<AppState>) -> impl Endpoint {
    let request_timeout = state.limits.request_timeout;
    let cors = Arc::clone(&state.cors);
    let security = Arc::new(SecurityHeaders::new(state.tokens.issuer()));
    let base_url = state.tokens.issuer().trim_end_matches('/').to_owned();
    let spec = Arc::new(Spec::new(base_url.clone()));
    let yaml_spec = Arc::clone(&spec);
    // Every route below that the document does not list, for a 405 and the
    // request log to name.
    let others = [
        "/openapi.json",
        "/openapi.yaml",
        "/docs",
        "/docs/",
        "/docs/{file}",
    ]
    .map(|path| (path.into(), vec!["GET".into()]));
    let routes = Arc::new(Routes::new(spec::operations().into_iter().chain(others)));
    let observer = Arc::new(Observer::new(Arc::clone(&state), Arc::clone(&routes)));
    let metrics = Arc::clone(&state.metrics);
    Route::new()
        .nest("/", spec::service(&base_url))
        .at(
            "/openapi.json",
            get(make_sync(move |_| {
                spec.json().to_owned().with_content_type("application/json")
            })),
        )
        .at(
            "/openapi.yaml",
            get(make_sync(move |_| {
                yaml_spec
                    .yaml()
                    .to_owned()
                    .with_content_type("application/yaml")
            })),
        )
        .at("/docs", get(docs::docs_redirect))
        .at("/docs/", get(docs::swagger_ui.data(docs::config())))
        .at("/docs/*file", get(docs::swagger_ui.data(docs::config())))
        .data(state)
        .around(middleware::limit_body)
        .around(move |next, req| middleware::time_limit(next, req, request_timeout))
        .around(move |next, req| {
            problem::problems(next, req, Arc::clone(&routes), Arc::clone(&metrics))
        })
        .with(CatchPanic::new().with_handler(|_| problem::panicked()))
        // Around everything else, so that every answer gets them, a
        // preflight's too; the request log outermost sees what was sent.
        .around(move |next, req| cors::cors(next, req, Arc::clone(&cors)))
        .around(move |next, req| headers::security_headers(next, req, Arc::clone(&security)))
        .around(move |next, req| observe::observe(next, req, Arc::clone(&observer)))
}
