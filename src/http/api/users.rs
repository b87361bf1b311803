use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{payload::Json, ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::{
    accounts, db,
    domain::scopes::Role,
    error::Error,
    http::{
        fields,
        problem::{documented, Failure},
    },
    state::AppState,
};

pub struct UsersApi;

/// An account.
#[derive(Debug, Object)]
pub struct User {
    pub id: Uuid,
    /// Lower-cased.
    pub email: String,
    pub role: RoleName,
    /// A disabled account can neither log in nor exchange its keys.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<db::users::User> for User {
    fn from(u: db::users::User) -> Self {
        User {
            id: u.id,
            email: u.email,
            role: u.role.into(),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// `user` may hold `todos:read`, `todos:write` and `keys:manage`; `admin` also `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RoleName {
    User,
    Admin,
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::User => RoleName::User,
            Role::Admin => RoleName::Admin,
        }
    }
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::User => Role::User,
            RoleName::Admin => Role::Admin,
        }
    }
}

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
        500 => "The server failed; the error has been logged."
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
        body: Json<NewUser>,
    ) -> Result<RegisterResponse, Failure<RegisterErrors>> {
        if !state.registration_open {
            return Err(Error::Forbidden(
                "Registration is closed on this server; ask an administrator for an account",
            )
            .into());
        }
        let NewUser { email, password } = body.0;
        let user = accounts::create(&state.db, &email, password, Role::User).await?;
        Ok(RegisterResponse::Created(Json(user.into())))
    }
}
