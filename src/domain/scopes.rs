//! Scopes and roles: what a token may do, and what an account may ever be granted.

use std::fmt;

/// One permission a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    TodosRead,
    TodosWrite,
    KeysManage,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::TodosRead,
        Scope::TodosWrite,
        Scope::KeysManage,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TodosRead => "todos:read",
            Scope::TodosWrite => "todos:write",
            Scope::KeysManage => "keys:manage",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Every scope, for a message: `todos:read, todos:write, keys:manage and admin`.
    pub fn listed() -> String {
        let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes as a bit set: checking one on every request costs an AND,
/// and carrying one in the claims costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

/// A scope string named something that is not a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Parses a space-separated OAuth scope string (RFC 6749 §3.3).
    pub fn parse(s: &str) -> Result<Scopes, UnknownScope> {
        Self::parse_all(s.split(' ').filter(|part| !part.is_empty()))
    }

    pub fn parse_all<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Scopes, UnknownScope> {
        items.into_iter().try_fold(Scopes::NONE, |set, item| {
            Scope::parse(item)
                .map(|scope| set.with(scope))
                .ok_or_else(|| UnknownScope(item.to_owned()))
        })
    }

    #[must_use]
    pub fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    #[must_use]
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    #[must_use]
    pub fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    #[must_use]
    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    #[must_use]
    pub fn difference(self, other: Scopes) -> Scopes {
        Scopes(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

/// Space-separated, in a fixed order, as OAuth's `scope` parameter is written.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// An account's role bounds every scope its keys and logins can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Everything this role may ever hold.
    pub fn allowed_scopes(self) -> Scopes {
        match self {
            Role::User => Scopes::of(&[Scope::TodosRead, Scope::TodosWrite, Scope::KeysManage]),
            Role::Admin => Scopes::of(&Scope::ALL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_string_round_trips_in_a_fixed_order() {
        let scopes = Scopes::parse("keys:manage  todos:read").unwrap();
        assert_eq!(scopes.to_string(), "todos:read keys:manage");
        assert_eq!(Scopes::parse(&scopes.to_string()).unwrap(), scopes);
    }

    #[test]
    fn the_scope_list_reads_as_a_sentence() {
        assert_eq!(
            Scope::listed(),
            "todos:read, todos:write, keys:manage and admin"
        );
    }

    #[test]
    fn an_unknown_scope_is_named_in_the_error() {
        assert_eq!(
            Scopes::parse("todos:read todos:delete"),
            Err(UnknownScope("todos:delete".into()))
        );
    }

    #[test]
    fn a_user_can_never_hold_admin() {
        assert!(!Role::User.allowed_scopes().contains(Scope::Admin));
        assert!(Role::Admin.allowed_scopes().contains(Scope::Admin));
        let wanted = Scopes::of(&[Scope::Admin, Scope::TodosRead]);
        assert_eq!(
            wanted.difference(Role::User.allowed_scopes()),
            Scopes::of(&[Scope::Admin])
        );
    }

    #[test]
    fn the_empty_set_is_a_subset_of_anything() {
        assert!(Scopes::NONE.is_subset_of(Scopes::NONE));
        assert!(Scopes::parse("").unwrap().is_empty());
    }
}
