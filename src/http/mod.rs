//! The HTTP surface: the OpenAPI operations, the spec, Swagger UI, and the
//! middleware every request passes.

pub mod api;
pub mod auth;
pub mod docs;
pub mod fields;
pub mod problem;

use std::sync::Arc;

use poem::{
    endpoint::make_sync,
    get,
    http::{header, StatusCode, Version},
    middleware::CatchPanic,
    Body, Endpoint, EndpointExt, IntoResponse, Request, Route,
};
use poem_openapi::OpenApiService;

use self::api::{
    admin::AdminApi, health::HealthApi, keys::KeysApi, todos::TodosApi, token::TokenApi,
    users::UsersApi,
};
use crate::state::AppState;

/// No request this API takes comes near this; anything larger is refused before
/// it is read.
pub const BODY_LIMIT: usize = 64 * 1024;

pub type Apis = (UsersApi, TokenApi, KeysApi, TodosApi, AdminApi, HealthApi);

/// The OpenAPI service: the operations and the document generated from them.
pub fn openapi() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (UsersApi, TokenApi, KeysApi, TodosApi, AdminApi, HealthApi),
        "latchkey",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Create an account, log in, create an API key, trade it at `/auth/token` for a \
         one-minute JWT, and call the Todo API with it. Errors are RFC 9457 \
         `application/problem+json`, except on `/auth/token`, which answers RFC 6749 \
         error bodies, and bearer failures carry RFC 6750 `WWW-Authenticate`.",
    )
}

/// The spec as JSON, as served and as committed in `openapi/openapi.json`.
pub fn spec_json() -> String {
    openapi().spec()
}

/// The spec as YAML, as served and as committed in `openapi/openapi.yaml`.
pub fn spec_yaml() -> String {
    openapi().spec_yaml()
}

pub fn app(state: Arc<AppState>) -> impl Endpoint {
    let json = spec_json();
    let yaml = spec_yaml();
    Route::new()
        .nest("/", openapi())
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
        .around(limit_body)
        .around(problem::problems)
        .with(CatchPanic::new().with_handler(|_| {
            problem::problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server failed to handle this request; the error has been logged.",
            )
            .into_response()
        }))
}

/// Refuses a body over [`BODY_LIMIT`] with `413`: by its declared length before
/// reading anything, or, for a body of unknown length (HTTP/1.1 chunked, or any
/// HTTP/2 stream), as soon as it passes the limit. HTTP/1.1 requests without a
/// body (most of them) pass untouched.
async fn limit_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<poem::Response> {
    let too_large = || poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > BODY_LIMIT as u64 => return Err(too_large()),
        Some(_) => {}
        None if req.version() >= Version::HTTP_2
            || req.headers().contains_key(header::TRANSFER_ENCODING) =>
        {
            let body = req
                .take_body()
                .into_bytes_limit(BODY_LIMIT)
                .await
                .map_err(|_| too_large())?;
            req.set_body(Body::from(body));
        }
        None => {}
    }
    next.call(req).await.map(IntoResponse::into_response)
}
