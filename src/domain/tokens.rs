//! Access tokens: the one place they are signed and verified.
//!
//! Tokens are RFC 9068-shaped JWTs. Verification reads nothing but the token
//! and the key in memory: that is what lets any number of servers check them
//! without a database. Revocation is checked beside it, also in memory (see
//! `crate::revocations`).

mod verified;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::{de, Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::{
    jws::JwsSigner,
    revocation::{Millis, TokenOrigin},
    scopes::{Role, Scopes},
    signing::{PublicKey, SigningAlg, SigningKey},
};

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
    pub jti: Uuid,
    /// When the token was issued, to the millisecond (from its UUIDv7 `jti`).
    pub issued_ms: Millis,
}

impl Claims {
    /// What revocations are matched against.
    pub fn origin(&self) -> TokenOrigin {
        TokenOrigin {
            user_id: self.user_id,
            key_id: Uuid::parse_str(&self.client_id).ok(),
            jti: self.jti,
            issued: self.issued_ms,
        }
    }
}

/// Who a new token is for.
pub struct Grant<'a> {
    pub user_id: Uuid,
    pub role: Role,
    pub scopes: Scopes,
    pub client_id: &'a str,
    /// The token expires no later than this (its key's own expiry).
    pub not_after: Option<DateTime<Utc>>,
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
    #[error("the access token has been revoked; get a new one if you still may")]
    Revoked,
    /// Its `nbf` or `iat` lies in the future beyond the clock leeway: no
    /// server of this issuer signed it now with a clock that agrees.
    #[error("the access token is not valid yet: it says it was issued, or starts, in the future")]
    NotYetValid,
    /// Its `exp - iat` exceeds the lifetime this server gives tokens.
    #[error("the access token claims a longer life than this server gives tokens")]
    TooLong,
    #[error("could not sign the token")]
    Signing(#[source] serde_json::Error),
}

pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

/// The keys in force: the current one signs; it and the previous ones (kept
/// until the tokens they signed have expired) verify.
pub struct KeySet {
    pub current: SigningKey,
    pub previous: Vec<SigningKey>,
}

/// Signs and verifies access tokens. The keys can be swapped while requests
/// run (a rotation); the claims rules are fixed at start-up.
pub struct Tokens {
    keys: ArcSwap<LoadedKeys>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// A key set made ready for use, so a request does no key parsing.
struct LoadedKeys {
    /// Unique in the process: what the verified tokens' cache is keyed by.
    id: u64,
    alg: SigningAlg,
    signer: JwsSigner,
    /// The current key first: most tokens are found at once.
    verifiers: Vec<Verifier>,
    public: Vec<PublicKey>,
}

struct Verifier {
    kid: String,
    key: DecodingKey,
    /// Pinned to the key's own algorithm: a token naming any other (none,
    /// HS512, HS256 keyed with a published public key) is refused before its
    /// signature is looked at.
    validation: Validation,
}

impl Tokens {
    pub fn new(settings: TokenSettings, keys: KeySet) -> Tokens {
        let loaded = LoadedKeys::new(&settings, keys);
        Tokens {
            keys: ArcSwap::from_pointee(loaded),
            issuer: settings.issuer,
            audience: settings.audience,
            ttl: settings.ttl,
        }
    }

    /// Makes `keys` the ones in force for every request from now on.
    pub fn replace_keys(&self, keys: KeySet) {
        let settings = TokenSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            ttl: self.ttl,
        };
        self.keys.store(Arc::new(LoadedKeys::new(&settings, keys)));
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The algorithm new tokens are signed with.
    pub fn alg(&self) -> SigningAlg {
        self.keys.load().alg
    }

    /// The public keys that verify tokens now: empty with a shared secret.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.load().public.clone()
    }

    /// The ids of the keys that verify tokens now, the signing key first.
    pub fn key_ids(&self) -> Vec<String> {
        let keys = self.keys.load();
        keys.verifiers.iter().map(|v| v.kid.clone()).collect()
    }

