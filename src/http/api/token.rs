use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::{http::header, Request};
use poem_openapi::{
    payload::{Form, Json},
    ApiRequest, ApiResponse, Object, OpenApi,
};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use crate::{
    domain::scopes::Scopes,
    exchange::{self, ExchangeError, Exchanged},
    http::{
        auth::Auth,
        problem::{documented, Failure},
    },
    state::AppState,
};

pub struct TokenApi;

/// An RFC 6749 token request. Send it form-encoded (the standard) or as JSON.
// No `Debug`: it holds a key or a password.
#[derive(Object, Deserialize)]
pub struct TokenRequest {
    /// `client_credentials` (trade an API key) or `password` (log in).
    pub grant_type: String,
    /// For `client_credentials`: the key's id (optional; checked when sent).
    pub client_id: Option<String>,
    /// For `client_credentials`: the API key, unless sent by HTTP Basic.
    #[oai(write_only)]
    pub client_secret: Option<String>,
    /// For `password`: the account's email.
    pub username: Option<String>,
    /// For `password`: the account's password.
    #[oai(write_only)]
    pub password: Option<String>,
    /// Space-separated scopes. The token gets those of them the key or role
    /// allows (the response's `scope` names them), all of those when left
    /// out; `invalid_scope` if it allows none of them.
    pub scope: Option<String>,
}

#[derive(ApiRequest)]
pub enum TokenRequestBody {
    // No explicit content type: the payload's own check accepts parameters
    // such as `; charset=UTF-8`, which browsers and Node's fetch send.
    Form(Form<TokenRequest>),
    Json(Json<TokenRequest>),
}

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

/// RFC 6749 §5.2.
#[derive(Debug, Object)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type` or `invalid_scope`.
    pub error: String,
    pub error_description: String,
}

const NO_STORE: &str = "no-store";

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
    /// `server_error`: the server failed; the error has been logged.
    #[oai(status = 500)]
    ServerError(Json<OAuthError>, #[oai(header = "Cache-Control")] String),
}

impl TokenResponse {
    fn bad_request(error: &str, description: impl Into<String>) -> TokenResponse {
        TokenResponse::BadRequest(
            Json(OAuthError {
                error: error.into(),
                error_description: description.into(),
            }),
            NO_STORE.into(),
        )
    }

