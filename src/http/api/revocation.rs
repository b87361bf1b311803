//! Ending tokens before they expire: RFC 7009 revocation, RFC 7662
//! introspection for services that verify elsewhere, and signing out.

use std::sync::Arc;

use poem::{web::Data, Request};
use poem_openapi::{
    payload::{Form, Json},
    ApiRequest, ApiResponse, Object, OpenApi,
};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use crate::{
    error::Error,
    http::{
        auth::Auth,
        client,
        documented::{documented, Failure},
        fields,
        oauth::{self, OAuthError, NO_STORE},
        problem::RETRY_AFTER_SECS,
        token_request::{self, Refusal},
        types::RoleName,
    },
    service::{accounts, revocation, token::ExchangeError},
    state::AppState,
};

#[derive(Default)]
pub struct RevocationApi;

/// An RFC 7009 revocation request. Send it form-encoded (the standard) or as JSON.
// No `Debug`: it holds a token or a key.
#[derive(Object, Deserialize)]
pub struct RevocationRequest {
    /// The access token or the API key to revoke. A key is revoked with every
    /// token it minted.
    #[oai(write_only, deserialize_with = "fields::token")]
    pub token: Option<String>,
    /// `access_token` or `api_key`. Optional: the two are told apart by their
    /// form, so the hint changes nothing.
    #[oai(deserialize_with = "fields::token_type_hint")]
    pub token_type_hint: Option<String>,
}

#[derive(ApiRequest)]
pub enum RevocationBody {
    Form(Form<RevocationRequest>),
    Json(Json<RevocationRequest>),
}

/// An RFC 7662 introspection request, from a client that authenticates with
/// its API key (HTTP Basic, or `client_secret` in the body).
// No `Debug`: it holds a token and a key.
#[derive(Object, Deserialize)]
pub struct IntrospectionRequest {
    /// The access token to look at.
    #[oai(write_only, deserialize_with = "fields::token")]
    pub token: Option<String>,
    /// `access_token`, if sent; only access tokens are introspected.
    #[oai(deserialize_with = "fields::token_type_hint")]
    pub token_type_hint: Option<String>,
    /// The calling client's key id (optional; checked when sent).
    #[oai(deserialize_with = "fields::client_id")]
    pub client_id: Option<String>,
    /// The calling client's API key, unless sent by HTTP Basic.
    #[oai(write_only, deserialize_with = "fields::client_secret")]
    pub client_secret: Option<String>,
}

#[derive(ApiRequest)]
pub enum IntrospectionBody {
    Form(Form<IntrospectionRequest>),
    Json(Json<IntrospectionRequest>),
}

