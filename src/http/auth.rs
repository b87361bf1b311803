//! Bearer authentication: the JWT is checked in memory (signature, claims and
//! the revocations in force), with no database lookup, then handlers ask for
//! the scope they need.

use std::sync::Arc;

use poem::Request;
use poem_openapi::{auth::Bearer, OAuthScopes, SecurityScheme};

use crate::{
    domain::{
        scopes::Scope,
        tokens::{Claims, TokenError},
    },
    error::Error,
    revocations::Refusal,
    state::AppState,
    telemetry::metrics::Verification,
};

/// The scopes a token can carry, as the spec's OAuth2 flows list them.
#[derive(OAuthScopes)]
pub enum ApiScopes {
    /// List and read your todos.
    #[oai(rename = "todos:read")]
    TodosRead,
    /// Create, change and delete your todos.
    #[oai(rename = "todos:write")]
    TodosWrite,
    /// Create, list and revoke your API keys.
    #[oai(rename = "keys:manage")]
    KeysManage,
    /// Manage every account and key (admins only).
    #[oai(rename = "admin")]
    Admin,
}

/// OAuth 2.0: Swagger UI, Postman and Insomnia fetch a token by themselves.
/// For client credentials, the client id is the key's id and the secret is the key.
#[derive(SecurityScheme)]
#[oai(
    rename = "oauth2",
    ty = "oauth2",
    flows(
        client_credentials(token_url = "/auth/token", scopes = "ApiScopes"),
        password(token_url = "/auth/token", scopes = "ApiScopes")
    ),
    checker = "pass_on"
)]
pub struct OAuth2(Claims);

/// A token from `POST /auth/token`, sent as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearer",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "verify"
)]
pub struct BearerJwt(Claims);

/// Either scheme: both carry the same access token, and the spec lists both
/// so that each client finds the one it knows.
#[derive(SecurityScheme)]
pub enum Auth {
    OAuth2(OAuth2),
    Bearer(BearerJwt),
}

/// poem-openapi tries an enum's schemes in turn and answers with the last
/// one's error when none accepts. Both read the same bearer token, so the
/// first leaves it to the second: it declines at once, without looking at
/// the token, and `verify` checks it once and counts it once.
async fn pass_on(_: &Request, _: Bearer) -> Option<Claims> {
    None
}

async fn verify(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let state = app_state(req);
    let checked = check(state, &bearer.token);
    state.metrics.verification(match &checked {
        Ok(_) => Verification::Valid,
        Err(Error::InvalidToken(TokenError::Expired)) => Verification::Expired,
        Err(Error::InvalidToken(TokenError::Revoked)) => Verification::Revoked,
        Err(Error::Unavailable(_)) => Verification::Stale,
        Err(_) => Verification::Invalid,
    });
    Ok(checked?)
}

fn app_state(req: &Request) -> &AppState {
    req.data::<Arc<AppState>>()
        .expect("the app state is attached to every route")
}

fn check(state: &AppState, token: &str) -> Result<Claims, Error> {
    let claims = state.tokens.verify(token).map_err(Error::InvalidToken)?;
    match state.revocations.check(&claims) {
        Ok(()) => Ok(claims),
        Err(Refusal::Revoked) => Err(Error::InvalidToken(TokenError::Revoked)),
        Err(Refusal::Stale) => Err(Error::Unavailable(
            "This server has lost touch with the database and cannot tell whether the token was revoked",
        )),
    }
}

impl Auth {
    pub fn claims(&self) -> &Claims {
        match self {
            Auth::OAuth2(OAuth2(claims)) | Auth::Bearer(BearerJwt(claims)) => claims,
        }
    }

    /// The claims, if the token holds `scope`; RFC 6750 `insufficient_scope` if not.
    pub fn require(&self, scope: Scope) -> Result<&Claims, Error> {
        let claims = self.claims();
        if claims.scopes.contains(scope) {
            Ok(claims)
        } else {
            Err(Error::MissingScope(scope))
        }
    }
}
