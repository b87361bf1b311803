//! Trading credentials for an access token: an API key (client credentials) or
//! an email and password. The HTTP layer turns these errors into RFC 6749 bodies.

use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

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
    telemetry::metrics::Exchange,
    throttle::{argon2::Argon2Error, Account, ClientAddress, Throttled},
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
    /// The client address is over its budget of failures: `too_many_requests`.
    #[error("too many failed attempts; retry after {}s", .0.retry_after.as_secs())]
    Throttled(Throttled),
    /// The argon2 queue is full: `temporarily_unavailable`, worth a retry.
    #[error("too many password checks are waiting")]
    Busy,
    /// The database cannot answer now: `temporarily_unavailable`, worth a retry.
    #[error("the database cannot answer now")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ExchangeError {
    /// How the exchange counts it.
    pub fn outcome(&self) -> Exchange {
        match self {
            ExchangeError::InvalidClient(_) => Exchange::InvalidClient,
            ExchangeError::InvalidGrant(_) => Exchange::InvalidGrant,
            ExchangeError::InvalidScope(_) => Exchange::InvalidScope,
            ExchangeError::Throttled(_) => Exchange::Throttled,
            ExchangeError::Busy => Exchange::Busy,
            ExchangeError::Unavailable(_) => Exchange::Unavailable,
            ExchangeError::Internal(_) => Exchange::ServerError,
        }
    }

    /// Whether the database failed it (answered `503` or `500`).
    pub fn is_database_failure(&self) -> bool {
        match self {
            ExchangeError::Unavailable(e) | ExchangeError::Internal(e) => {
                e.chain().any(|cause| cause.is::<sqlx::Error>())
            }
            _ => false,
        }
    }
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
///
/// An address over its budget of failed authentications is refused before
/// anything else, whatever key it sends; its failures are what count.
pub async fn authenticate(
    state: &AppState,
    secret: &str,
    client_id: Option<&str>,
    now: DateTime<Utc>,
    address: ClientAddress,
) -> Result<(KeyOwner, KeyState), ExchangeError> {
    state
        .throttle
        .check_key(address)
        .map_err(ExchangeError::Throttled)?;
    match key_client(state, secret, client_id, now).await {
        Err(ExchangeError::InvalidClient(why)) => Err(match state.throttle.key_failed(address) {
            Ok(()) => ExchangeError::InvalidClient(why),
            Err(throttled) => ExchangeError::Throttled(throttled),
        }),
        outcome => outcome,
    }
}

async fn key_client(
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
    address: ClientAddress,
) -> Result<Exchanged, ExchangeError> {
    // Taken before the key is read: a revocation that commits after the read
    // covers this token.
    let now = db::now();
    let (owner, key_state) = authenticate(state, secret, client_id, now, address).await?;
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
/// Failed logins of one account from one address make that address wait
/// (before argon2 runs), whether the account exists or not; a right password
/// ends the run.
pub async fn with_password(
    state: &AppState,
    username: &str,
    password: String,
    requested: Option<Scopes>,
    address: ClientAddress,
) -> Result<Exchanged, ExchangeError> {
    const WRONG: &str = "the email or password is wrong";
    let account = Account::named(username);
    state
        .throttle
        .check_login(account, address)
        .map_err(ExchangeError::Throttled)?;
    let now = db::now();
    let login = match Email::parse(username) {
        Ok(email) => db::users::find_login(&state.db, &email).await?,
        Err(_) => None,
    };
    let stored = login.as_ref().map(|l| l.password_hash.clone());
    let password = Password::offered(password);
    // argon2 is slow by design; keep it off the async workers. It runs even for
    // an unknown email so the answer takes as long either way.
    let verified = match state
        .argon2
        .run(move || password.verify(stored.as_deref()))
        .await
    {
        Ok(verified) => verified,
        Err(Argon2Error::Busy) => return Err(ExchangeError::Busy),
        Err(Argon2Error::Failed(e)) => return Err(e.context("verifying a password").into()),
    };
    let user = match login {
        // A disabled account's right password answers as a wrong one does and
        // counts as a failure: were the answers different, a suspended
        // account's password could still be guessed through this endpoint.
        Some(login) if verified && !login.user.disabled => {
            state.throttle.login_succeeded(account, address);
            login.user
        }
        _ => {
            state.throttle.login_failed(account, address);
            return Err(ExchangeError::InvalidGrant(WRONG.into()));
        }
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
