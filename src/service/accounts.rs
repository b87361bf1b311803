//! Accounts: registration, the first admin from the command line, the
//! caller's account as it is now, changing a password, and signing out
//! everywhere.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::{
    db::{
        self,
        users::{InsertUserError, User},
        Db,
    },
    domain::{
        audit::{self, Action, Actor, Event, Failure, Limit, LoginFailure, Target},
        scopes::{Role, Scope},
        tokens::Claims,
        users::{Email, Password},
    },
    error::{self, Error, FieldError},
    state::AppState,
    telemetry::metrics::Revocation,
    throttle::{
        argon2::{Argon2Error, Argon2Queue},
        Account, ClientAddress,
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
        .map_err(state.failures.refused(client, Limit::Registrations, None))
        .map_err(Error::Throttled)?;
    let actor = Actor::anonymous(client);
    insert(&state.db, &state.argon2, email, password, Role::User, actor).await
}

/// An account made from the command line, whose hash is the only one this
/// process runs.
pub async fn create(db: &Db, email: &str, password: String, role: Role) -> Result<User, Error> {
    insert(
        db,
        &Argon2Queue::new(0),
        email,
        password,
        role,
        Actor::cli(),
    )
    .await
}

/// Validates the email and password together (so every bad field is
/// reported at once), hashes the password with argon2id off the async
/// workers, and stores the account with the event of `actor` making it.
async fn insert(
    db: &Db,
    argon2: &Argon2Queue,
    email: &str,
    password: String,
    role: Role,
    actor: Actor,
) -> Result<User, Error> {
    let email = Email::parse(email).map_err(|m| FieldError::new("email", m));
    let password = Password::parse_new(password).map_err(|m| FieldError::new("password", m));
    let (email, password) = error::both(email, password)?;
    let hash = queued(argon2.run(move || password.hash()).await)?
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    let id = Uuid::now_v7();
    let event = Event::now(
        Action::UserRegistered,
        actor,
        Some(Target::user(id)),
        audit::registered(role),
    );
    db::users::insert(db, id, &email, &hash, role, &event)
        .await
        .map_err(|e| match e {
            InsertUserError::EmailTaken => {
                Error::Conflict("An account with this email already exists; log in instead".into())
            }
            InsertUserError::Db(e) => e.into(),
        })
}

/// What [`fold_stored_emails`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Accounts whose email was rewritten in folded form.
    pub rewritten: usize,
    /// Accounts left as they were, because their address folds to one that
    /// another account holds or would hold, or does not parse.
    pub left: usize,
}

/// Brings the emails stored by earlier versions, which were only
/// lower-cased, to the folded form [`Email::parse`] gives, so that their
/// owners log in with any spelling. Run at start-up, after the schema
/// migrations; running it again (or on two instances at once) changes
/// nothing more.
///
/// When several accounts fold to one address, none of them is changed: the
/// one already stored in folded form (if any) keeps logging in, and the
/// others keep their stored address until an operator decides; they are
/// named in a warning by id only (an address is personal data).
pub async fn fold_stored_emails(db: &Db) -> Result<Folded, Error> {
    let mut by_address: BTreeMap<String, (Email, Vec<(Uuid, String)>)> = BTreeMap::new();
    let mut done = Folded::default();
    for (id, stored) in db::users::with_non_ascii_email(db).await? {
        match Email::parse(&stored) {
            Ok(email) => by_address
                .entry(email.as_str().to_owned())
                .or_insert_with(|| (email, Vec::new()))
                .1
                .push((id, stored)),
            Err(_) => {
                tracing::warn!(%id, "an account's stored email does not parse; left as it is");
                done.left += 1;
            }
        }
    }
    for (email, accounts) in by_address.into_values() {
        if let [(id, stored)] = accounts.as_slice() {
            if stored == email.as_str() {
                continue;
            }
            match db::users::replace_email(db, *id, stored, &email).await {
                Ok(true) => done.rewritten += 1,
                Ok(false) => {}
                Err(InsertUserError::EmailTaken) => {
                    tracing::warn!(
                        %id,
                        "an account's email folds to the address of another account; \
                         left as it is, so it cannot log in until one of the two is changed"
                    );
                    done.left += 1;
                }
                Err(InsertUserError::Db(e)) => return Err(e.into()),
            }
        } else {
            let ids: Vec<String> = accounts.iter().map(|(id, _)| id.to_string()).collect();
            tracing::warn!(
                ids = %ids.join(", "),
                "these accounts' emails fold to one address; all are left as they are, \
                 so only the one stored in folded form, if any, can log in"
            );
            done.left += accounts.len();
        }
    }
    if done != Folded::default() {
        tracing::info!(
            rewritten = done.rewritten,
            left = done.left,
            "stored emails brought to their folded form"
        );
    }
    Ok(done)
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
        _ => Err(DISABLED),
    }
}

