use std::sync::Arc;

use poem::{web::Data, Request};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use uuid::Uuid;

use super::ApiTags;
use crate::{
    domain::{
        pages::{page_params, page_params_or, KEYS_LIMIT_DEFAULT},
        scopes::Scope,
    },
    http::{
        auth::Auth,
        client,
        documented::{documented, Failure},
        fields,
        types::{self, KeyPage, RoleName, User},
    },
    service::admin,
    state::AppState,
};

#[derive(Default)]
pub struct AdminApi;

#[derive(Debug, Object)]
pub struct UserPage {
    /// Oldest first.
    pub items: Vec<User>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Object)]
pub struct UserPatch {
    #[oai(deserialize_with = "RoleName::parse_field")]
    pub role: Option<RoleName>,
    /// A disabled user's keys stop exchanging at once; tokens already issued
    /// expire within their lifetime.
    #[oai(deserialize_with = "fields::disabled")]
    pub disabled: Option<bool>,
}

#[derive(ApiResponse)]
pub enum ListUsersResponse {
    /// A page of accounts.
    #[oai(status = 200)]
    Ok(Json<UserPage>),
}

#[derive(ApiResponse)]
pub enum UpdateUserResponse {
    /// The account as it is now.
    #[oai(status = 200)]
    Ok(Json<User>),
}

#[derive(ApiResponse)]
pub enum UserKeysResponse {
    /// A page of the account's keys, revoked ones included.
    #[oai(status = 200)]
    Ok(Json<KeyPage>),
}

#[derive(ApiResponse)]
pub enum AdminRevokeResponse {
    /// The key is revoked (or already was).
    #[oai(status = 204)]
    Revoked,
}

documented! {
    ListUsersErrors {
        400 => "A query parameter is not of its documented type.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `admin` scope.",
        422 => "`limit` is out of range or `cursor` is not one this API gave out.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    UpdateUserErrors {
        400 => "The id is not a UUID or the body is not JSON of the documented shape.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `admin` scope.",
        404 => "There is no account with this id.",
        409 => "The change would leave no active admin.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    UserKeysErrors {
        400 => "The id is not a UUID, or a query parameter is not of its documented type.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `admin` scope.",
        404 => "There is no account with this id.",
        422 => "`limit` is out of range or `cursor` is not one this API gave out.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    AdminRevokeErrors {
        400 => "The id is not a UUID.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `admin` scope.",
        404 => "There is no key with this id.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// List accounts
    ///
    /// Oldest first, `limit` (1 to 100, default 20) at a time. Needs `admin`.
    #[oai(path = "/admin/users", method = "get", operation_id = "listUsers")]
    async fn list_users(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        /// Page size, 1 to 100.
        #[oai(default = "types::page_size")]
        limit: Query<Option<i64>>,
        /// `next_cursor` from the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<ListUsersResponse, Failure<ListUsersErrors>> {
        let claims = auth.require(Scope::Admin)?;
        let (limit, cursor) = page_params(limit.0, cursor.0.as_deref())?;
        let (rows, next_cursor) = admin::list_users(&state, claims, limit, cursor).await?;
        Ok(ListUsersResponse::Ok(Json(UserPage {
            items: rows.into_iter().map(User::from).collect(),
            next_cursor,
        })))
    }

    /// Change an account's role or disable it
    ///
    /// Disabling stops the account's keys and password from minting tokens at
    /// once. The last active admin can be neither demoted nor disabled.
    /// Needs `admin`.
    #[oai(
        path = "/admin/users/:id",
        method = "patch",
        operation_id = "updateUser"
    )]
    async fn update_user(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<UserPatch>,
    ) -> Result<UpdateUserResponse, Failure<UpdateUserErrors>> {
        let claims = auth.require(Scope::Admin)?;
        let role = body.role.map(Into::into);
        let client = client::address(req, &state);
        let user = admin::update_user(&state, claims, client, id.0, role, body.disabled).await?;
        Ok(UpdateUserResponse::Ok(Json(user.into())))
    }

    /// List an account's keys
    ///
    /// Oldest first, revoked and expired keys included, `limit` (1 to 100,
    /// default 100) at a time; follow `next_cursor` for more. Needs `admin`.
    #[oai(
        path = "/admin/users/:id/keys",
        method = "get",
        operation_id = "listUserKeys"
    )]
    async fn list_user_keys(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<Uuid>,
        /// Page size, 1 to 100.
        #[oai(default = "types::key_page_size")]
        limit: Query<Option<i64>>,
        /// `next_cursor` from the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<UserKeysResponse, Failure<UserKeysErrors>> {
        let claims = auth.require(Scope::Admin)?;
        let (limit, cursor) = page_params_or(limit.0, cursor.0.as_deref(), KEYS_LIMIT_DEFAULT)?;
        let page = admin::user_keys(&state, claims, id.0, limit, cursor).await?;
        Ok(UserKeysResponse::Ok(Json(KeyPage::of(page))))
    }

    /// Revoke any key
    ///
    /// Idempotent, like revoking your own. Needs `admin`.
    #[oai(
        path = "/admin/keys/:id",
        method = "delete",
        operation_id = "adminRevokeKey"
    )]
    async fn revoke_any_key(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<AdminRevokeResponse, Failure<AdminRevokeErrors>> {
        let claims = auth.require(Scope::Admin)?;
        admin::revoke_key(&state, claims, client::address(req, &state), id.0).await?;
        Ok(AdminRevokeResponse::Revoked)
    }
}