    /// Signs a token issued at `at`: the moment the facts it grants were
    /// read, so that a revocation committed after that moment covers it.
    pub fn issue(&self, grant: &Grant<'_>, at: DateTime<Utc>) -> Result<Issued, TokenError> {
        let iat = at.timestamp();
        let mut exp = iat + self.ttl.as_secs() as i64;
        if let Some(not_after) = grant.not_after {
            exp = exp.min(not_after.timestamp());
        }
        let scope = grant.scopes.to_string();
        let claims = OutgoingClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: grant.user_id,
            iat,
            exp,
            jti: jti_at(at),
            client_id: grant.client_id,
            scope: &scope,
            role: grant.role.as_str(),
        };
        let access_token = self
            .keys
            .load()
            .signer
            .sign(&claims)
            .map_err(TokenError::Signing)?;
        Ok(Issued {
            access_token,
            expires_in: u64::try_from(exp - iat).unwrap_or(0),
        })
    }

    /// The token's claims if it is one of ours and has not expired; whether
    /// it has been revoked is `crate::revocations`' to say.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// [`Tokens::verify`] at `now`, which a token verified before on this
    /// thread is held to; one seen first is checked at the system clock.
    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let keys = self.keys.load();
        if let Some(claims) = verified::get(keys.id, token) {
            // As jsonwebtoken rules: expired once `exp` is past by more than the leeway.
            if claims.expires_at < now.saturating_sub(LEEWAY_SECS as i64) {
                verified::forget(keys.id, token);
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let claims = self.check_signed(&keys, token, now)?;
        verified::put(keys.id, token, &claims);
        Ok(claims)
    }

    /// The signature and every claim rule, from scratch.
    fn check_signed(&self, keys: &LoadedKeys, token: &str, now: i64) -> Result<Claims, TokenError> {
        let verifier = match keys.verifiers.as_slice() {
            // One key (the usual case): no need to read the header twice; the
            // kid is compared below.
            [only] => only,
            all => {
                let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
                let kid = header.kid.ok_or(TokenError::Invalid)?;
                all.iter()
                    .find(|v| v.kid == kid)
                    .ok_or(TokenError::Invalid)?
            }
        };
        let data =
            jsonwebtoken::decode::<IncomingClaims>(token, &verifier.key, &verifier.validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    jsonwebtoken::errors::ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    _ => TokenError::Invalid,
                })?;
        // RFC 9068 §4: an access token is recognised by its type, so an ID token
        // or other JWT signed with the same key is not taken for one.
        if data.header.typ.as_deref() != Some(TOKEN_TYPE)
            || data.header.kid.as_deref() != Some(verifier.kid.as_str())
        {
            return Err(TokenError::Invalid);
        }
        let c = data.claims;
        // What the library does not check: a token is never issued in the
        // future, nor for longer than the lifetime (a key's expiry only
        // shortens it). Either would be a forgery with a leaked key, or a
        // signer whose clock or settings are wrong; such a token would live
        // past what a revocation window of one lifetime covers.
        if c.iat > now.saturating_add(LEEWAY_SECS as i64) {
            return Err(TokenError::NotYetValid);
        }
        if c.exp.saturating_sub(c.iat) > self.ttl.as_secs() as i64 {
            return Err(TokenError::TooLong);
        }
        Ok(Claims {
            user_id: c.sub,
            role: c.role,
            scopes: c.scope,
            client_id: c.client_id,
            issued_at: c.iat,
            expires_at: c.exp,
            jti: c.jti,
            issued_ms: issued_ms(c.jti, c.iat),
        })
    }
}

impl LoadedKeys {
    fn new(settings: &TokenSettings, keys: KeySet) -> LoadedKeys {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut header = Header::new(keys.current.alg().jwt());
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(keys.current.kid().to_owned());
        let all: Vec<&SigningKey> = std::iter::once(&keys.current)
            .chain(&keys.previous)
            .collect();
        LoadedKeys {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            alg: keys.current.alg(),
            signer: JwsSigner::new(&header, keys.current.sign_with()),
            verifiers: all
                .iter()
                .map(|key| Verifier {
                    kid: key.kid().to_owned(),
                    key: key.decoding_key(),
                    validation: validation(settings, key.alg()),
                })
                .collect(),
            public: all.iter().filter_map(|key| key.public_key()).collect(),
        }
    }
}

fn validation(settings: &TokenSettings, alg: SigningAlg) -> Validation {
    let mut validation = Validation::new(alg.jwt());
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.leeway = LEEWAY_SECS;
    // Only checked when present: these tokens carry no `nbf`, others' may.
    validation.validate_nbf = true;
    validation
}

/// A UUIDv7 whose timestamp is `at`: the token's issue time to the millisecond.
fn jti_at(at: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        (ms % 1000) as u32 * 1_000_000,
    ))
}

