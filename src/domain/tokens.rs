//! Access tokens: the one place they are signed and verified.
//!
//! Tokens are RFC 9068-shaped JWTs. Verification reads nothing but the token
//! and the key in memory: that is what lets any number of servers check them
//! without a database, at the price that a revoked key's tokens live out their
//! (short) lifetime.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{de, Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::scopes::{Role, Scopes};

/// Verification accepts this much clock skew between servers, and no more: the
/// library's default of 60 s would double a one-minute token's life.
pub const LEEWAY_SECS: u64 = 5;

const TOKEN_TYPE: &str = "at+jwt";

/// What a verified token says. Everything a handler needs to authorise a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user_id: Uuid,
    pub role: Role,
    pub scopes: Scopes,
    /// The key id the token was minted from, or `password` for a login.
    pub client_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Who a new token is for.
pub struct Grant<'a> {
    pub user_id: Uuid,
    pub role: Role,
    pub scopes: Scopes,
    pub client_id: &'a str,
}

pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired; exchange your key for a new one")]
    Expired,
    #[error("the access token is malformed or its signature does not verify")]
    Invalid,
    #[error("could not sign the token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    /// The HS256 secret; at least 32 bytes.
    pub secret: Vec<u8>,
}

/// Signs and verifies access tokens with keys and rules fixed at start-up, so
/// verification allocates nothing beyond the decoded claims.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
    kid: String,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl Tokens {
    pub fn new(settings: TokenSettings) -> Tokens {
        let kid = key_id(&settings.secret);
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(kid.clone());

        // Pinned to HS256: a token naming any other algorithm (none, HS512, an
        // asymmetric one) is refused before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.leeway = LEEWAY_SECS;

        Tokens {
            encoding: EncodingKey::from_secret(&settings.secret),
            decoding: DecodingKey::from_secret(&settings.secret),
            header,
            validation,
            kid,
            issuer: settings.issuer,
            audience: settings.audience,
            ttl: settings.ttl,
        }
    }

    pub fn issue(&self, grant: &Grant<'_>) -> Result<Issued, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let ttl = self.ttl.as_secs();
        let scope = grant.scopes.to_string();
        let claims = OutgoingClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: grant.user_id,
            iat: now,
            exp: now + ttl as i64,
            jti: Uuid::now_v7(),
            client_id: grant.client_id,
            scope: &scope,
            role: grant.role.as_str(),
        };
        let access_token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(TokenError::Signing)?;
        Ok(Issued {
            access_token,
            expires_in: ttl,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<IncomingClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        // RFC 9068 §4: an access token is recognised by its type, so an ID token
        // or other JWT signed with the same key is not taken for one.
        if data.header.typ.as_deref() != Some(TOKEN_TYPE)
            || data.header.kid.as_deref() != Some(self.kid.as_str())
        {
            return Err(TokenError::Invalid);
        }
        let c = data.claims;
        Ok(Claims {
            user_id: c.sub,
            role: c.role,
            scopes: c.scope,
            client_id: c.client_id,
            issued_at: c.iat,
            expires_at: c.exp,
        })
    }
}

/// Names the signing key without revealing anything about it.
fn key_id(secret: &[u8]) -> String {
    let digest = blake3::derive_key("latchkey 2026-11 HS256 key id", secret);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct OutgoingClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: Uuid,
    iat: i64,
    exp: i64,
    jti: Uuid,
    client_id: &'a str,
    scope: &'a str,
    role: &'a str,
}

#[derive(Deserialize)]
struct IncomingClaims {
    sub: Uuid,
    iat: i64,
    exp: i64,
    client_id: String,
    #[serde(deserialize_with = "scopes_from_str")]
    scope: Scopes,
    #[serde(deserialize_with = "role_from_str")]
    role: Role,
}

fn scopes_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Scopes, D::Error> {
    let s = <&str>::deserialize(d)?;
    Scopes::parse(s).map_err(de::Error::custom)
}

fn role_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
    let s = <&str>::deserialize(d)?;
    Role::parse(s).ok_or_else(|| de::Error::custom("unknown role"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scopes::Scope;

    fn tokens(secret: &[u8]) -> Tokens {
        Tokens::new(TokenSettings {
            issuer: "http://localhost".into(),
            audience: "latchkey".into(),
            ttl: Duration::from_secs(60),
            secret: secret.to_vec(),
        })
    }

    #[test]
    fn an_issued_token_verifies_to_its_grant() {
        let t = tokens(&[7; 32]);
        let user_id = Uuid::now_v7();
        let issued = t
            .issue(&Grant {
                user_id,
                role: Role::User,
                scopes: Scopes::of(&[Scope::TodosRead]),
                client_id: "password",
            })
            .unwrap();
        assert_eq!(issued.expires_in, 60);
        let claims = t.verify(&issued.access_token).unwrap();
        assert_eq!(claims.user_id, user_id);
        assert_eq!(claims.scopes, Scopes::of(&[Scope::TodosRead]));
        assert_eq!(claims.expires_at - claims.issued_at, 60);
        assert_eq!(claims.client_id, "password");
    }

    #[test]
    fn a_token_from_another_secret_is_invalid() {
        let grant = Grant {
            user_id: Uuid::now_v7(),
            role: Role::Admin,
            scopes: Scopes::NONE,
            client_id: "password",
        };
        let issued = tokens(&[1; 32]).issue(&grant).unwrap();
        assert!(matches!(
            tokens(&[2; 32]).verify(&issued.access_token),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn the_key_id_names_the_secret_without_showing_it() {
        let kid = key_id(&[0x41; 32]);
        assert_eq!(kid.len(), 16);
        assert_eq!(kid, key_id(&[0x41; 32]));
        assert_ne!(kid, key_id(&[0x42; 32]));
    }
}
