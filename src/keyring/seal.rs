//! Sealing the keyring for a database that others administer: whoever can
//! read the database (a backup, a replica, a DBA) must not be able to sign
//! tokens. The keyring is encrypted and authenticated with
//! XChaCha20-Poly1305 under a key derived from `--keyring-secret`, which the
//! database never sees.
//!
//! A sealed keyring is one blob: a format byte, then what that format holds.
//! Format 1 is a 24-byte random nonce followed by the ciphertext and its
//! 16-byte tag. The format byte and a fixed context are authenticated too, so
//! a blob cannot be passed off as another format or as something else the
//! secret might seal one day.

use std::fmt;

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    Key, XChaCha20Poly1305, XNonce,
};
use rand::TryRngCore;

const SECRET_BYTES: usize = 32;
const FORMAT_XCHACHA20_POLY1305: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// blake3's key derivation context: the keyring's key is only ever this
/// one use of the secret.
const KEY_CONTEXT: &str = "latchkey 2026-12 signing keyring sealing key";
const AAD_CONTEXT: &[u8] = b"latchkey signing keyring";

/// Standard base64, with or without its padding: `openssl rand -base64 32`
/// pads, other tools may not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `--keyring-secret`: 32 bytes that seal the keyring kept in a
/// database. latchkey never makes one: an operator does, and gives the same
/// one to every instance on the database.
#[derive(Clone)]
pub struct KeyringSecret {
    key: [u8; 32],
}

/// Never the secret, in a log line or a panic.
impl fmt::Debug for KeyringSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyringSecret(<hidden>)")
    }
}

/// Why a text is not a keyring secret. The messages never quote the text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "--keyring-secret (LATCHKEY_KEYRING_SECRET) is not base64: give 32 random bytes in \
         standard base64, such as the output of `openssl rand -base64 32`"
    )]
    NotBase64,
    #[error(
        "--keyring-secret (LATCHKEY_KEYRING_SECRET) must be 32 bytes, base64 encoded, but it \
         decodes to {0} bytes: make one with `openssl rand -base64 32`"
    )]
    WrongLength(usize),
}

/// Why a sealed keyring cannot be opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The tag does not verify: another secret sealed it, or it was changed.
    #[error(
        "the signing keyring in the database cannot be decrypted with this --keyring-secret: \
         wrong --keyring-secret for this database (give the secret the other instances on this \
         database use), or the stored keyring was altered"
    )]
    WrongSecret,
    #[error(
        "the signing keyring in the database is sealed in format {0}, which this version of \
         latchkey does not know: upgrade latchkey"
    )]
    UnknownFormat(u8),
    #[error("the signing keyring in the database is truncated")]
    Truncated,
}

impl KeyringSecret {
    /// Reads a secret given as standard base64 (padded or not; surrounding
    /// white space, such as a file's newline, is ignored).
    pub fn parse(text: &str) -> Result<KeyringSecret, SecretError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| SecretError::NotBase64)?;
        let secret: [u8; SECRET_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::WrongLength(bytes.len()))?;
        Ok(KeyringSecret {
            key: blake3::derive_key(KEY_CONTEXT, &secret),
        })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.key))
    }
}

fn aad(format: u8) -> Vec<u8> {
    let mut aad = AAD_CONTEXT.to_vec();
    aad.push(format);
    aad
}

/// Encrypts `plaintext` under a fresh random nonce.
pub fn seal(secret: &KeyringSecret, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| anyhow::anyhow!("could not read the operating system's random generator"))?;
    let aad = aad(FORMAT_XCHACHA20_POLY1305);
    let ciphertext = secret
        .cipher()
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("could not seal the signing keyring"))?;
    let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
    sealed.push(FORMAT_XCHACHA20_POLY1305);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// Decrypts what [`seal`] made with the same secret, refusing anything
