//! Token signing keys: what they are made of, how they are named, and what of
//! them may be published. Where they are kept is `keyring`'s business.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ed25519_dalek::pkcs8::{
    spki::der::pem::LineEnding, DecodePrivateKey, EncodePrivateKey, KeypairBytes,
};
use hmac::{Hmac, Mac};
use jsonwebtoken::{
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, OctetKeyPairParameters,
        OctetKeyPairType, ThumbprintHash,
    },
    Algorithm, DecodingKey,
};
use rand::TryRngCore;

use super::jws::SignWith;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_SECRET_BYTES: usize = 32;

/// A configured secret with fewer different bytes than this is a word, a
/// pattern or a repeated character rather than random bytes (`x` 32 times
/// is 32 bytes long); 32 random bytes, even as hex, have more.
const MIN_DISTINCT_SECRET_BYTES: usize = 16;

/// How a strong secret is made, for the messages that refuse a weak one.
pub const MAKE_A_SECRET: &str = "`openssl rand -base64 48` makes one";

/// The algorithms tokens can be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SigningAlg {
    /// HMAC with SHA-256 and a shared secret: only this server can verify.
    HS256,
    /// Ed25519 signatures: anyone holding the published public key can verify.
    EdDSA,
}

impl SigningAlg {
    pub fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::HS256 => Algorithm::HS256,
            SigningAlg::EdDSA => Algorithm::EdDSA,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::HS256 => "HS256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("an HS256 secret must be at least {MIN_SECRET_BYTES} bytes long")]
    ShortSecret,
    #[error(
        "an HS256 secret must be at least {MIN_SECRET_BYTES} bytes long with at least \
         {MIN_DISTINCT_SECRET_BYTES} different byte values, as random bytes are; {MAKE_A_SECRET}"
    )]
    WeakSecret,
    #[error(
        "not a PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519` makes one)"
    )]
    NotEd25519,
    #[error("could not read the operating system's random number generator")]
    Random,
}

/// One signing key with its id. The private half never leaves this type except
/// through [`SigningKey::private_text`], which is how the keyring stores it.
// No `Debug`: it holds a secret.
pub struct SigningKey {
    kid: String,
    material: Material,
}

enum Material {
    /// The secret's bytes as configured or stored (text, used as is).
    Hs256(Vec<u8>),
    Ed25519(ed25519_dalek::SigningKey),
}

impl SigningKey {
    pub fn hs256(secret: &[u8]) -> Result<SigningKey, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret);
        }
        Ok(SigningKey {
            kid: secret_key_id(secret),
            material: Material::Hs256(secret.to_vec()),
        })
    }

    /// An HS256 key from a secret an operator configured, which must also
    /// look random: unlike a generated one, it may be a word or a pattern.
    pub fn hs256_configured(secret: &[u8]) -> Result<SigningKey, KeyError> {
        let distinct = secret
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        if secret.len() < MIN_SECRET_BYTES || distinct < MIN_DISTINCT_SECRET_BYTES {
            return Err(KeyError::WeakSecret);
        }
        SigningKey::hs256(secret)
    }

    pub fn ed25519_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(SigningKey::ed25519)
            .map_err(|_| KeyError::NotEd25519)
    }

    fn ed25519(key: ed25519_dalek::SigningKey) -> SigningKey {
        SigningKey {
            kid: thumbprint(&public_x(&key)),
            material: Material::Ed25519(key),
        }
    }

    /// A new key from the operating system's random number generator. An
    /// HS256 secret is 32 random bytes kept as base64url text, so it can be
    /// copied into `LATCHKEY_JWT_SECRET` as it stands.
    pub fn generate(alg: SigningAlg) -> Result<SigningKey, KeyError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        match alg {
            SigningAlg::HS256 => SigningKey::hs256(URL_SAFE_NO_PAD.encode(bytes).as_bytes()),
            SigningAlg::EdDSA => Ok(SigningKey::ed25519(ed25519_dalek::SigningKey::from_bytes(
                &bytes,
            ))),
        }
    }

    /// Reads a key back from [`SigningKey::private_text`].
    pub fn from_private_text(alg: SigningAlg, text: &str) -> Result<SigningKey, KeyError> {
        match alg {
            SigningAlg::HS256 => SigningKey::hs256(text.as_bytes()),
            SigningAlg::EdDSA => SigningKey::ed25519_from_pem(text),
        }
    }

    /// The secret (HS256) or the PKCS#8 PEM private key (EdDSA), for storage.
    pub fn private_text(&self) -> String {
        match &self.material {
            Material::Hs256(secret) => String::from_utf8_lossy(secret).into_owned(),
            Material::Ed25519(key) => pkcs8_v1(key)
                .to_pkcs8_pem(LineEnding::LF)
                .expect("an Ed25519 key always encodes")
                .to_string(),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlg {
        match self.material {
            Material::Hs256(_) => SigningAlg::HS256,
            Material::Ed25519(_) => SigningAlg::EdDSA,
        }
    }

    /// The private key prepared for signing, once per key set.
    pub fn sign_with(&self) -> SignWith {
        match &self.material {
            Material::Hs256(secret) => SignWith::Hs256(
                Hmac::new_from_slice(secret).expect("HMAC takes a key of any length"),
            ),
            Material::Ed25519(key) => SignWith::Ed25519(key.clone()),
        }
    }

    /// jsonwebtoken's form of the private key, which [`SigningKey::sign_with`]
    /// signs the same with; kept for the tests that forge tokens.
    #[cfg(test)]
    pub fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        match &self.material {
            Material::Hs256(secret) => jsonwebtoken::EncodingKey::from_secret(secret),
            Material::Ed25519(key) => jsonwebtoken::EncodingKey::from_ed_der(
                pkcs8_v1(key)
                    .to_pkcs8_der()
                    .expect("an Ed25519 key always encodes")
                    .as_bytes(),
            ),
        }
    }

    pub fn decoding_key(&self) -> DecodingKey {
        match &self.material {
            Material::Hs256(secret) => DecodingKey::from_secret(secret),
            Material::Ed25519(key) => DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
        }
    }

    /// What may be published: the public key of an asymmetric key, never a
    /// shared secret.
    pub fn public_key(&self) -> Option<PublicKey> {
        match &self.material {
            Material::Hs256(_) => None,
            Material::Ed25519(key) => Some(PublicKey {
                kid: self.kid.clone(),
                alg: SigningAlg::EdDSA,
                x: public_x(key),
            }),
        }
    }
}

