//! Pages of a list: how many items, where the next page starts. Every list
//! the API serves (todos, accounts, keys) pages the same way.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use uuid::Uuid;

use crate::error::{self, Error, FieldError};

pub const LIMIT_DEFAULT: u32 = 20;
pub const LIMIT_MAX: u32 = 100;
/// A page of keys holds the most a page may: with the default cap on active
/// keys per account, one page shows an account's keys unless it also holds
/// revoked or expired ones.
pub const KEYS_LIMIT_DEFAULT: u32 = LIMIT_MAX;

/// How many items a page holds: 1 to 100, 20 when not asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub fn parse(n: Option<i64>) -> Result<Limit, &'static str> {
        Self::parse_or(n, LIMIT_DEFAULT)
    }

    /// Like [`Limit::parse`], with another default (at most [`LIMIT_MAX`]).
    pub fn parse_or(n: Option<i64>, default: u32) -> Result<Limit, &'static str> {
        match n {
            None => Ok(Limit(default.clamp(1, LIMIT_MAX))),
            Some(n) if (1..=i64::from(LIMIT_MAX)).contains(&n) => Ok(Limit(n as u32)),
            Some(_) => Err("must be between 1 and 100"),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where the next page starts: the id of the last item returned. Ids are
/// UUIDv7, so id order is creation order and a cursor stays valid while rows
/// are added or deleted. Opaque to clients: they only pass back `next_cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub Uuid);

/// What [`Cursor::parse`] takes, as the spec states it: 16 bytes in unpadded
/// base64url are 22 characters, the last of which carries 2 bits and 4 zero
/// bits.
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{21}[AQgw]$";

impl Cursor {
    pub fn parse(s: &str) -> Result<Cursor, &'static str> {
        const BAD: &str = "is not a cursor from this API; pass back `next_cursor` unchanged";
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| BAD)?;
        let id = Uuid::from_slice(&bytes).map_err(|_| BAD)?;
        Ok(Cursor(id))
    }

    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }
}

/// Splits a page fetched with one extra row into the items and the cursor of the
/// next page, if there is one.
pub fn paginate<T>(
    mut rows: Vec<T>,
    limit: Limit,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<T>, Option<String>) {
    if rows.len() > limit.get() as usize {
        rows.truncate(limit.get() as usize);
        let next = rows.last().map(|last| Cursor(id(last)).encode());
        (rows, next)
    } else {
        (rows, None)
    }
}

/// Reads `limit` and `cursor`, reporting both if both are wrong.
pub fn page_params(
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<(Limit, Option<Cursor>), Error> {
    page_params_or(limit, cursor, LIMIT_DEFAULT)
}

/// Like [`page_params`], for a list whose pages hold `default` items unless
/// asked otherwise.
pub fn page_params_or(
    limit: Option<i64>,
    cursor: Option<&str>,
    default: u32,
) -> Result<(Limit, Option<Cursor>), Error> {
    let limit = Limit::parse_or(limit, default).map_err(|m| FieldError::new("limit", m));
    let cursor = cursor
        .map(Cursor::parse)
        .transpose()
        .map_err(|m| FieldError::new("cursor", m));
    error::both(limit, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_to_20_and_stay_within_1_to_100() {
        assert_eq!(Limit::parse(None).unwrap().get(), 20);
        assert_eq!(Limit::parse(Some(100)).unwrap().get(), 100);
        assert!(Limit::parse(Some(0)).is_err());
        assert!(Limit::parse(Some(101)).is_err());
        assert!(Limit::parse(Some(-1)).is_err());
    }

    #[test]
    fn another_default_changes_only_what_an_unasked_page_holds() {
        assert_eq!(
            Limit::parse_or(None, KEYS_LIMIT_DEFAULT).unwrap().get(),
            100
        );
        assert_eq!(
            Limit::parse_or(Some(3), KEYS_LIMIT_DEFAULT).unwrap().get(),
            3
        );
        assert!(Limit::parse_or(Some(101), KEYS_LIMIT_DEFAULT).is_err());
        assert!(Limit::parse_or(Some(0), KEYS_LIMIT_DEFAULT).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor(Uuid::now_v7());
        assert_eq!(Cursor::parse(&c.encode()).unwrap(), c);
        assert!(Cursor::parse("not a cursor").is_err());
        assert!(Cursor::parse("AAAA").is_err());
    }

    #[test]
    fn a_page_with_an_extra_row_has_a_next_cursor() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (items, next) = paginate(ids.clone(), Limit::parse(Some(2)).unwrap(), |id| *id);
        assert_eq!(items, ids[..2]);
        assert_eq!(next, Some(Cursor(ids[1]).encode()));
        let (items, next) = paginate(ids.clone(), Limit::parse(Some(3)).unwrap(), |id| *id);
        assert_eq!(items.len(), 3);
        assert_eq!(next, None);
    }

    #[test]
    fn a_bad_limit_and_a_bad_cursor_are_reported_together() {
        let Err(Error::Invalid(fields)) = page_params(Some(0), Some("nope")) else {
            panic!("both are invalid");
        };
        let names: Vec<_> = fields.iter().map(|f| f.field).collect();
        assert_eq!(names, ["limit", "cursor"]);
        assert!(page_params(None, None).is_ok());
    }
}
