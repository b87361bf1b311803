//! Accounts: email and password rules, and password hashing with argon2id.

use std::{
    collections::HashSet,
    fmt,
    sync::{LazyLock, OnceLock},
};

use unicode_normalization::UnicodeNormalization;

use argon2::password_hash::PasswordHash;

use super::argon2id;

/// An email address, validated and folded so that two spellings of one
/// mailbox are one account: lower-cased (`A@x.io` and `a@x.io`),
/// NFC-normalised (a precomposed `ä` and `a` followed by a combining
/// diaeresis), and its domain in IDNA ASCII form (`exämple.com` and
/// `xn--exmple-cua.com`). A look-alike from another script, such as a
/// Cyrillic `а` for a Latin `a`, is another domain and stays another address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// The longest address SMTP carries (RFC 5321 §4.5.3.1.3, less the brackets), in bytes.
pub const EMAIL_MAX: usize = 254;

impl Email {
    pub fn parse(s: &str) -> Result<Email, &'static str> {
        const NOT_AN_EMAIL: &str = "must be an email address such as ada@example.com";
        let s: String = s.trim().to_lowercase().nfc().collect();
        if s.len() > EMAIL_MAX {
            return Err("must be at most 254 characters");
        }
        let (local, domain) = s.rsplit_once('@').ok_or(NOT_AN_EMAIL)?;
        // A domain literal (`[192.0.2.1]`) is no name to fold.
        let domain = if domain.starts_with('[') {
            domain.to_owned()
        } else {
            idna::domain_to_ascii(domain).map_err(|_| NOT_AN_EMAIL)?
        };
        let folded = format!("{local}@{domain}");
        if folded.len() > EMAIL_MAX {
            return Err("must be at most 254 characters");
        }
        if !email_address::EmailAddress::is_valid(&folded) {
            return Err(NOT_AN_EMAIL);
        }
        Ok(Email(folded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// The 10 000 most common passwords, most common first, all lower case
/// (zxcvbn's list; its licence is beside it). They are the first guesses of
/// any attack, so no length rule makes them safe.
const COMMON_PASSWORDS: &str = include_str!("../../data/common-passwords.txt");

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: LazyLock<HashSet<&'static str>> =
        LazyLock::new(|| COMMON_PASSWORDS.lines().collect());
    &SET
}

impl Password {
    /// A new password must be 8 to 128 characters (the upper bound keeps one
    /// request from buying a long argon2 run), not only whitespace, and not
    /// one of the most common passwords in any case: `Password1` is guessed
    /// as early as `password1`.
    pub fn parse_new(s: String) -> Result<Password, &'static str> {
        match s.chars().count() {
            n if n < PASSWORD_MIN => Err("must be at least 8 characters"),
            n if n > PASSWORD_MAX => Err("must be at most 128 characters"),
            _ if s.trim().is_empty() => Err("must not be only whitespace"),
            _ if common_passwords().contains(s.to_lowercase().as_str()) => Err(
                "is one of the 10 000 most common passwords, which attackers try first; \
                 choose a longer or less predictable one, such as a few unrelated words",
            ),
            _ => Ok(Password(s)),
        }
    }

    /// A password offered at login is only checked, never judged.
    pub fn offered(s: String) -> Password {
        Password(s)
    }

    /// Slow on purpose: call it from a blocking thread.
    pub fn hash(&self) -> Result<String, argon2::password_hash::Error> {
        argon2id::hash(self.0.as_bytes())
    }

    /// Slow on purpose: call it from a blocking thread. With no stored hash
    /// (unknown account) it still runs argon2 against a dummy hash, so timing
    /// doesn't reveal which emails have accounts.
    pub fn verify(&self, stored: Option<&str>) -> bool {
        let dummy = dummy_hash();
        let (hash, known) = match stored {
            Some(h) => (h, true),
            None => (dummy, false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let matches = argon2id::verify(self.0.as_bytes(), &parsed).unwrap_or(false);
        known && matches
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Password("not a real password, only a timing stand-in".into())
            .hash()
            .expect("argon2 with default parameters hashes any input")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn an_internationalised_domain_is_folded_to_its_ascii_form() {
        let folded = Email::parse("user@xn--exmple-cua.com").unwrap();
        assert_eq!(folded.as_str(), "user@xn--exmple-cua.com");
        for spelling in [
            "user@exämple.com",
            "User@EXÄMPLE.com",
            "user@exa\u{308}mple.com",
            "user@xn--EXMPLE-cua.com",
        ] {
            assert_eq!(Email::parse(spelling).unwrap(), folded, "{spelling:?}");
        }
    }

    #[test]
    fn the_local_part_is_nfc_normalised_and_kept_otherwise() {
        let composed = Email::parse("j\u{f6}rg@example.com").unwrap();
        assert_eq!(composed.as_str(), "jörg@example.com");
        assert_eq!(Email::parse("jo\u{308}rg@example.com").unwrap(), composed);
        assert_eq!(Email::parse("JÖRG@example.com").unwrap(), composed);
    }

    #[test]
    fn a_look_alike_from_another_script_is_another_address() {
        // The `а` of "exаmple" below is U+0430, CYRILLIC SMALL LETTER A.
        let look_alike = Email::parse("user@ex\u{430}mple.com").unwrap();
        assert_ne!(look_alike, Email::parse("user@example.com").unwrap());
        assert!(
            look_alike.as_str().starts_with("user@xn--"),
            "{look_alike:?}"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "a\0b@example.com",
            "\"a\0b\"@example.com",
            "ada@exa..mple.com",
            "ada@xn--a.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_must_be_8_to_128_characters() {
        assert!(Password::parse_new("1234567".into()).is_err());
        assert!(Password::parse_new("0a1b2c3d".into()).is_ok());
        assert!(Password::parse_new("é".repeat(128)).is_ok());
        assert!(Password::parse_new("x".repeat(129)).is_err());
    }

    #[test]
    fn a_password_of_only_whitespace_is_refused() {
        for blank in [" ".repeat(8), "\t\n \u{a0}\u{3000}   ".into()] {
            assert_eq!(
                Password::parse_new(blank).unwrap_err(),
                "must not be only whitespace"
            );
        }
        assert!(Password::parse_new("  a b c d  ".into()).is_ok());
    }

    #[test]
    fn the_list_holds_10_000_distinct_lower_case_passwords() {
        assert_eq!(COMMON_PASSWORDS.lines().count(), 10_000);
        assert_eq!(common_passwords().len(), 10_000);
        assert!(common_passwords()
            .iter()
            .all(|p| !p.is_empty() && *p == p.to_lowercase()));
    }

    #[test]
    fn every_listed_password_of_a_valid_length_is_refused_in_any_case() {
        let long_enough = common_passwords()
            .iter()
            .filter(|p| p.chars().count() >= PASSWORD_MIN);
        let mut checked = 0;
        for common in long_enough {
            for spelling in [common.to_string(), common.to_uppercase()] {
                assert!(Password::parse_new(spelling).is_err(), "{common}");
            }
            checked += 1;
        }
        assert!(checked > 3000, "{checked}");
        assert!(Password::parse_new("PassWord".into()).is_err());
        assert!(Password::parse_new("12345678".into()).is_err());
    }

    #[test]
    fn only_the_whole_password_is_compared() {
        // "password" is listed; a longer password holding it is not.
        assert!(Password::parse_new("password and more".into()).is_ok());
        assert!(Password::parse_new(" password".into()).is_ok());
        assert!(Password::parse_new("correct horse battery".into()).is_ok());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = Password::offered("correct horse".into()).hash().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(Password::offered("correct horse".into()).verify(Some(&hash)));
        assert!(!Password::offered("wrong horse".into()).verify(Some(&hash)));
        assert!(!Password::offered("correct horse".into()).verify(None));
    }

    #[test]
    fn debug_hides_the_password() {
        assert!(!format!("{:?}", Password::offered("hunter22".into())).contains("hunter22"));
    }
}