/// The issue time a token's `jti` records; its `iat` (rounded down to the
/// second, so never later) if the `jti` is not a UUIDv7.
fn issued_ms(jti: Uuid, iat: i64) -> Millis {
    match (jti.get_version(), jti.get_timestamp()) {
        (Some(uuid::Version::SortRand), Some(ts)) => {
            let (secs, nanos) = ts.to_unix();
            i64::try_from(secs).unwrap_or(i64::MAX) * 1000 + i64::from(nanos / 1_000_000)
        }
        _ => iat.saturating_mul(1000),
    }
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
    jti: Uuid,
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
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

    use super::*;
    use crate::domain::scopes::Scope;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "http://localhost".into(),
            audience: "latchkey".into(),
            ttl: Duration::from_secs(60),
        }
    }

    fn tokens(current: SigningKey, previous: Vec<SigningKey>) -> Tokens {
        Tokens::new(settings(), KeySet { current, previous })
    }

    fn key(alg: SigningAlg) -> SigningKey {
        SigningKey::generate(alg).unwrap()
    }

    fn same(key: &SigningKey) -> SigningKey {
        SigningKey::from_private_text(key.alg(), &key.private_text()).unwrap()
    }

    fn grant() -> Grant<'static> {
        Grant {
            user_id: Uuid::now_v7(),
            role: Role::User,
            scopes: Scopes::of(&[Scope::TodosRead]),
            client_id: "password",
            not_after: None,
        }
    }

    #[test]
    fn an_issued_token_verifies_to_its_grant() {
        for alg in [SigningAlg::HS256, SigningAlg::EdDSA] {
            let t = tokens(key(alg), vec![]);
            let grant = grant();
            let issued = t.issue(&grant, Utc::now()).unwrap();
            assert_eq!(issued.expires_in, 60);
            let claims = t.verify(&issued.access_token).unwrap();
            assert_eq!(claims.user_id, grant.user_id);
            assert_eq!(claims.scopes, Scopes::of(&[Scope::TodosRead]));
            assert_eq!(claims.expires_at - claims.issued_at, 60);
            assert_eq!(claims.client_id, "password");
        }
    }

    #[test]
    fn a_token_records_its_issue_time_to_the_millisecond() {
        let t = tokens(key(SigningAlg::HS256), vec![]);
        let at = DateTime::from_timestamp_millis(1_790_000_000_123).unwrap();
        let claims = t.verify(&t.issue(&grant(), at).unwrap().access_token);
        // Long expired, so read without the expiry check.
        assert!(matches!(claims, Err(TokenError::Expired)));
        let now = crate::db::now();
        let claims = t
            .verify(&t.issue(&grant(), now).unwrap().access_token)
            .unwrap();
        assert_eq!(claims.issued_ms, now.timestamp_millis());
        assert_eq!(claims.issued_at, now.timestamp());
        assert_eq!(issued_ms(jti_at(at), 0), 1_790_000_000_123);
        assert_eq!(
            issued_ms(
                Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef),
                1_790_000_000
            ),
            1_790_000_000_000
        );
    }

    #[test]
    fn a_token_expires_no_later_than_its_key() {
        let t = tokens(key(SigningAlg::HS256), vec![]);
        let now = Utc::now();
        let soon = now + chrono::Duration::seconds(20);
        let issued = t
            .issue(
                &Grant {
                    not_after: Some(soon),
                    ..grant()
                },
                now,
            )
            .unwrap();
        assert_eq!(issued.expires_in, 20);
        let claims = t.verify(&issued.access_token).unwrap();
        assert_eq!(claims.expires_at, soon.timestamp());

        let later = now + chrono::Duration::hours(1);
        let issued = t
            .issue(
                &Grant {
                    not_after: Some(later),
                    ..grant()
                },
                now,
            )
            .unwrap();
        assert_eq!(issued.expires_in, 60, "the lifetime still bounds it");
    }

    #[test]
    fn a_token_from_another_key_is_invalid() {
        for alg in [SigningAlg::HS256, SigningAlg::EdDSA] {
            let issued = tokens(key(alg), vec![])
                .issue(&grant(), Utc::now())
                .unwrap();
            assert!(matches!(
                tokens(key(alg), vec![]).verify(&issued.access_token),
                Err(TokenError::Invalid)
            ));
        }
    }

    #[test]
    fn a_previous_key_still_verifies_after_a_rotation() {
        let old = key(SigningAlg::EdDSA);
        let t = tokens(same(&old), vec![]);
        let before = t.issue(&grant(), Utc::now()).unwrap().access_token;
        t.replace_keys(KeySet {
            current: key(SigningAlg::EdDSA),
            previous: vec![same(&old)],
        });
        assert!(t.verify(&before).is_ok());
        let after = t.issue(&grant(), Utc::now()).unwrap().access_token;
        assert!(t.verify(&after).is_ok());
        assert_eq!(t.public_keys().len(), 2);

        // Once the previous key is dropped, its tokens are refused, though
        // they verified a moment ago.
        t.replace_keys(KeySet {
            current: key(SigningAlg::EdDSA),
            previous: vec![],
        });
        assert!(matches!(t.verify(&before), Err(TokenError::Invalid)));
    }

    #[test]
    fn a_token_verified_before_is_still_held_to_its_expiry() {
        for alg in [SigningAlg::HS256, SigningAlg::EdDSA] {
            let t = tokens(key(alg), vec![]);
            let token = t.issue(&grant(), Utc::now()).unwrap().access_token;
            let exp = t.verify(&token).unwrap().expires_at;
            // Told a time past `exp` and the leeway, the kept claims are
            // expired (jsonwebtoken, at the system clock, would still take them).
            let leeway = LEEWAY_SECS as i64;
            assert!(t.verify_at(&token, exp + leeway).is_ok());
            assert!(matches!(
                t.verify_at(&token, exp + leeway + 1),
                Err(TokenError::Expired)
            ));
        }
    }

    #[test]
    fn a_token_verified_before_by_another_server_s_keys_is_invalid() {
        let first = tokens(key(SigningAlg::HS256), vec![]);
        let token = first.issue(&grant(), Utc::now()).unwrap().access_token;
        assert!(first.verify(&token).is_ok());
        assert!(matches!(
            tokens(key(SigningAlg::HS256), vec![]).verify(&token),
            Err(TokenError::Invalid)
        ));
        assert!(first.verify(&token).is_ok());
    }

    #[test]
    fn with_several_keys_a_token_naming_no_known_kid_is_invalid() {
        let t = tokens(key(SigningAlg::EdDSA), vec![key(SigningAlg::EdDSA)]);
        let genuine = t.issue(&grant(), Utc::now()).unwrap().access_token;
        let (head, rest) = genuine.split_once('.').unwrap();
        let mut header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap();
        for kid in [serde_json::json!("unknown"), serde_json::Value::Null] {
            header["kid"] = kid;
            let encoded = URL_SAFE_NO_PAD.encode(header.to_string());
            let forged = format!("{encoded}.{rest}");
            assert!(matches!(t.verify(&forged), Err(TokenError::Invalid)));
        }
    }

    /// `claims` signed with `key` as this server signs its tokens.
    fn signed(key: &SigningKey, claims: &serde_json::Value) -> String {
        let mut header = Header::new(key.alg().jwt());
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding_key()).unwrap()
    }

    fn claims_at(iat: i64, exp: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": "http://localhost",
            "aud": "latchkey",
            "sub": Uuid::now_v7(),
            "iat": iat,
            "exp": exp,
            "jti": Uuid::now_v7(),
            "client_id": "password",
            "scope": "todos:read",
            "role": "user",
        })
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused_beyond_the_leeway() {
        let key = key(SigningAlg::HS256);
        let t = tokens(same(&key), vec![]);
        let now = Utc::now().timestamp();
        let leeway = LEEWAY_SECS as i64;
        let within = signed(&key, &claims_at(now + leeway - 1, now + leeway + 30));
        assert!(t.verify(&within).is_ok());
        let beyond = signed(&key, &claims_at(now + leeway + 10, now + leeway + 40));
        assert!(matches!(t.verify(&beyond), Err(TokenError::NotYetValid)));
    }

    #[test]
    fn a_token_that_starts_in_the_future_is_refused_beyond_the_leeway() {
        let key = key(SigningAlg::HS256);
        let t = tokens(same(&key), vec![]);
        let now = Utc::now().timestamp();
        let leeway = LEEWAY_SECS as i64;
        let mut within = claims_at(now, now + 60);
        within["nbf"] = (now + leeway - 1).into();
        assert!(t.verify(&signed(&key, &within)).is_ok());
        let mut beyond = claims_at(now, now + 60);
        beyond["nbf"] = (now + leeway + 10).into();
        assert!(matches!(
            t.verify(&signed(&key, &beyond)),
            Err(TokenError::NotYetValid)
        ));
    }

    #[test]
    fn a_token_living_longer_than_the_lifetime_is_refused() {
        let key = key(SigningAlg::EdDSA);
        let t = tokens(same(&key), vec![]);
        let now = Utc::now().timestamp();
        assert!(t.verify(&signed(&key, &claims_at(now, now + 60))).is_ok());
        assert!(t.verify(&signed(&key, &claims_at(now, now + 10))).is_ok());
        assert!(matches!(
            t.verify(&signed(&key, &claims_at(now, now + 61))),
            Err(TokenError::TooLong)
        ));
        // Back-dated to look young enough: its whole life still counts.
        assert!(matches!(
            t.verify(&signed(&key, &claims_at(now - 3000, now + 30))),
            Err(TokenError::TooLong)
        ));
    }

    #[test]
    fn a_shared_secret_is_never_published() {
        assert!(tokens(key(SigningAlg::HS256), vec![])
            .public_keys()
            .is_empty());
    }
}