    fn invalid_client(description: String, challenge: bool) -> TokenResponse {
        TokenResponse::InvalidClient(
            Json(OAuthError {
                error: "invalid_client".into(),
                error_description: description,
            }),
            NO_STORE.into(),
            challenge.then(|| r#"Basic realm="latchkey", charset="UTF-8""#.into()),
        )
    }

    fn from_exchange(e: ExchangeError, challenge: bool) -> TokenResponse {
        match e {
            ExchangeError::InvalidClient(d) => TokenResponse::invalid_client(d, challenge),
            ExchangeError::InvalidGrant(d) => TokenResponse::bad_request("invalid_grant", d),
            ExchangeError::InvalidScope(d) => TokenResponse::bad_request("invalid_scope", d),
            ExchangeError::Internal(e) => {
                tracing::error!(error = ?e, "token request failed");
                TokenResponse::ServerError(
                    Json(OAuthError {
                        error: "server_error".into(),
                        error_description: "The server failed; the error has been logged.".into(),
                    }),
                    NO_STORE.into(),
                )
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
    /// `user` or `admin`, as when the token was issued.
    pub role: String,
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
        401 => "No bearer token, or an invalid or expired one."
    }
}

enum GrantType {
    ClientCredentials,
    Password,
}

/// Whether a failed Basic authentication gets its RFC 6749 §5.2 challenge.
/// Not for a page's script (Swagger UI marks its token requests with
/// `X-Requested-With: XMLHttpRequest`): a browser meeting `WWW-Authenticate:
/// Basic` on a script's request opens its own login prompt, and the page never
/// sees the `invalid_client` error it should show.
fn challenge(req: &Request, used_basic: bool) -> bool {
    let from_script = req
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    used_basic && !from_script
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
        let body = match body {
            TokenRequestBody::Form(Form(b)) | TokenRequestBody::Json(Json(b)) => b,
        };
        let basic = match basic_credentials(req) {
            Ok(basic) => basic,
            Err(description) => {
                return TokenResponse::invalid_client(description.into(), challenge(req, true))
            }
        };
        let send_challenge = challenge(req, basic.is_some());
        // The grant type first: with an unknown one, nothing else matters.
        let grant = match body.grant_type.as_str() {
            "client_credentials" => GrantType::ClientCredentials,
            "password" => GrantType::Password,
            "" => {
                return TokenResponse::bad_request(
                    "invalid_request",
                    "grant_type is empty; use client_credentials or password.",
                )
            }
            _ => {
                return TokenResponse::bad_request(
                    "unsupported_grant_type",
                    "This server supports grant_type client_credentials and password.",
                )
            }
        };
        // An empty `scope` (Swagger UI sends one when no box is ticked) asks
        // for the default grant, as if it were left out.
        let requested = body.scope.as_deref().filter(|s| !s.trim().is_empty());
        let requested = match requested.map(Scopes::parse).transpose() {
            Ok(scopes) => scopes,
            Err(e) => {
                return TokenResponse::bad_request(
                    "invalid_scope",
                    format!("{e}; known scopes are todos:read, todos:write, keys:manage and admin"),
                )
            }
        };
        let result = match grant {
            GrantType::ClientCredentials => {
                let (client_id, secret) = match (basic, body.client_secret) {
                    (Some(_), Some(_)) => return TokenResponse::bad_request(
                        "invalid_request",
                        "Send the client credentials once: by HTTP Basic or in the body, not both.",
                    ),
                    (Some((id, secret)), None) => {
                        if body.client_id.as_ref().is_some_and(|b| *b != id) {
                            return TokenResponse::bad_request(
                                "invalid_request",
                                "client_id in the body differs from the one sent by HTTP Basic.",
                            );
                        }
                        (Some(id).filter(|id| !id.is_empty()), secret)
                    }
                    (None, Some(secret)) => (body.client_id.filter(|id| !id.is_empty()), secret),
                    (None, None) => {
                        return TokenResponse::invalid_client(
                            "Send the API key as client_secret, in the body or by HTTP Basic."
                                .into(),
                            false,
                        )
                    }
                };
                exchange::with_key(&state, &secret, client_id.as_deref(), requested).await
            }
            GrantType::Password => {
                let (Some(username), Some(password)) = (body.username, body.password) else {
                    return TokenResponse::bad_request(
                        "invalid_request",
                        "The password grant needs username (the account's email) and password.",
                    );
                };
                exchange::with_password(&state, &username, password, requested).await
            }
        };
        match result {
            Ok(Exchanged { issued, scopes }) => TokenResponse::Issued(
                Json(AccessToken {
                    access_token: issued.access_token,
                    token_type: "Bearer".into(),
                    expires_in: issued.expires_in,
                    scope: scopes.to_string(),
                }),
                NO_STORE.into(),
                "no-cache".into(),
            ),
            Err(e) => TokenResponse::from_exchange(e, send_challenge),
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
            role: c.role.as_str().into(),
            scopes: c.scopes.names(),
            client_id: c.client_id.clone(),
            issued_at: timestamp(c.issued_at),
            expires_at: timestamp(c.expires_at),
        })))
    }
}

fn timestamp(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// RFC 6749 §2.3.1: HTTP Basic with the client id and secret, each
/// form-urlencoded before they are joined. `None` when no Basic header was sent.
fn basic_credentials(req: &Request) -> Result<Option<(String, String)>, &'static str> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    const BAD: &str = "The Authorization header is not valid HTTP Basic credentials.";
    let value = value.to_str().map_err(|_| BAD)?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(BAD);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("The token endpoint takes client credentials by HTTP Basic only.");
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| BAD)?;
    let decoded = String::from_utf8(decoded).map_err(|_| BAD)?;
    let (id, secret) = decoded.split_once(':').ok_or(BAD)?;
    Ok(Some((
        form_decode(id).ok_or(BAD)?,
        form_decode(secret).ok_or(BAD)?,
    )))
}

fn form_decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
