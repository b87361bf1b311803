//! The API key format: `lk_`, 43 random base62 characters (256 bits), then a
//! 6-character base62 CRC32 of them. One word to double-click, recognisable by
//! secret scanners, and a typo is caught by the checksum before any database work.

use std::fmt;

use rand::{distr::Alphanumeric, Rng, TryRngCore};

pub const PREFIX: &str = "lk_";
/// 62^43 > 2^256: 43 uniformly drawn base62 characters carry at least 256 bits.
const RANDOM_LEN: usize = 43;
/// 62^6 > 2^32: six base62 digits hold any CRC32.
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A well-formed API key. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

/// Why a string is not an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("an API key starts with `lk_`")]
    Prefix,
    #[error("an API key is {KEY_LEN} characters long")]
    Length,
    #[error("an API key holds only the characters 0-9, A-Z and a-z after `lk_`")]
    Alphabet,
    #[error("the API key's checksum does not match; it was probably mistyped or truncated")]
    Checksum,
}

/// What the database stores in place of a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

/// Hex digits of a key's hash that name it in the audit log.
pub const FINGERPRINT_LEN: usize = 16;

impl KeyHash {
    /// The first 64 bits of the hash, in hex: how the audit log names a key
    /// it does not know, as GitHub's names a token. A key has 256 random
    /// bits, so its hash's prefix says nothing about it.
    pub fn fingerprint(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex()[..FINGERPRINT_LEN].to_owned()
    }
}

impl ApiKey {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> ApiKey {
        ApiKey::generate_with(&mut rand::rngs::OsRng.unwrap_err())
    }

    /// A new key from `rng`, which must be a CSPRNG: a thread's own
    /// generator makes the many keys a benchmark seeds faster than asking
    /// the operating system for every character.
    pub fn generate_with(rng: &mut impl Rng) -> ApiKey {
        let random: String = rng
            .sample_iter(Alphanumeric)
            .take(RANDOM_LEN)
            .map(char::from)
            .collect();
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(PREFIX);
        key.push_str(&random);
        key.push_str(&checksum(random.as_bytes()));
        ApiKey(key)
    }

    pub fn parse(s: &str) -> Result<ApiKey, KeyFormatError> {
        let body = s.strip_prefix(PREFIX).ok_or(KeyFormatError::Prefix)?;
        if s.len() != KEY_LEN {
            return Err(KeyFormatError::Length);
        }
        if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyFormatError::Alphabet);
        }
        let (random, sum) = body.split_at(RANDOM_LEN);
        if checksum(random.as_bytes()) != sum {
            return Err(KeyFormatError::Checksum);
        }
        Ok(ApiKey(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash(*blake3::hash(self.0.as_bytes()).as_bytes())
    }

    /// `lk_…` and the last four characters: tells keys apart without revealing them.
    pub fn hint(&self) -> String {
        format!("{PREFIX}…{}", &self.0[KEY_LEN - 4..])
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

fn checksum(random: &[u8]) -> String {
    let mut n = crc32fast::hash(random);
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(n % 62) as usize];
        n /= 62;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_has_the_documented_shape_and_parses() {
        let key = ApiKey::generate();
        let s = key.expose();
        assert_eq!(s.len(), KEY_LEN);
        assert!(s.starts_with("lk_"));
        assert!(s[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(ApiKey::parse(s), Ok(key));
    }

    #[test]
    fn a_fingerprint_is_a_prefix_of_the_hash_and_holds_nothing_of_the_key() {
        let key = ApiKey::generate();

        let fingerprint = key.hash().fingerprint();

        assert_eq!(fingerprint.len(), FINGERPRINT_LEN);
        assert!(blake3::hash(key.expose().as_bytes())
            .to_hex()
            .starts_with(&fingerprint));
        assert!(!key.expose().contains(&fingerprint));
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(ApiKey::generate(), ApiKey::generate());
    }

    #[test]
    fn every_single_character_typo_is_caught_by_the_checksum() {
        let key = ApiKey::generate();
        let s = key.expose();
        for i in PREFIX.len()..KEY_LEN {
            let mut bytes = s.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert_eq!(ApiKey::parse(&typo), Err(KeyFormatError::Checksum), "{i}");
        }
    }

    #[test]
    fn swapped_neighbours_are_caught_by_the_checksum() {
        let key = ApiKey::generate();
        let mut bytes = key.expose().as_bytes().to_vec();
        let i = (PREFIX.len()..KEY_LEN - 1)
            .find(|&i| bytes[i] != bytes[i + 1])
            .unwrap();
        bytes.swap(i, i + 1);
        let swapped = String::from_utf8(bytes).unwrap();
        assert_eq!(ApiKey::parse(&swapped), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn malformed_keys_say_what_is_wrong() {
        let key = ApiKey::generate();
        let s = key.expose();
        assert_eq!(ApiKey::parse(&s[3..]), Err(KeyFormatError::Prefix));
        assert_eq!(
            ApiKey::parse(&format!("gh_{}", &s[3..])),
            Err(KeyFormatError::Prefix)
        );
        assert_eq!(
            ApiKey::parse(&s[..KEY_LEN - 1]),
            Err(KeyFormatError::Length)
        );
        assert_eq!(ApiKey::parse(&format!("{s}0")), Err(KeyFormatError::Length));
        let dashed = format!("lk_-{}", &s[4..]);
        assert_eq!(ApiKey::parse(&dashed), Err(KeyFormatError::Alphabet));
        let multibyte = format!("lk_é{}", &s[5..]);
        assert_eq!(ApiKey::parse(&multibyte), Err(KeyFormatError::Alphabet));
        assert_eq!(ApiKey::parse(""), Err(KeyFormatError::Prefix));
    }

    #[test]
    fn a_random_string_of_the_right_shape_fails_the_checksum() {
        let fake = format!("lk_{}", "A".repeat(RANDOM_LEN + CHECKSUM_LEN));
        assert_eq!(ApiKey::parse(&fake), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn the_checksum_is_six_base62_digits_of_crc32() {
        assert_eq!(checksum(b""), "000000");
        // 0xFFFFFFFF, the largest CRC32, still fits in six digits.
        assert!(u64::from(u32::MAX) < 62u64.pow(6));
        assert_eq!(checksum(b"a").len(), CHECKSUM_LEN);
    }

    #[test]
    fn the_hint_shows_the_prefix_and_last_four_only() {
        let key = ApiKey::generate();
        let hint = key.hint();
        assert!(hint.starts_with("lk_…"));
        assert!(key.expose().ends_with(&hint["lk_…".len()..]));
        assert_eq!(hint.chars().count(), 8);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = ApiKey::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn the_hash_is_blake3_of_the_whole_key() {
        let key = ApiKey::generate();
        assert_eq!(
            key.hash().0,
            *blake3::hash(key.expose().as_bytes()).as_bytes()
        );
    }
}
