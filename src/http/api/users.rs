use std::sync::Arc;

use poem::{web::Data, Request};
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::{
    http::{
        client,
        documented::{documented, Failure},
        fields,
        types::User,
    },
    service::accounts,
    state::AppState,
};

#[derive(Default)]
pub struct UsersApi;

#[derive(Object)]
pub struct NewUser {
    /// Your email address; it becomes your login (case-insensitive).
    #[oai(deserialize_with = "fields::email")]
    pub email: String,
    /// 8 to 128 characters.
    #[oai(write_only, deserialize_with = "fields::password")]
    pub password: String,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<User>),
}

documented! {
    RegisterErrors {
        400 => "The body is not JSON of the documented shape.",
        403 => "Registration is closed on this server.",
        409 => "An account with this email already exists.",
        422 => "The email or password is not acceptable; `errors` lists which.",
        429 => "Too many registration attempts from your address (`--registrations-per-hour`, every attempt counted). Try again after `Retry-After` seconds.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error), or too many password hashes are waiting; nothing was changed. Try again after `Retry-After` seconds."
    }
}

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Register an account
    ///
    /// Creates a `user` account. Log in with `grant_type=password` at
    /// `/auth/token` to get a token, then create API keys with it.
    #[oai(path = "/users", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<NewUser>,
    ) -> Result<RegisterResponse, Failure<RegisterErrors>> {
        let NewUser { email, password } = body.0;
        let user =
            accounts::register(&state, &email, password, client::address(req, &state)).await?;
        Ok(RegisterResponse::Created(Json(user.into())))
    }
}
