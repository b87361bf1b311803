use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::{web::Data, Request};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use uuid::Uuid;

use super::ApiTags;
use crate::{
    db,
    domain::{
        new_key::KeyRequest,
        pages::{page_params_or, KEYS_LIMIT_DEFAULT},
        scopes::Scope,
    },
    http::{
        auth::Auth,
        client,
        documented::{documented, Failure},
        fields,
        types::{self, Key, KeyPage},
    },
    service::keys::{self, NO_SUCH_KEY},
    state::AppState,
};

#[derive(Default)]
pub struct KeysApi;

/// A new key and, this once, its plaintext.
#[derive(Object)]
pub struct CreatedKey {
    #[oai(flatten)]
    pub record: Key,
    /// The API key. Store it now: only its hash is kept, so it cannot be shown again.
    pub key: String,
}

#[derive(Debug, Object)]
pub struct NewKey {
    /// What the key is for, 1 to 100 characters after trimming, with no control character (such as a newline or a tab) inside.
    #[oai(deserialize_with = "fields::name")]
    pub name: String,
    /// Defaults to `todos:read` and `todos:write`, narrowed to what the token
    /// creating the key holds. Never more than your role allows, nor than
    /// that token holds.
    pub scopes: Option<Vec<String>>,
    /// When the key stops working; must be in the future. With a token
    /// minted from another key, no later than that key expires, and left
    /// out, then; with a login's token, left out, it never expires.
    #[oai(deserialize_with = "fields::expires_at")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<NewKey> for KeyRequest {
    fn from(new: NewKey) -> KeyRequest {
        KeyRequest {
            name: new.name,
            scopes: new.scopes,
            expires_at: new.expires_at,
        }
    }
}

#[derive(ApiResponse)]
pub enum CreateKeyResponse {
    /// The key was created; `key` holds its plaintext, shown this once.
    #[oai(status = 201)]
    Created(Json<CreatedKey>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum ListKeysResponse {
    /// A page of your keys, revoked and expired ones included, oldest first.
    #[oai(status = 200)]
    Ok(Json<KeyPage>),
}

#[derive(ApiResponse)]
pub enum GetKeyResponse {
    /// The key's record.
    #[oai(status = 200)]
    Ok(Json<Key>),
}

#[derive(ApiResponse)]
pub enum RevokeKeyResponse {
    /// The key is revoked (or already was). It can mint no new token.
    #[oai(status = 204)]
    Revoked,
}

documented! {
    CreateKeyErrors {
        400 => "The body is not JSON of the documented shape; or the key would outlive the key the token was minted from (`expires_at`), or be left with no scope because the token holds neither default scope (`scopes`); `errors` names the field.",
        401 => "No bearer token, or an invalid, expired or revoked one (or the key it was minted from is revoked or expired).",
        403 => "The token lacks the `keys:manage` scope, or one of the `scopes` asked for (`error=\"insufficient_scope\"`; `scope` names what the token would need).",
        409 => "The account already holds as many active keys as the server allows (`--max-keys-per-user`); revoke one first.",
        422 => "The name, scopes or expiry is not acceptable; `errors` lists which.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    ListKeysErrors {
        400 => "A query parameter is not of its documented type.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `keys:manage` scope.",
        422 => "`limit` is out of range or `cursor` is not one this API gave out.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    KeyErrors {
        400 => "The id is not a UUID.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `keys:manage` scope.",
        404 => "You have no key with this id.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
}

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// Create an API key
    ///
    /// Returns the key's plaintext once. Trade it for an access token at
    /// `/auth/token` with `grant_type=client_credentials`. A key never holds
    /// more than the token creating it: its scopes lie within the token's
    /// (and your role's), and a token minted from a key makes keys that
    /// expire no later than that key. An account holds at most
    /// `--max-keys-per-user` active keys. Needs `keys:manage`.
    #[oai(path = "/keys", method = "post", operation_id = "createKey")]
    async fn create_key(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        body: Json<NewKey>,
    ) -> Result<CreateKeyResponse, Failure<CreateKeyErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        let client = client::address(req, &state);
        let created = keys::create(&state, claims, body.0.into(), client).await?;
        let location = format!("/keys/{}", created.record.id);
        Ok(CreateKeyResponse::Created(
            Json(CreatedKey {
                record: created.record.into(),
                key: created.key.expose().to_owned(),
            }),
            location,
        ))
    }

    /// List your API keys
    ///
    /// Every key you made, revoked and expired ones included, oldest first,
    /// `limit` (1 to 100, default 100) at a time; follow `next_cursor` for
    /// more. Needs `keys:manage`.
    #[oai(path = "/keys", method = "get", operation_id = "listKeys")]
    async fn list_keys(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        /// Page size, 1 to 100.
        #[oai(default = "types::key_page_size")]
        limit: Query<Option<i64>>,
        /// `next_cursor` from the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<ListKeysResponse, Failure<ListKeysErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        let (limit, cursor) = page_params_or(limit.0, cursor.0.as_deref(), KEYS_LIMIT_DEFAULT)?;
        let page = keys::page(&state, claims.user_id, limit, cursor).await?;
        Ok(ListKeysResponse::Ok(Json(KeyPage::of(page))))
    }

    /// Get one of your API keys
    ///
    /// Needs `keys:manage`.
    #[oai(path = "/keys/:id", method = "get", operation_id = "getKey")]
    async fn get_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<GetKeyResponse, Failure<KeyErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        let key = db::keys::get(&state.db, id.0, Some(claims.user_id))
            .await?
            .ok_or(NO_SUCH_KEY)?;
        Ok(GetKeyResponse::Ok(Json(key.into())))
    }

    /// Revoke one of your API keys
    ///
    /// The key can mint no new token from now on; tokens already issued expire
    /// within their lifetime. Idempotent: revoking twice is `204` both times, and
    /// the record stays, with `revoked_at`. Needs `keys:manage`.
    #[oai(path = "/keys/:id", method = "delete", operation_id = "revokeKey")]
    async fn revoke_key(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<RevokeKeyResponse, Failure<KeyErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        keys::revoke_own(&state, claims, client::address(req, &state), id.0).await?;
        Ok(RevokeKeyResponse::Revoked)
    }
}
