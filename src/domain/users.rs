//! Accounts: email and password rules, and password hashing with argon2id.

use std::{fmt, sync::OnceLock};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

/// An email address, validated and lower-cased so that `A@x.io` and `a@x.io`
/// are one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Email, &'static str> {
        let s = s.trim().to_lowercase();
        if s.len() > 254 {
            return Err("must be at most 254 characters");
        }
        if !email_address::EmailAddress::is_valid(&s) {
            return Err("must be an email address such as ada@example.com");
        }
        Ok(Email(s))
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

impl Password {
    /// A new password must be 8 to 128 characters; the upper bound keeps one
    /// request from buying a long argon2 run.
    pub fn parse_new(s: String) -> Result<Password, &'static str> {
        match s.chars().count() {
            n if n < PASSWORD_MIN => Err("must be at least 8 characters"),
            n if n > PASSWORD_MAX => Err("must be at most 128 characters"),
            _ => Ok(Password(s)),
        }
    }

    /// A password offered at login is only checked, never judged.
    pub fn offered(s: String) -> Password {
        Password(s)
    }

    /// Slow on purpose: call it from a blocking thread.
    pub fn hash(&self) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::generate(&mut OsRng);
        Ok(Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)?
            .to_string())
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
        let matches = Argon2::default()
            .verify_password(self.0.as_bytes(), &parsed)
            .is_ok();
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
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "a\0b@example.com",
            "\"a\0b\"@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_must_be_8_to_128_characters() {
        assert!(Password::parse_new("1234567".into()).is_err());
        assert!(Password::parse_new("12345678".into()).is_ok());
        assert!(Password::parse_new("é".repeat(128)).is_ok());
        assert!(Password::parse_new("x".repeat(129)).is_err());
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
