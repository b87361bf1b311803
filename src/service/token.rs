//! Trading credentials for an access token: an API key (client credentials) or
//! an email and password. The HTTP layer turns these errors into RFC 6749 bodies.

use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    db::{self, keys::KeyOwner},
    domain::{
        audit::{ExchangeFailure, Failure, Limit, LoginFailure},
        grants::{self, GrantError, KeyState},
        keys::{ApiKey, KeyHash},
        scopes::Scopes,
        tokens::{Grant, Issued},
        users::{Email, Password},
    },
    error::Error,
    state::AppState,
    telemetry::metrics::{Exchange, KeyCacheLookup},
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
/// anything else, whatever key it sends; its failures are what count. Each
/// failure, and each refusal, is tallied for the audit log.
pub async fn authenticate(
    state: &AppState,
    secret: &str,
    client_id: Option<&str>,
    now: DateTime<Utc>,
    address: ClientAddress,
) -> Result<(KeyOwner, KeyState), ExchangeError> {
    let throttled = || state.failures.refused(address, Limit::KeyFailures, None);
    state
        .throttle
        .check_key(address)
        .map_err(throttled())
        .map_err(ExchangeError::Throttled)?;
    match key_client(state, secret, client_id, now).await {
        Ok(client) => Ok(client),
        Err(KeyRefusal::Client(why, failure)) => {
            state.failures.failed(address, failure);
            state
                .throttle
                .key_failed(address)
                .map_err(throttled())
                .map_err(ExchangeError::Throttled)?;
            Err(ExchangeError::InvalidClient(why))
        }
        Err(KeyRefusal::Other(e)) => Err(e),
    }
}

/// Why a key is not a client.
enum KeyRefusal {
    /// It failed to authenticate: `invalid_client`, with what the audit log
    /// tallies of it.
    Client(String, Failure),
    /// It could not be checked.
    Other(ExchangeError),
}

impl<E: Into<ExchangeError>> From<E> for KeyRefusal {
    fn from(e: E) -> Self {
        KeyRefusal::Other(e.into())
    }
}

async fn key_client(
    state: &AppState,
    secret: &str,
    client_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(KeyOwner, KeyState), KeyRefusal> {
    let refused = |why: String, failure, key, fingerprint| {
        KeyRefusal::Client(why, Failure::exchange(failure, key, fingerprint))
    };
    let key = ApiKey::parse(secret).map_err(|e| {
        let why = format!("client_secret is not a valid API key: {e}");
        refused(why, ExchangeFailure::MalformedKey, None, None)
    })?;
    let hash = key.hash();
    let owner = find_key(state, &hash).await?.ok_or_else(|| {
        let why = "no such API key; it may have been deleted or never existed".into();
        let fingerprint = Some(hash.fingerprint());
        refused(why, ExchangeFailure::UnknownKey, None, fingerprint)
    })?;
    let known = Some((owner.key_id, owner.user_id));
    if let Some(client_id) = client_id {
        if Uuid::parse_str(client_id).ok() != Some(owner.key_id) {
            let why =
                "client_id does not match the key; send the key's id or leave client_id out".into();
            return Err(refused(why, ExchangeFailure::WrongClientId, known, None));
        }
    }
    let key_state = KeyState {
        scopes: owner.scopes,
        expires_at: owner.expires_at,
        revoked: owner.revoked,
        role: owner.role,
        disabled: owner.disabled,
    };
    if let Err(e) = grants::for_key(&key_state, None, now) {
        let failure = match e {
            GrantError::Revoked => ExchangeFailure::RevokedKey,
            GrantError::Expired => ExchangeFailure::ExpiredKey,
            GrantError::Disabled => ExchangeFailure::DisabledOwner,
            GrantError::ScopeNotAllowed(_) => return Err(grant_error_for_client(e).into()),
        };
        return Err(refused(e.to_string(), failure, known, None));
    }
    Ok((owner, key_state))
}

/// The record of the key with this hash and its owner's: from the key cache
/// while the revocation feed is fresh (the feed keeps the cache true, and a
/// stale feed may have missed a change), else from the database, whose
/// answer then fills the cache.
async fn find_key(state: &AppState, hash: &KeyHash) -> Result<Option<KeyOwner>, sqlx::Error> {
    let lookup = if state.revocations.is_fresh() {
        if let Some(owner) = state.keys.get(hash) {
            state.metrics.key_cache(KeyCacheLookup::Hit);
            return Ok(Some(owner));
        }
        KeyCacheLookup::Miss
    } else {
        KeyCacheLookup::Stale
    };
    state.metrics.key_cache(lookup);
    // Begun before the read: a change heard while it runs keeps the record
    // out of the cache, since the record may predate it.
    let fill = state.keys.begin_fill();
    let owner = db::keys::find_for_exchange(&state.db, hash).await?;
    if let Some(owner) = &owner {
        state.keys.finish_fill(fill, hash, owner);
    }
    Ok(owner)
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
        .map_err(state.failures.refused(address, Limit::LoginFailures, None))
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
        // What was typed as the email of an unknown account is not kept:
        // people type their password there.
        failed => {
            state.throttle.login_failed(account, address);
            let failure = match failed {
                None => Failure::login(LoginFailure::UnknownAccount, None),
                Some(login) if login.user.disabled => {
                    Failure::login(LoginFailure::DisabledAccount, Some(login.user.id))
                }
                Some(login) => Failure::login(LoginFailure::WrongPassword, Some(login.user.id)),
            };
            state.failures.failed(address, failure);
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
