//! The HTTP surface: the routes and what wraps them. The operations are in
//! `api`, the document in `spec`, and `problem` turns every error into its
//! response.

pub mod api;
pub mod auth;
pub mod client;
pub mod docs;
pub mod documented;
pub mod fields;
pub mod middleware;
pub mod oauth;
pub mod problem;
pub mod schema_rules;
pub mod spec;
pub mod token_request;
pub mod types;

use std::sync::Arc;

use poem::{
    endpoint::make_sync, get, middleware::CatchPanic, Endpoint, EndpointExt, IntoResponse, Route,
};

use self::problem::Routes;
use crate::state::AppState;

pub fn app(state: Arc<AppState>) -> impl Endpoint {
    let request_timeout = state.limits.request_timeout;
    let base_url = state.tokens.issuer().trim_end_matches('/').to_owned();
    let doc = spec::document(&base_url);
    let (json, yaml) = (spec::to_json(&doc), spec::to_yaml(&doc));
    // Every route below that the document does not list, for a 405 to name.
    let others = ["/openapi.json", "/openapi.yaml"].map(|path| (path.into(), vec!["GET".into()]));
    let routes = Arc::new(Routes::new(
        spec::operations(&doc).into_iter().chain(others),
    ));
    Route::new()
        .nest("/", spec::service(&base_url))
        .at(
            "/openapi.json",
            get(make_sync(move |_| {
                json.clone().with_content_type("application/json")
            })),
        )
        .at(
            "/openapi.yaml",
            get(make_sync(move |_| {
                yaml.clone().with_content_type("application/yaml")
            })),
        )
        .at("/docs", get(docs::docs_redirect))
        .at("/docs/", get(docs::swagger_ui.data(docs::config())))
        .at("/docs/*file", get(docs::swagger_ui.data(docs::config())))
        .data(state)
        .around(middleware::limit_body)
        .around(move |next, req| middleware::time_limit(next, req, request_timeout))
        .around(move |next, req| problem::problems(next, req, Arc::clone(&routes)))
        .with(CatchPanic::new().with_handler(|_| problem::panicked()))
}