/// RFC 7662 §2.2. Only `active` when the token is not active.
#[derive(Debug, Object, Default)]
pub struct Introspection {
    /// Whether the token verifies here and no revocation covers it.
    pub active: bool,
    /// The user id.
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<Uuid>,
    /// The key id the token was minted from, or `password` for a login.
    #[oai(skip_serializing_if_is_none)]
    pub client_id: Option<String>,
    /// Space-separated scopes.
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<String>,
    /// As when the token was issued.
    #[oai(skip_serializing_if_is_none)]
    pub role: Option<RoleName>,
    /// Expiry, in seconds since the Unix epoch.
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    /// Issue time, in seconds since the Unix epoch.
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iss: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub aud: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub jti: Option<Uuid>,
    /// Always `Bearer`.
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "malformed_revocation")]
pub enum RevocationResponse {
    /// The token is revoked, or was not a live credential of this server: the
    /// answer is the same either way (RFC 7009 §2.2).
    #[oai(status = 200)]
    Revoked(#[oai(header = "Cache-Control")] String),
    /// `invalid_request`: no `token`, or a body of another shape.
    #[oai(status = 400)]
    BadRequest(Json<OAuthError>, #[oai(header = "Cache-Control")] String),
    /// `too_many_requests`: too many API keys sent from this address were
    /// unknown here; no key is looked up until `Retry-After` seconds have passed.
    #[oai(status = 429)]
    TooManyRequests(
        Json<OAuthError>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Retry-After")] String,
    ),
    /// `temporarily_unavailable`: the database cannot take the revocation now;
    /// nothing was revoked. Retry after `Retry-After` seconds.
    #[oai(status = 503)]
    Unavailable(
        Json<OAuthError>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Retry-After")] String,
    ),
    /// `server_error`: the server failed; the error has been logged.
    #[oai(status = 500)]
    ServerError(Json<OAuthError>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "malformed_introspection")]
pub enum IntrospectionResponse {
    /// Whether the token is active, and its claims if it is.
    #[oai(status = 200)]
    Ok(Json<Introspection>, #[oai(header = "Cache-Control")] String),
    /// `invalid_request`: no `token`, or a body of another shape.
    #[oai(status = 400)]
    BadRequest(Json<OAuthError>, #[oai(header = "Cache-Control")] String),
    /// `invalid_client`: the calling API key is missing, malformed, unknown,
    /// revoked or expired, or its owner is disabled. Carries `WWW-Authenticate:
    /// Basic` when the client used Basic, unless the request came from a page's
    /// script (`X-Requested-With: XMLHttpRequest`).
    #[oai(status = 401)]
    InvalidClient(
        Json<OAuthError>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// `too_many_requests`: too many failed client authentications from this
    /// address; any key is refused until `Retry-After` seconds have passed.
    #[oai(status = 429)]
    TooManyRequests(
        Json<OAuthError>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Retry-After")] String,
    ),
    /// `temporarily_unavailable`: the database cannot answer now. Retry after
    /// `Retry-After` seconds.
    #[oai(status = 503)]
    Unavailable(
        Json<OAuthError>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Retry-After")] String,
    ),
    /// `server_error`: the server failed; the error has been logged.
    #[oai(status = 500)]
    ServerError(Json<OAuthError>, #[oai(header = "Cache-Control")] String),
}

const NO_TOKEN: &str = "Send the token to act on as `token`.";

fn malformed_revocation(err: poem::Error) -> RevocationResponse {
    RevocationResponse::BadRequest(
        oauth::error("invalid_request", malformed(&err)),
        NO_STORE.into(),
    )
}

fn malformed_introspection(err: poem::Error) -> IntrospectionResponse {
    IntrospectionResponse::BadRequest(
        oauth::error("invalid_request", malformed(&err)),
        NO_STORE.into(),
    )
}

fn malformed(err: &poem::Error) -> String {
    let reason = if err.is::<poem_openapi::error::ContentTypeError>() {
        "the body must be application/x-www-form-urlencoded or application/json"
    } else {
        "the body must carry `token` and the other parameters as strings"
    };
    format!("Malformed request: {reason}.")
}

impl RevocationResponse {
    fn from_error(e: Error) -> RevocationResponse {
        match e {
            Error::Throttled(throttled) => RevocationResponse::TooManyRequests(
                oauth::too_many_requests(&throttled),
                NO_STORE.into(),
                throttled.retry_after_secs(),
            ),
            Error::Storage(e) => RevocationResponse::Unavailable(
                oauth::temporarily_unavailable(&e.into()),
                NO_STORE.into(),
                RETRY_AFTER_SECS.into(),
            ),
            e => RevocationResponse::ServerError(
                oauth::server_error(&anyhow::Error::new(e)),
                NO_STORE.into(),
            ),
        }
    }
}

impl IntrospectionResponse {
    fn refused(refusal: Refusal) -> IntrospectionResponse {
        match refusal.error {
            "invalid_client" => {
                IntrospectionResponse::invalid_client(refusal.description, refusal.challenge)
            }
            error => IntrospectionResponse::BadRequest(
                oauth::error(error, refusal.description),
                NO_STORE.into(),
            ),
        }
    }

    fn invalid_client(description: String, challenge: bool) -> IntrospectionResponse {
        IntrospectionResponse::InvalidClient(
            oauth::error("invalid_client", description),
            NO_STORE.into(),
            challenge.then(|| oauth::BASIC_CHALLENGE.into()),
        )
    }

    fn from_error(e: ExchangeError, challenge: bool) -> IntrospectionResponse {
        match e {
            ExchangeError::InvalidClient(d) => IntrospectionResponse::invalid_client(d, challenge),
            ExchangeError::Throttled(throttled) => IntrospectionResponse::TooManyRequests(
                oauth::too_many_requests(&throttled),
                NO_STORE.into(),
                throttled.retry_after_secs(),
            ),
            ExchangeError::Unavailable(e) => IntrospectionResponse::Unavailable(
                oauth::temporarily_unavailable(&e),
                NO_STORE.into(),
                RETRY_AFTER_SECS.into(),
            ),
            ExchangeError::InvalidGrant(d) | ExchangeError::InvalidScope(d) => {
                IntrospectionResponse::ServerError(
                    oauth::server_error(&anyhow::anyhow!("introspection refused a grant: {d}")),
                    NO_STORE.into(),
                )
            }
            ExchangeError::Busy => IntrospectionResponse::ServerError(
                oauth::server_error(&anyhow::anyhow!("introspection ran no password check")),
                NO_STORE.into(),
            ),
            ExchangeError::Internal(e) => {
                IntrospectionResponse::ServerError(oauth::server_error(&e), NO_STORE.into())
            }
        }
    }
}

#[derive(ApiResponse)]
pub enum SignOutResponse {
    /// Every token of the account issued so far is refused from now on, on
    /// every instance; a new login or exchange works at once.
    #[oai(status = 204)]
    SignedOut,
}

documented! {
    SignOutErrors {
        401 => "No bearer token, or an invalid, expired or revoked one.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now; no token was revoked. Try again after `Retry-After` seconds."
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl RevocationApi {
    /// Revoke a token or an API key
    ///
    /// RFC 7009. `token` is an access token (only it is revoked) or an API key
    /// (revoked with every token it minted, so whoever finds a leaked key can
    /// end it). Holding the token is the proof: no client authentication.
    /// Revoked tokens are refused on every instance within a second.
    #[oai(path = "/auth/revoke", method = "post", operation_id = "revokeToken")]
    async fn revoke(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: RevocationBody,
    ) -> RevocationResponse {
        let request = match body {
            RevocationBody::Form(Form(r)) | RevocationBody::Json(Json(r)) => r,
        };
        let Some(token) = request.token.filter(|t| !t.is_empty()) else {
            return RevocationResponse::BadRequest(
                oauth::error("invalid_request", NO_TOKEN),
                NO_STORE.into(),
            );
        };
        match revocation::revoke(&state, &token, client::address(req, &state)).await {
            Ok(()) => RevocationResponse::Revoked(NO_STORE.into()),
            Err(e) => {
                if e.is_database_failure() {
                    state.metrics.database_error();
                }
                RevocationResponse::from_error(e)
            }
        }
    }

    /// Introspect a token
    ///
    /// RFC 7662, for services that do not verify tokens themselves. The caller
    /// authenticates with an API key, by HTTP Basic (the key's id as user name)
    /// or as `client_secret`. The answer is `{"active": false}` for anything not
    /// active here: malformed, expired, signed by another server, or revoked.
    #[oai(
        path = "/auth/introspect",
        method = "post",
        operation_id = "introspectToken"
    )]
    async fn introspect(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: IntrospectionBody,
    ) -> IntrospectionResponse {
        let request = match body {
            IntrospectionBody::Form(Form(r)) | IntrospectionBody::Json(Json(r)) => r,
        };
        let address = client::address(req, &state);
        let client =
            match token_request::client(req.headers(), request.client_id, request.client_secret) {
                Ok(client) => client,
                Err(refusal) => return IntrospectionResponse::refused(refusal),
            };
        let Some(token) = request.token.filter(|t| !t.is_empty()) else {
            return IntrospectionResponse::BadRequest(
                oauth::error("invalid_request", NO_TOKEN),
                NO_STORE.into(),
            );
        };
        let found = revocation::introspect(
            &state,
            &client.secret,
            client.client_id.as_deref(),
            &token,
            address,
        )
        .await;
        match found {
            Ok(found) => {
                let body = match found.claims {
                    None => Introspection::default(),
                    Some(c) => Introspection {
                        active: true,
                        sub: Some(c.user_id),
                        client_id: Some(c.client_id),
                        scope: Some(c.scopes.to_string()),
                        role: Some(c.role.into()),
                        exp: Some(c.expires_at),
                        iat: Some(c.issued_at),
                        iss: Some(found.issuer),
                        aud: Some(found.audience),
                        jti: Some(c.jti),
                        token_type: Some("Bearer".into()),
                    },
                };
                IntrospectionResponse::Ok(Json(body), NO_STORE.into())
            }
            Err(e) => {
                if e.is_database_failure() {
                    state.metrics.database_error();
                }
                IntrospectionResponse::from_error(e, client.challenge)
            }
        }
    }

    /// Sign out everywhere
    ///
    /// Every token of your account issued so far stops working, whichever key
    /// or login minted it, on every instance within a second. Your API keys
    /// stay valid: exchange one again, or log in, for a new token. Any valid
    /// token may call it.
    #[oai(path = "/me/sign-out", method = "post", operation_id = "signOut")]
    async fn sign_out(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
    ) -> Result<SignOutResponse, Failure<SignOutErrors>> {
        accounts::sign_out(&state, auth.claims(), client::address(req, &state)).await?;
        Ok(SignOutResponse::SignedOut)
    }
}