/// `POST /me/sign-out`: every token of the caller's account issued so far
/// stops working, on every instance.
pub async fn sign_out(
    state: &AppState,
    claims: &Claims,
    client: ClientAddress,
) -> Result<(), Error> {
    let lifetime = state.revocations.lifetime();
    let event = own_event(Action::UserSignedOut, claims, client);
    let change = db::changes::sign_out(&state.db, claims.user_id, lifetime, &event).await?;
    state.revocations.committed(vec![change]).await;
    state.metrics.revocation(Revocation::SignOut);
    Ok(())
}

/// `PUT /me/password`: checks the account's current password, stores the
/// new one's argon2id hash and, in the same transaction, signs the account
/// out, so every token issued before stops working on every instance. The
/// API keys stay valid.
///
/// The new password is judged first: a refused one answers before the
/// current password is looked at, so a bad request tells nothing about it.
pub async fn change_password(
    state: &AppState,
    claims: &Claims,
    client: ClientAddress,
    current_password: String,
    new_password: String,
) -> Result<(), Error> {
    let new = Password::parse_new(new_password).map_err(|m| Error::invalid("new_password", m))?;
    let current = Password::offered(current_password);
    verify_current_password(state, claims.user_id, client, current).await?;
    let hash = with_argon2(state, move || new.hash())
        .await?
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    let lifetime = state.revocations.lifetime();
    let event = own_event(Action::UserPasswordChanged, claims, client);
    let change = db::users::set_password(&state.db, claims.user_id, &hash, lifetime, &event)
        .await?
        .ok_or(DISABLED)?;
    state.revocations.committed(vec![change]).await;
    state.metrics.revocation(Revocation::PasswordChange);
    Ok(())
}

/// An event of a token's holder about their own account.
fn own_event(action: Action, claims: &Claims, client: ClientAddress) -> Event {
    Event::now(
        action,
        Actor::holder(claims, client),
        Some(Target::user(claims.user_id)),
        serde_json::json!({}),
    )
}

const DISABLED: Error =
    Error::Forbidden("This account is disabled; its tokens can no longer change anything");

/// The one place a password offered to prove that the caller is the
/// account's owner, rather than to log in, is checked. A wrong one counts as
/// a failed login of the account from `client`, so a stolen token is no
/// faster a way to guess the password than the token endpoint, and a
/// throttled pair is refused before argon2 runs. A wrong password is a `422`
/// naming `current_password`; a disabled (or deleted) account's is refused
/// whatever it is.
async fn verify_current_password(
    state: &AppState,
    user_id: Uuid,
    client: ClientAddress,
    offered: Password,
) -> Result<(), Error> {
    let login = match db::users::find_login_by_id(&state.db, user_id).await? {
        Some(login) if !login.user.disabled => login,
        _ => return Err(DISABLED),
    };
    let account = Account::named(&login.user.email);
    let refused = state
        .failures
        .refused(client, Limit::LoginFailures, Some(user_id));
    state
        .throttle
        .check_login(account, client)
        .map_err(refused)
        .map_err(Error::Throttled)?;
    let stored = login.password_hash;
    if with_argon2(state, move || offered.verify(Some(&stored))).await? {
        state.throttle.login_succeeded(account, client);
        Ok(())
    } else {
        state.throttle.login_failed(account, client);
        let failure = Failure::login(LoginFailure::WrongCurrentPassword, Some(user_id));
        state.failures.failed(client, failure);
        Err(Error::invalid(
            "current_password",
            "is not this account's password",
        ))
    }
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
