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
use poem_openapi::{LicenseObject, OpenApi, OpenApiService, ServerObject};
use serde_json::Value;

use self::api::{
    admin::AdminApi, discovery::DiscoveryApi, health::HealthApi, keys::KeysApi, todos::TodosApi,
    token::TokenApi, users::UsersApi,
};
use crate::state::AppState;

/// No request this API takes comes near this; anything larger is refused before
/// it is read.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The base URL the committed spec names: where `cargo run --release` serves.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

/// The OpenAPI service: the operations and the document generated from them,
/// naming `base_url` as the server, so that a client importing the document
/// (Postman, Insomnia) sends its requests there.
pub fn openapi(base_url: &str) -> OpenApiService<impl OpenApi, ()> {
    let apis = (
        UsersApi,
        TokenApi,
        KeysApi,
        TodosApi,
        AdminApi,
        HealthApi,
        DiscoveryApi,
    );
    OpenApiService::new(apis, "latchkey", env!("CARGO_PKG_VERSION"))
        .description(
            "Create an account, log in, create an API key, trade it at `/auth/token` for a \
         one-minute JWT, and call the Todo API with it. Errors are RFC 9457 \
         `application/problem+json`, except on `/auth/token`, which answers RFC 6749 \
         error bodies, and bearer failures carry RFC 6750 `WWW-Authenticate`.",
        )
        .license(LicenseObject::new("MIT OR Apache-2.0"))
        .server(ServerObject::new(base_url).description("latchkey"))
}

/// The document for a server at `base_url`, finished where poem-openapi
/// leaves importers guessing:
/// - operations anyone may call say so with an empty `security` list, or
///   linters and importers cannot tell them from ones whose security was
///   forgotten;
/// - token URLs are absolute, because Postman and Insomnia copy them as they
///   stand and cannot fetch a relative one;
/// - the client-credentials flow comes first, because those importers set up
///   only the first flow, and an API key is what this service is for.
fn document(base_url: &str) -> Value {
    let mut doc: Value =
        serde_json::from_str(&openapi(base_url).spec()).expect("poem-openapi writes JSON");
    let schemes = doc
        .pointer_mut("/components/securitySchemes")
        .and_then(Value::as_object_mut);
    for scheme in schemes.into_iter().flat_map(|s| s.values_mut()) {
        let Some(flows) = scheme.get_mut("flows").and_then(Value::as_object_mut) else {
            continue;
        };
        for flow in flows.values_mut() {
            if let Some(url) = flow.get_mut("tokenUrl") {
                if let Some(path) = url.as_str().filter(|u| u.starts_with('/')) {
                    *url = Value::String(format!("{}{path}", base_url.trim_end_matches('/')));
                }
            }
        }
        if let Some(first) = flows.shift_remove("clientCredentials") {
            let rest = std::mem::take(flows);
            flows.insert("clientCredentials".into(), first);
            flows.extend(rest);
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in operation.values_mut().filter_map(Value::as_object_mut) {
                op.entry("security")
                    .or_insert_with(|| Value::Array(Vec::new()));
            }
        }
    }
    doc
}

/// The spec as JSON, as committed in `openapi/openapi.json`.
pub fn spec_json() -> String {
    spec_json_at(DEFAULT_BASE_URL)
}

/// The spec as YAML, as committed in `openapi/openapi.yaml`.
pub fn spec_yaml() -> String {
    spec_yaml_at(DEFAULT_BASE_URL)
}

/// The spec as JSON for a server at `base_url`, as that server serves it.
pub fn spec_json_at(base_url: &str) -> String {
    serde_json::to_string_pretty(&document(base_url)).expect("a JSON value serialises")
}

/// The spec as YAML for a server at `base_url`, as that server serves it.
pub fn spec_yaml_at(base_url: &str) -> String {
    serde_yaml::to_string(&document(base_url)).expect("a JSON value serialises as YAML")
}

pub fn app(state: Arc<AppState>) -> impl Endpoint {
    let base_url = state.tokens.issuer().trim_end_matches('/').to_owned();
    let json = spec_json_at(&base_url);
    let yaml = spec_yaml_at(&base_url);
    Route::new()
        .nest("/", openapi(&base_url))
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
