//! Trading credentials for an access token: an API key (client credentials) or
//! an email and password. The HTTP layer turns these errors into RFC 6749 bodies.

use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::accounts;
use crate::{
    db::{self, keys::KeyOwner},
    domain::{
        grants::{self, GrantError, KeyState},
        keys::ApiKey,
        scopes::Scopes,
        tokens::{Grant, Issued},
        users::{Email, Password},
    },
    error::Error,
    state::AppState,
};

/// The client id a password login's tokens carry.
pub const PASSWORD_CLIENT_ID: &str = "password";

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The client (API key) failed to authenticate: `invalid_client`.
    #[error("{0}")]
    InvalidClient(String),
    /// The resource owner's credentials are wrong or unusable: `invalid_grant`.
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidScope(String),
    /// The database cannot answer now: `temporarily_unavailable`, worth a retry.
    #[error("the database cannot answer now")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Storage errors keep the crate's one classification of what a retry may fix.
impl From<sqlx::Error> for ExchangeError {
    fn from(e: sqlx::Error) -> Self {
        match Error::from(e) {
            Error::Storage(e) => ExchangeError::Unavailable(e.into()),
            other => ExchangeError::Internal(anyhow::Error::new(other)),
        }
    }
}

pub struct Exchanged {
    pub issued: Issued,
    pub scopes: Scopes,
}

/// The client an API key authenticates: the key's record and its owner's,
/// as they are now. A malformed key is refused by its checksum before the
/// database is asked; a revoked or expired key, or a disabled owner, is not
/// a client.
pub async fn authenticate(
    state: &AppState,
    secret: &str,
    client_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(KeyOwner, KeyState), ExchangeError> {
    let key = ApiKey::parse(secret).map_err(|e| {
        ExchangeError::InvalidClient(format!("client_secret is not a valid API key: {e}"))
    })?;
    let owner = db::keys::find_for_exchange(&state.db, &key.hash())
        .await?
        .ok_or_else(|| {
            ExchangeError::InvalidClient(
                "no such API key; it may have been deleted or never existed".into(),
            )
        })?;
    if let Some(client_id) = client_id {
        if Uuid::parse_str(client_id).ok() != Some(owner.key_id) {
            return Err(ExchangeError::InvalidClient(
                "client_id does not match the key; send the key's id or leave client_id out".into(),
            ));
        }
    }
    let key_state = KeyState {
        scopes: owner.scopes,
        expires_at: owner.expires_at,
        revoked: owner.revoked,
        role: owner.role,
        disabled: owner.disabled,
    };
    grants::for_key(&key_state, None, now).map_err(grant_error_for_client)?;
    Ok((owner, key_state))
}

/// Client credentials: the key is the secret, its id the optional client id.
pub async fn with_key(
    state: &AppState,
    secret: &str,
    client_id: Option<&str>,
    requested: Option<Scopes>,
) -> Result<Exchanged, ExchangeError> {
    // Taken before the key is read: a revocation that commits after the read
    // covers this token.
    let now = db::now();
    let (owner, key_state) = authenticate(state, secret, client_id, now).await?;
    let scopes = grants::for_key(&key_state, requested, now).map_err(grant_error_for_client)?;
    let client_id = owner.key_id.to_string();
    let issued = state
        .tokens
        .issue(
            &Grant {
                user_id: owner.user_id,
                role: owner.role,
                scopes,
                client_id: &client_id,
                not_after: owner.expires_at,
            },
            now,
        )
        .context("signing an access token")?;
    state.last_used.record(owner.key_id, now);
    Ok(Exchanged { issued, scopes })
}

/// Resource owner password credentials: the email and password of an account.
pub async fn with_password(
    state: &AppState,
    username: &str,
    password: String,
    requested: Option<Scopes>,
) -> Result<Exchanged, ExchangeError> {
    const WRONG: &str = "the email or password is wrong";
    let now = db::now();
    let login = match Email::parse(username) {
        Ok(email) => db::users::find_login(&state.db, &email).await?,
        Err(_) => None,
    };
    let stored = login.as_ref().map(|l| l.password_hash.clone());
    let password = Password::offered(password);
    // argon2 is slow by design; keep it off the async workers. It runs even for
    // an unknown email so the answer takes as long either way.
    let verified = accounts::with_argon2(move || password.verify(stored.as_deref()))
        .await
        .context("verifying a password")?;
    // A disabled account's right password answers as a wrong one does: were
    // the answers different, a suspended account's password could still be
    // guessed through this endpoint.
    let user = match login {
        Some(login) if verified && !login.user.disabled => login.user,
        _ => return Err(ExchangeError::InvalidGrant(WRONG.into())),
    };
    let scopes = grants::for_login(user.role, user.disabled, requested).map_err(|e| match e {
        GrantError::ScopeNotAllowed(_) => ExchangeError::InvalidScope(e.to_string()),
        _ => ExchangeError::InvalidGrant(e.to_string()),
    })?;
    let issued = state
        .tokens
        .issue(
            &Grant {
                user_id: user.id,
                role: user.role,
                scopes,
                client_id: PASSWORD_CLIENT_ID,
                not_after: None,
            },
            now,
        )
        .context("signing an access token")?;
    Ok(Exchanged { issued, scopes })
}

fn grant_error_for_client(e: GrantError) -> ExchangeError {
    match e {
        GrantError::ScopeNotAllowed(_) => ExchangeError::InvalidScope(e.to_string()),
        GrantError::Revoked | GrantError::Expired | GrantError::Disabled => {
            ExchangeError::InvalidClient(e.to_string())
        }
    }
}
