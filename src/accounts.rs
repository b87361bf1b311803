//! Creating accounts, shared by `POST /users` and `latchkey admin create`.

use anyhow::Context;

use crate::{
    db::{
        self,
        users::{InsertUserError, User},
        Db,
    },
    domain::{
        scopes::Role,
        users::{Email, Password},
    },
    error::{self, Error, FieldError},
};

/// Validates the email and password together (so every bad field is
/// reported at once), hashes the password with argon2id off the async
/// workers, and stores the account.
pub async fn create(db: &Db, email: &str, password: String, role: Role) -> Result<User, Error> {
    let email = Email::parse(email).map_err(|m| FieldError::new("email", m));
    let password = Password::parse_new(password).map_err(|m| FieldError::new("password", m));
    let (email, password) = error::both(email, password)?;
    let hash = tokio::task::spawn_blocking(move || password.hash())
        .await
        .context("hashing a password")?
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    db::users::insert(db.writer(), &email, &hash, role)
        .await
        .map_err(|e| match e {
            InsertUserError::EmailTaken => {
                Error::Conflict("An account with this email already exists; log in instead".into())
            }
            InsertUserError::Db(e) => e.into(),
        })
}
