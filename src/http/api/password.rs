//! Changing the password of the account a token belongs to.

use std::sync::Arc;

use poem::{web::Data, Request};
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::{
    http::{
        auth::Auth,
        client,
        documented::{documented, Failure},
        fields,
    },
    service::accounts,
    state::AppState,
};

#[derive(Default)]
pub struct PasswordApi;

// No `Debug`: it holds two passwords.
#[derive(Object)]
pub struct PasswordChange {
    /// The account's password as it is now.
    #[oai(write_only, deserialize_with = "fields::current_password")]
    pub current_password: String,
    /// 8 to 128 characters, not only whitespace, and not one of the 10 000
    /// most common passwords (in any case).
    #[oai(write_only, deserialize_with = "fields::new_password")]
    pub new_password: String,
}

#[derive(ApiResponse)]
pub enum ChangePasswordResponse {
    /// The new password is in force, and every token of the account issued
    /// before it, this one included, is refused from now on on every
    /// instance.
    #[oai(status = 204)]
    Changed,
}

documented! {
    ChangePasswordErrors {
        400 => "The body is not JSON of the documented shape.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The account is disabled.",
        422 => "`current_password` is not the account's password, or `new_password` is not acceptable; `errors` names which.",
        429 => "Too many wrong `current_password`s for this account from your address; they count as failed logins (`--login-failures`). Try again after `Retry-After` seconds.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now, or too many password checks are waiting (`--argon2-queue`); the password was not changed. Try again after `Retry-After` seconds."
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl PasswordApi {
    /// Change your password
    ///
    /// Checks `current_password`, then stores `new_password` and signs the
    /// account out everywhere, as `POST /me/sign-out` does, in one step:
    /// every token of the account issued so far, whichever key or login
    /// minted it and this one included, stops working on every instance
    /// within a second. Log in again with the new password for a new token.
    /// Your API keys stay valid. Any valid token of the account may call it.
    /// A `new_password` that is not acceptable is refused before
    /// `current_password` is checked.
    #[oai(path = "/me/password", method = "put", operation_id = "changePassword")]
    async fn change_password(
        &self,
        req: &Request,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        body: Json<PasswordChange>,
    ) -> Result<ChangePasswordResponse, Failure<ChangePasswordErrors>> {
        let PasswordChange {
            current_password,
            new_password,
        } = body.0;
        accounts::change_password(
            &state,
            auth.claims(),
            client::address(req, &state),
            current_password,
            new_password,
        )
        .await?;
        Ok(ChangePasswordResponse::Changed)
    }
}
