//! Swagger UI, served from the assets compiled into the binary.

use std::{borrow::Cow, sync::Arc};

use anyhow::anyhow;
use poem::{handler, http::header, web::Data, IntoResponse, Request, Response};
use utoipa_swagger_ui::Config;

use crate::error::Error;

/// Swagger UI reads the spec from `/openapi.json`; its Authorize button uses the
/// spec's OAuth2 flows, so a key id and key (client credentials) or an email and
/// password fetch a token from `/auth/token` with no further setup.
///
/// Authorization is not persisted: Swagger UI would keep the API key or the
/// password in the browser's local storage, in plain text, for a token that
/// lives a minute.
///
/// The online validator is off: it would send the spec's URL to swagger.io
/// and show its badge from there, which the page's Content Security Policy
/// refuses.
pub fn config() -> Arc<Config<'static>> {
    Arc::new(
        Config::new(["/openapi.json"])
            .display_operation_id(true)
            .try_it_out_enabled(true)
            .validator_url("none"),
    )
}

#[handler]
pub fn swagger_ui(req: &Request, config: Data<&Arc<Config<'static>>>) -> poem::Result<Response> {
    let file = req.uri().path().strip_prefix("/docs/").unwrap_or_default();
    match utoipa_swagger_ui::serve(file, Arc::clone(&config)) {
        Ok(Some(file)) => Ok(Response::builder()
            .header(header::CONTENT_TYPE, file.content_type)
            .body(file.bytes.into_owned())),
        Ok(None) => {
            Err(Error::NotFound(Cow::Owned(format!("Swagger UI has no file /docs/{file}"))).into())
        }
        Err(e) => Err(Error::Internal(anyhow!("serving Swagger UI: {e}")).into()),
    }
}

/// `/docs` to `/docs/`, so the page's relative asset paths resolve.
#[handler]
pub fn docs_redirect() -> impl IntoResponse {
    poem::web::Redirect::permanent("/docs/")
}