/// else.
pub fn open(secret: &KeyringSecret, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    let (&format, rest) = sealed.split_first().ok_or(OpenError::Truncated)?;
    if format != FORMAT_XCHACHA20_POLY1305 {
        return Err(OpenError::UnknownFormat(format));
    }
    if rest.len() < NONCE_BYTES + TAG_BYTES {
        return Err(OpenError::Truncated);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().expect("split at the nonce's length");
    secret
        .cipher()
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad(format),
            },
        )
        .map_err(|_| OpenError::WrongSecret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> KeyringSecret {
        KeyringSecret::parse(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_sealed_keyring_opens_with_its_secret_and_hides_its_plaintext() {
        let plaintext = br#"{"keys":[{"private_key":"very secret"}]}"#;

        let sealed = seal(&secret(7), plaintext).unwrap();

        assert_eq!(open(&secret(7), &sealed).unwrap(), plaintext);
        assert_eq!(sealed[0], FORMAT_XCHACHA20_POLY1305);
        assert_eq!(sealed.len(), 1 + NONCE_BYTES + plaintext.len() + TAG_BYTES);
        assert!(!sealed.windows(11).any(|w| w == b"very secret"));
    }

    #[test]
    fn each_seal_has_a_fresh_nonce() {
        let first = seal(&secret(7), b"same").unwrap();
        let second = seal(&secret(7), b"same").unwrap();

        assert_ne!(first[1..1 + NONCE_BYTES], second[1..1 + NONCE_BYTES]);
        assert_ne!(first, second);
    }

    #[test]
    fn another_secret_cannot_open_it() {
        let sealed = seal(&secret(7), b"keys").unwrap();

        assert_eq!(open(&secret(8), &sealed), Err(OpenError::WrongSecret));
        assert!(OpenError::WrongSecret
            .to_string()
            .contains("wrong --keyring-secret for this database"));
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let sealed = seal(&secret(7), b"keys").unwrap();

        for i in 1..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert_eq!(
                open(&secret(7), &tampered),
                Err(OpenError::WrongSecret),
                "byte {i}"
            );
        }
        let mut other_format = sealed.clone();
        other_format[0] = 2;
        assert_eq!(
            open(&secret(7), &other_format),
            Err(OpenError::UnknownFormat(2))
        );
        assert_eq!(
            open(&secret(7), &sealed[..sealed.len() - 1]),
            Err(OpenError::WrongSecret)
        );
        assert_eq!(
            open(&secret(7), &sealed[..NONCE_BYTES]),
            Err(OpenError::Truncated)
        );
        assert_eq!(open(&secret(7), &[]), Err(OpenError::Truncated));
    }

    #[test]
    fn a_secret_is_32_bytes_of_standard_base64_padded_or_not() {
        let padded = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let unpadded = padded.trim_end_matches('=');
        assert!(padded.ends_with('='));

        let from_padded = KeyringSecret::parse(&format!("{padded}\n")).unwrap();
        let from_unpadded = KeyringSecret::parse(unpadded).unwrap();

        let sealed = seal(&from_padded, b"keys").unwrap();
        assert_eq!(open(&from_unpadded, &sealed).unwrap(), b"keys");
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 31]);
        assert_eq!(
            KeyringSecret::parse(&short).err(),
            Some(SecretError::WrongLength(31))
        );
        assert_eq!(
            KeyringSecret::parse("not base64!").err(),
            Some(SecretError::NotBase64)
        );
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 32]);
        assert_eq!(
            KeyringSecret::parse(&url_safe).err(),
            Some(SecretError::NotBase64)
        );
    }

    #[test]
    fn a_secret_never_shows_in_debug_or_errors() {
        let text = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
        let secret = KeyringSecret::parse(&text).unwrap();

        assert_eq!(format!("{secret:?}"), "KeyringSecret(<hidden>)");
        let short = &text[..20];
        let error = KeyringSecret::parse(short).err().unwrap().to_string();
        assert!(!error.contains(short), "{error}");
    }
}
