//! Accounts: registration, the first admin from the command line, the
//! caller's account as it is now, and signing out everywhere.

use crate::{
    db::{
        self,
        users::{InsertUserError, User},
        Db,
    },
    domain::{
        scopes::{Role, Scope},
        tokens::Claims,
        users::{Email, Password},
    },
    error::{self, Error, FieldError},
    state::AppState,
    throttle::{
        argon2::{Argon2Error, Argon2Queue},
        ClientAddress,
    },
};

/// Why a login or registration is refused when the argon2 queue is full.
pub const ARGON2_BUSY: &str =
    "Too many password checks are waiting on this server; try again after `Retry-After` seconds";

/// `POST /users`: a `user` account, when registration is open. Every
/// attempt from `client` counts against its registrations per hour, valid
/// or not.
pub async fn register(
    state: &AppState,
    email: &str,
    password: String,
    client: ClientAddress,
) -> Result<User, Error> {
    if !state.registration_open {
        return Err(Error::Forbidden(
            "Registration is closed on this server; ask an administrator for an account",
        ));
    }
    state
        .throttle
        .registration(client)
        .map_err(Error::Throttled)?;
    insert(&state.db, &state.argon2, email, password, Role::User).await
}

/// An account made from the command line, whose hash is the only one this
/// process runs.
pub async fn create(db: &Db, email: &str, password: String, role: Role) -> Result<User, Error> {
    insert(db, &Argon2Queue::new(0), email, password, role).await
}

/// Validates the email and password together (so every bad field is
/// reported at once), hashes the password with argon2id off the async
/// workers, and stores the account.
async fn insert(
    db: &Db,
    argon2: &Argon2Queue,
    email: &str,
    password: String,
    role: Role,
) -> Result<User, Error> {
    let email = Email::parse(email).map_err(|m| FieldError::new("email", m));
    let password = Password::parse_new(password).map_err(|m| FieldError::new("password", m));
    let (email, password) = error::both(email, password)?;
    let hash = queued(argon2.run(move || password.hash()).await)?
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    db::users::insert(db, &email, &hash, role)
        .await
        .map_err(|e| match e {
            InsertUserError::EmailTaken => {
                Error::Conflict("An account with this email already exists; log in instead".into())
            }
            InsertUserError::Db(e) => e.into(),
        })
}

/// Runs an argon2 hash or check in the server's argon2 queue (one per core
/// at a time, `--argon2-queue` waiting): a full queue is a `503`.
pub async fn with_argon2<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    queued(state.argon2.run(work).await)
}

fn queued<T>(outcome: Result<T, Argon2Error>) -> Result<T, Error> {
    match outcome {
        Ok(done) => Ok(done),
        Err(Argon2Error::Busy) => Err(Error::Unavailable(ARGON2_BUSY)),
        Err(Argon2Error::Failed(e)) => Err(Error::Internal(e.context("running argon2"))),
    }
}

/// The caller's account as it is now, not as their token remembers it. Used
/// where a still-valid token could otherwise outlive a demotion or a disabled
/// account: administration and key creation, never the verification path.
pub async fn current(db: &Db, claims: &Claims) -> Result<User, Error> {
    match db::users::get(db, claims.user_id).await? {
        Some(user) if !user.disabled => Ok(user),
        _ => Err(Error::Forbidden(
            "This account is disabled; its tokens can no longer change anything",
        )),
    }
}

/// `POST /me/sign-out`: every token of the caller's account issued so far
/// stops working, on every instance.
pub async fn sign_out(state: &AppState, claims: &Claims) -> Result<(), Error> {
    let lifetime = state.revocations.lifetime();
    let change = db::changes::sign_out(&state.db, claims.user_id, lifetime).await?;
    state.revocations.committed(vec![change]).await;
    Ok(())
}

/// Like [`current`], and the account must still be an admin.
pub async fn current_admin(db: &Db, claims: &Claims) -> Result<User, Error> {
    let user = current(db, claims).await?;
    if user.role == Role::Admin {
        Ok(user)
    } else {
        Err(Error::MissingScope(Scope::Admin))
    }
}
