//! What a token may be granted: the rules of the token endpoint, free of I/O.

use chrono::{DateTime, Utc};

use super::scopes::{Role, Scopes};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the key has been revoked")]
    Revoked,
    #[error("the key has expired")]
    Expired,
    #[error("the account is disabled")]
    Disabled,
    #[error("this client may be granted none of the requested scope: {0}")]
    ScopeNotAllowed(Scopes),
}

/// The state of a key and its owner at the moment of exchange.
pub struct KeyState {
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub role: Role,
    pub disabled: bool,
}

/// The scopes a key may be traded for now. A key never grants more than its
/// owner's current role allows, even if the role was lowered after the key
/// was made.
pub fn for_key(
    key: &KeyState,
    requested: Option<Scopes>,
    now: DateTime<Utc>,
) -> Result<Scopes, GrantError> {
    if key.revoked {
        return Err(GrantError::Revoked);
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(GrantError::Expired);
    }
    if key.disabled {
        return Err(GrantError::Disabled);
    }
    narrow(key.scopes.intersect(key.role.allowed_scopes()), requested)
}

/// The scopes a password login may be granted: the role's, or the part of
/// them it asks for.
pub fn for_login(
    role: Role,
    disabled: bool,
    requested: Option<Scopes>,
) -> Result<Scopes, GrantError> {
    if disabled {
        return Err(GrantError::Disabled);
    }
    narrow(role.allowed_scopes(), requested)
}

/// RFC 6749 §3.3: a client gets what it asks for, narrowed to what it is
/// allowed; the response's `scope` says what was granted. Clients that ask for
/// every scope a spec lists (Postman's importer sets that up) get a token for
/// the part they hold; a request for nothing they hold is refused.
fn narrow(available: Scopes, requested: Option<Scopes>) -> Result<Scopes, GrantError> {
    match requested {
        None => Ok(available),
        Some(wanted) => {
            let granted = wanted.intersect(available);
            if granted == Scopes::NONE {
                Err(GrantError::ScopeNotAllowed(wanted.difference(available)))
            } else {
                Ok(granted)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::scopes::Scope;

    fn key(scopes: &[Scope], role: Role) -> KeyState {
        KeyState {
            scopes: Scopes::of(scopes),
            expires_at: None,
            revoked: false,
            role,
            disabled: false,
        }
    }

    #[test]
    fn a_key_grants_its_scopes_or_the_subset_asked_for() {
        let k = key(&[Scope::TodosRead, Scope::TodosWrite], Role::User);
        let now = Utc::now();
        assert_eq!(for_key(&k, None, now), Ok(k.scopes));
        let read = Scopes::of(&[Scope::TodosRead]);
        assert_eq!(for_key(&k, Some(read), now), Ok(read));
        assert_eq!(
            for_key(&k, Some(Scopes::of(&[Scope::KeysManage])), now),
            Err(GrantError::ScopeNotAllowed(Scopes::of(&[
                Scope::KeysManage
            ])))
        );
        assert_eq!(
            for_key(&k, Some(Scopes::of(&Scope::ALL)), now),
            Ok(k.scopes),
            "asking for more than the key holds gets what it holds"
        );
    }

    #[test]
    fn a_demoted_owner_s_key_loses_what_the_role_no_longer_allows() {
        let k = key(&[Scope::Admin, Scope::TodosRead], Role::User);
        assert_eq!(
            for_key(&k, None, Utc::now()),
            Ok(Scopes::of(&[Scope::TodosRead]))
        );
    }

    #[test]
    fn revoked_expired_and_disabled_keys_grant_nothing() {
        let now = Utc::now();
        let mut k = key(&[Scope::TodosRead], Role::User);
        k.expires_at = Some(now);
        assert_eq!(for_key(&k, None, now), Err(GrantError::Expired));
        k.expires_at = Some(now + Duration::seconds(1));
        assert!(for_key(&k, None, now).is_ok());
        k.disabled = true;
        assert_eq!(for_key(&k, None, now), Err(GrantError::Disabled));
        k.revoked = true;
        assert_eq!(for_key(&k, None, now), Err(GrantError::Revoked));
    }

    #[test]
    fn a_login_gets_the_role_s_scopes() {
        assert_eq!(
            for_login(Role::Admin, false, None),
            Ok(Scopes::of(&Scope::ALL))
        );
        assert!(for_login(Role::User, false, Some(Scopes::of(&[Scope::Admin]))).is_err());
        assert_eq!(for_login(Role::User, true, None), Err(GrantError::Disabled));
    }
}