/// An Ed25519 public key as RFC 8037 puts it in a JWK (`kty: OKP`,
/// `crv: Ed25519`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// The public key, base64url.
    pub x: String,
}

/// The private key alone (RFC 8410's PKCS#8 v1), as `openssl genpkey`
/// writes it: OpenSSL 3.0 and Python's `cryptography` refuse the v2 form
/// with the public key inside, so a key taken elsewhere would not load.
fn pkcs8_v1(key: &ed25519_dalek::SigningKey) -> KeypairBytes {
    KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
}

fn public_x(key: &ed25519_dalek::SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())
}

/// RFC 7638 JWK thumbprint: the id other services and libraries expect for a
/// published key, and the same on every server that holds the key.
fn thumbprint(x: &str) -> String {
    Jwk {
        common: CommonParameters::default(),
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: x.to_owned(),
        }),
    }
    .thumbprint(ThumbprintHash::SHA256)
}

/// Names a shared secret without revealing anything about it.
fn secret_key_id(secret: &[u8]) -> String {
    let digest = blake3::derive_key("latchkey 2026-11 HS256 key id", secret);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_key_id_names_the_secret_without_showing_it() {
        let kid = secret_key_id(&[0x41; 32]);
        assert_eq!(kid.len(), 16);
        assert_eq!(kid, secret_key_id(&[0x41; 32]));
        assert_ne!(kid, secret_key_id(&[0x42; 32]));
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            SigningKey::hs256(b"short"),
            Err(KeyError::ShortSecret)
        ));
    }

    #[test]
    fn a_configured_secret_must_be_long_and_varied() {
        let weak: [&[u8]; 4] = [
            // 31 bytes, each different.
            b"0123456789abcdefghijklmnopqrstu",
            &[b'x'; 64],
            // 45 bytes, but only 15 different values.
            b"abcdefghijklmnoabcdefghijklmnoabcdefghijklmno",
            b"0123456789abcde0123456789abcde0123456789abcde",
        ];
        for secret in weak {
            let refused = SigningKey::hs256_configured(secret);
            assert!(matches!(refused, Err(KeyError::WeakSecret)), "{secret:?}");
        }
        // 32 bytes with 16 values: just enough.
        assert!(SigningKey::hs256_configured(b"abcdefghijklmnopabcdefghijklmnop").is_ok());
        let generated = SigningKey::generate(SigningAlg::HS256).unwrap();
        assert!(SigningKey::hs256_configured(generated.private_text().as_bytes()).is_ok());
        assert!(KeyError::WeakSecret.to_string().contains(MAKE_A_SECRET));
    }

    #[test]
    fn keys_survive_their_stored_form() {
        for alg in [SigningAlg::HS256, SigningAlg::EdDSA] {
            let key = SigningKey::generate(alg).unwrap();
            let back = SigningKey::from_private_text(alg, &key.private_text()).unwrap();
            assert_eq!(back.kid(), key.kid());
            assert_eq!(back.alg(), alg);
        }
    }

    #[test]
    fn an_ed25519_key_is_stored_as_openssl_writes_it() {
        let key = SigningKey::generate(SigningAlg::EdDSA).unwrap();
        let stored = KeypairBytes::from_pkcs8_pem(&key.private_text()).unwrap();
        assert!(
            stored.public_key.is_none(),
            "PKCS#8 v1: the private key alone"
        );
    }

    #[test]
    fn only_an_asymmetric_key_has_a_public_half() {
        assert!(SigningKey::generate(SigningAlg::HS256)
            .unwrap()
            .public_key()
            .is_none());
        let ed = SigningKey::generate(SigningAlg::EdDSA).unwrap();
        let public = ed.public_key().unwrap();
        assert_eq!(public.kid, ed.kid());
        assert_eq!(URL_SAFE_NO_PAD.decode(&public.x).unwrap().len(), 32);
    }

    #[test]
    fn the_ed25519_key_id_is_the_rfc_7638_thumbprint() {
        // RFC 8037 Appendix A.3: the thumbprint of the example public key.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        assert_eq!(thumbprint(x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn a_pem_that_is_not_ed25519_is_refused() {
        assert!(matches!(
            SigningKey::ed25519_from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(KeyError::NotEd25519)
        ));
    }
}
