//! What a client or another service can learn without credentials: RFC 8414
//! server metadata, and the public keys that verify tokens (RFC 7517).

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::{
    domain::{scopes::Scope, signing::SigningAlg},
    error::Error,
    http::documented::{documented, Failure},
    state::AppState,
};

/// Verifiers may cache the key set this long. A rotation's new key signs at
/// once, so a verifier that meets an unknown `kid` should fetch the set again
/// (PyJWT's `PyJWKClient` and `jose`'s remote key sets do); a short lifetime
/// keeps a cache between it and this server from serving it the old set for
/// long.
const JWKS_CACHE: &str = "public, max-age=60";
const METADATA_CACHE: &str = "public, max-age=3600";

const JWKS_PATH: &str = "/.well-known/jwks.json";
const TOKEN_PATH: &str = "/auth/token";
const REVOCATION_PATH: &str = "/auth/revoke";
const INTROSPECTION_PATH: &str = "/auth/introspect";

#[derive(Default)]
pub struct DiscoveryApi;

/// RFC 8414 authorization server metadata.
#[derive(Debug, Object)]
pub struct ServerMetadata {
    /// The `iss` of every token; the base URL this metadata was found under.
    pub issuer: String,
    pub token_endpoint: String,
    /// Present only when tokens are signed with a published key (EdDSA).
    #[oai(skip_serializing_if_is_none)]
    pub jwks_uri: Option<String>,
    /// `client_credentials` (an API key) and `password` (an account login).
    pub grant_types_supported: Vec<String>,
    /// How the API key is sent: HTTP Basic or in the form body.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    /// Empty: there is no authorization endpoint, so no response type.
    pub response_types_supported: Vec<String>,
    /// Human documentation: Swagger UI.
    pub service_documentation: String,
    /// RFC 7009: revoke an access token or an API key.
    pub revocation_endpoint: String,
    /// `none`: holding the token is the proof.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 7662: whether a token is active, for a client with an API key.
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
}

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(Debug, Object)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Debug, Object)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The key's RFC 7638 thumbprint; tokens name it in their header.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[oai(rename = "use")]
    pub use_: String,
}

#[derive(ApiResponse)]
pub enum MetadataResponse {
    /// The metadata.
    #[oai(status = 200)]
    Ok(
        Json<ServerMetadata>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
pub enum JwksResponse {
    /// The keys that verify tokens now: the current one, and a replaced one
    /// until the tokens it signed have expired.
    #[oai(status = 200)]
    Ok(Json<JwkSet>, #[oai(header = "Cache-Control")] String),
}

documented! {
    JwksErrors {
        404 => "Tokens are signed with a shared secret (HS256), which is never published."
    }
}

#[OpenApi(tag = "ApiTags::Discovery")]
impl DiscoveryApi {
    /// OAuth 2.0 server metadata
    ///
    /// RFC 8414: where the token, revocation and introspection endpoints and
    /// the public keys are, and what they accept, so a client configured with only the issuer
    /// URL finds the rest.
    #[oai(
        path = "/.well-known/oauth-authorization-server",
        method = "get",
        operation_id = "server_metadata"
    )]
    async fn metadata(&self, state: Data<&Arc<AppState>>) -> MetadataResponse {
        let base = state.tokens.issuer().trim_end_matches('/');
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        MetadataResponse::Ok(
            Json(ServerMetadata {
                issuer: state.tokens.issuer().to_owned(),
                token_endpoint: format!("{base}{TOKEN_PATH}"),
                jwks_uri: (state.tokens.alg() == SigningAlg::EdDSA)
                    .then(|| format!("{base}{JWKS_PATH}")),
                grant_types_supported: strings(&["client_credentials", "password"]),
                token_endpoint_auth_methods_supported: strings(&[
                    "client_secret_basic",
                    "client_secret_post",
                ]),
                scopes_supported: Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
                response_types_supported: Vec::new(),
                service_documentation: format!("{base}/docs/"),
                revocation_endpoint: format!("{base}{REVOCATION_PATH}"),
                revocation_endpoint_auth_methods_supported: strings(&["none"]),
                introspection_endpoint: format!("{base}{INTROSPECTION_PATH}"),
                introspection_endpoint_auth_methods_supported: strings(&[
                    "client_secret_basic",
                    "client_secret_post",
                ]),
            }),
            METADATA_CACHE.into(),
        )
    }

    /// Public signing keys
    ///
    /// The JWK Set other services verify EdDSA tokens with: pick the key by
    /// the token's `kid`, and accept only `EdDSA`. `404` when tokens are
    /// signed with HS256, whose secret is never published.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self, state: Data<&Arc<AppState>>) -> Result<JwksResponse, Failure<JwksErrors>> {
        if state.tokens.alg() != SigningAlg::EdDSA {
            return Err(Error::NotFound(
                "This server signs tokens with a shared secret (HS256), which is never published, \
                 so it has no public keys. Start it with --jwt-alg EdDSA to publish one"
                    .into(),
            )
            .into());
        }
        let keys = state
            .tokens
            .public_keys()
            .into_iter()
            .map(|key| Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: key.x,
                kid: key.kid,
                alg: key.alg.as_str().into(),
                use_: "sig".into(),
            })
            .collect();
        Ok(JwksResponse::Ok(Json(JwkSet { keys }), JWKS_CACHE.into()))
    }
}
