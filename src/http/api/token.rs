use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::{web::Data, Request};
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::{
    http::{
        auth::Auth,
        client,
        documented::{documented, Failure},
        oauth::{self, OAuthError, NO_STORE},
        problem::RETRY_AFTER_SECS,
        token_request::{self, Grant, Refusal, TokenRequestBody},
        types::RoleName,
    },
    service::token::{self, ExchangeError, Exchanged},
    state::AppState,
    telemetry::metrics::{Exchange, GrantType, Metrics},
};

#[derive(Default)]
pub struct TokenApi;

/// RFC 6749 §5.1.
#[derive(Object)]
pub struct AccessToken {
    /// A JWT (RFC 9068) to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "malformed_token_request")]
pub enum TokenResponse {
    /// A token was issued.
    #[oai(status = 200)]
    Issued(
        Json<AccessToken>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Pragma")] String,
    ),
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type` or `invalid_scope`.
    #[oai(status = 400)]
    BadRequest(Json<OAuthError>, #[oai(header = "Cache-Control")] String),
    /// `invalid_client`: the API key is malformed, unknown, revoked or expired, or its
    /// owner is disabled. Carries `WWW-Authenticate: Basic` when the client used Basic,
    /// unless the request came from a page's script (`X-Requested-With: XMLHttpRequest`).
    #[oai(status = 401)]
    InvalidClient(
        Json<OAuthError>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// `too_many_requests`: too many failed client authentications from this
    /// address (any key is refused until `Retry-After` seconds have passed), or
    /// too many failed logins of this account from this address (the right
    /// password from elsewhere still works).
    #[oai(status = 429)]
    TooManyRequests(
        Json<OAuthError>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Retry-After")] String,
    ),
    /// `temporarily_unavailable`: the database cannot answer now, or too many
    /// logins wait for a password check; retry after `Retry-After` seconds.
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

impl TokenResponse {
    fn issued(exchanged: Exchanged) -> TokenResponse {
        TokenResponse::Issued(
            Json(AccessToken {
                access_token: exchanged.issued.access_token,
                token_type: "Bearer".into(),
                expires_in: exchanged.issued.expires_in,
                scope: exchanged.scopes.to_string(),
            }),
            NO_STORE.into(),
            "no-cache".into(),
        )
    }

    fn refused(refusal: Refusal) -> TokenResponse {
        match refusal.error {
            "invalid_client" => {
                TokenResponse::invalid_client(refusal.description, refusal.challenge)
            }
            error => TokenResponse::bad_request(error, refusal.description),
        }
    }

    fn bad_request(error: &str, description: impl Into<String>) -> TokenResponse {
        TokenResponse::BadRequest(oauth::error(error, description), NO_STORE.into())
    }

    fn invalid_client(description: String, challenge: bool) -> TokenResponse {
        TokenResponse::InvalidClient(
            oauth::error("invalid_client", description),
            NO_STORE.into(),
            challenge.then(|| oauth::BASIC_CHALLENGE.into()),
        )
    }

    fn from_exchange(e: ExchangeError, challenge: bool) -> TokenResponse {
        match e {
            ExchangeError::InvalidClient(d) => TokenResponse::invalid_client(d, challenge),
            ExchangeError::InvalidGrant(d) => TokenResponse::bad_request("invalid_grant", d),
            ExchangeError::InvalidScope(d) => TokenResponse::bad_request("invalid_scope", d),
            ExchangeError::Throttled(throttled) => TokenResponse::TooManyRequests(
                oauth::too_many_requests(&throttled),
                NO_STORE.into(),
                throttled.retry_after_secs(),
            ),
            ExchangeError::Busy => {
                TokenResponse::Unavailable(oauth::busy(), NO_STORE.into(), RETRY_AFTER_SECS.into())
            }
            ExchangeError::Unavailable(e) => TokenResponse::Unavailable(
                oauth::temporarily_unavailable(&e),
                NO_STORE.into(),
                RETRY_AFTER_SECS.into(),
            ),
            ExchangeError::Internal(e) => {
                TokenResponse::ServerError(oauth::server_error(&e), NO_STORE.into())
            }
        }
    }
}

fn malformed_token_request(err: poem::Error) -> TokenResponse {
    let reason = if err.is::<poem_openapi::error::ContentTypeError>() {
        "the body must be application/x-www-form-urlencoded or application/json"
    } else {
        "the body must carry grant_type and the grant's parameters as strings"
    };
    TokenResponse::bad_request(
        "invalid_request",
        format!("Malformed token request: {reason}."),
    )
}

/// The claims of the token that called, read from the token alone.
#[derive(Debug, Object)]
pub struct Me {
    pub user_id: Uuid,
    /// As when the token was issued.
    pub role: RoleName,
    pub scopes: Vec<String>,
    /// The key id the token came from, or `password` for a login.
    pub client_id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The token's claims.
    #[oai(status = 200)]
    Ok(Json<Me>),
}

documented! {
    MeErrors {
        401 => "No bearer token, or an invalid, expired or revoked one."
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl TokenApi {
    /// Get an access token
    ///
    /// The OAuth 2.0 token endpoint (RFC 6749). `grant_type=client_credentials`
    /// trades an API key (the `client_secret`, in the body or by HTTP Basic with
    /// the key's id as user name) for a short-lived JWT; `grant_type=password`
    /// logs in with an email (`username`) and password. `scope` narrows the grant.
    #[oai(path = "/auth/token", method = "post", operation_id = "getToken")]
    async fn token(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: TokenRequestBody,
    ) -> TokenResponse {
        let body = body.into_inner();
        let grant_type = GrantType::of(&body.grant_type);
        let request = match token_request::parse(body, req.headers()) {
            Ok(request) => request,
            Err(refusal) => {
                state.metrics.exchange(grant_type, refusal.outcome());
                return TokenResponse::refused(refusal);
            }
        };
        let address = client::address(req, &state);
        let result = match request.grant {
            Grant::ClientCredentials { secret, client_id } => {
                token::with_key(
                    &state,
                    &secret,
                    client_id.as_deref(),
                    request.scope,
                    address,
                )
                .await
            }
            Grant::Password { username, password } => {
                token::with_password(&state, &username, password, request.scope, address).await
            }
        };
        count(&state.metrics, grant_type, &result);
        match result {
            Ok(exchanged) => TokenResponse::issued(exchanged),
            Err(e) => TokenResponse::from_exchange(e, request.challenge),
        }
    }

    /// Read your token's claims
    ///
    /// Who the token says you are and what it allows, read from the token itself
    /// with no database lookup. Any valid token may call it.
    #[oai(path = "/me", method = "get", operation_id = "getMe")]
    async fn me(&self, auth: Auth) -> Result<MeResponse, Failure<MeErrors>> {
        let c = auth.claims();
        Ok(MeResponse::Ok(Json(Me {
            user_id: c.user_id,
            role: c.role.into(),
            scopes: c.scopes.names(),
            client_id: c.client_id.clone(),
            issued_at: timestamp(c.issued_at),
            expires_at: timestamp(c.expires_at),
        })))
    }
}

fn count(metrics: &Metrics, grant: GrantType, result: &Result<Exchanged, ExchangeError>) {
    match result {
        Ok(_) => metrics.exchange(grant, Exchange::Issued),
        Err(e) => {
            metrics.exchange(grant, e.outcome());
            if e.is_database_failure() {
                metrics.database_error();
            }
        }
    }
}

fn timestamp(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}
