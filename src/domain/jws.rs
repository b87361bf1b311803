//! Signing a compact JWS (RFC 7515 §7.1) with a key prepared once.
//!
//! jsonwebtoken 10 (`rust_crypto`) builds its signer from the `EncodingKey`
//! on every `encode`: for Ed25519 it parses the PKCS#8 DER and derives the
//! public key, a scalar multiplication as dear as the signature itself; for
//! HS256 it runs the HMAC key schedule. A token exchange signs one token, so
//! that was most of its signing cost. What is left is small enough to do
//! here: the header's segment is encoded once per key, and a token is that
//! segment, the claims' JSON and the signature, each base64url without
//! padding, exactly as jsonwebtoken writes them (the tests compare bytes).
//! Verification stays with jsonwebtoken and its claim checks.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::Header;
use serde::Serialize;
use sha2::Sha256;

/// The private key, ready to sign.
#[derive(Clone)]
pub enum SignWith {
    /// The HMAC state after the key schedule, cloned for each token.
    Hs256(Hmac<Sha256>),
    Ed25519(ed25519_dalek::SigningKey),
}

/// Signs tokens with one header and one key.
pub struct JwsSigner {
    /// The header's base64url segment.
    header: String,
    key: SignWith,
}

impl JwsSigner {
    pub fn new(header: &Header, key: SignWith) -> JwsSigner {
        let json = serde_json::to_vec(header).expect("a JWT header always serialises");
        JwsSigner {
            header: URL_SAFE_NO_PAD.encode(json),
            key,
        }
    }

    pub fn sign(&self, claims: &impl Serialize) -> Result<String, serde_json::Error> {
        let claims = serde_json::to_vec(claims)?;
        // Header, claims and an Ed25519 signature's 86 characters.
        let mut token = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 92);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = match &self.key {
            SignWith::Hs256(prepared) => {
                let mut mac = prepared.clone();
                mac.update(token.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            SignWith::Ed25519(key) => key.sign(token.as_bytes()).to_bytes().to_vec(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Validation;

    use super::*;
    use crate::domain::signing::{SigningAlg, SigningKey};

    fn header(key: &SigningKey) -> Header {
        let mut header = Header::new(key.alg().jwt());
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid().to_owned());
        header
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "sub": "ada",
            "exp": jsonwebtoken::get_current_timestamp() + 60,
            "scope": "todos:read todos:write",
        })
    }

    #[test]
    fn a_token_is_byte_for_byte_what_jsonwebtoken_writes() {
        // Both signatures are deterministic (HMAC, and Ed25519 by RFC 8032).
        for alg in [SigningAlg::HS256, SigningAlg::EdDSA] {
            let key = SigningKey::generate(alg).unwrap();
            let ours = JwsSigner::new(&header(&key), key.sign_with())
                .sign(&claims())
                .unwrap();
            let theirs =
                jsonwebtoken::encode(&header(&key), &claims(), &key.encoding_key()).unwrap();
            assert_eq!(ours, theirs, "{alg:?}");
        }
    }

    #[test]
    fn jsonwebtoken_verifies_a_token_and_refuses_it_altered() {
        for alg in [SigningAlg::HS256, SigningAlg::EdDSA] {
            let key = SigningKey::generate(alg).unwrap();
            let token = JwsSigner::new(&header(&key), key.sign_with())
                .sign(&claims())
                .unwrap();
            let mut validation = Validation::new(alg.jwt());
            validation.required_spec_claims.clear();
            let decoded =
                jsonwebtoken::decode::<serde_json::Value>(&token, &key.decoding_key(), &validation)
                    .unwrap();
            assert_eq!(decoded.claims["sub"], "ada");
            assert_eq!(decoded.header.kid.as_deref(), Some(key.kid()));
            assert_eq!(decoded.header.typ.as_deref(), Some("at+jwt"));

            // One character of the signature changed.
            let at = token.len() - 10;
            let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
            let altered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
            assert!(jsonwebtoken::decode::<serde_json::Value>(
                &altered,
                &key.decoding_key(),
                &validation
            )
            .is_err());
        }
    }
}
