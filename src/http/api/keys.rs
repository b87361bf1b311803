use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{param::Path, payload::Json, ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::{
    accounts, db,
    domain::{
        keys::ApiKey,
        scopes::{Scope, Scopes},
    },
    error::{Error, FieldError},
    http::{
        auth::Auth,
        fields,
        problem::{documented, Failure},
    },
    state::AppState,
};

pub struct KeysApi;

/// An API key's record. The key itself is never shown again after creation.
#[derive(Debug, Object)]
pub struct Key {
    /// Also the `client_id` for the client-credentials grant.
    pub id: Uuid,
    pub name: String,
    /// `lk_…` and the key's last four characters.
    pub hint: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Updated within a few seconds of each exchange.
    #[oai(nullable)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<db::keys::Key> for Key {
    fn from(k: db::keys::Key) -> Self {
        Key {
            id: k.id,
            name: k.name,
            hint: k.hint,
            scopes: k.scopes.names(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

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
    /// What the key is for, 1 to 100 characters.
    #[oai(deserialize_with = "fields::name")]
    pub name: String,
    /// Defaults to `todos:read` and `todos:write`. Never more than your role allows.
    pub scopes: Option<Vec<String>>,
    /// When the key stops working; must be in the future. Left out, it never expires.
    #[oai(deserialize_with = "fields::expires_at")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
pub struct KeyList {
    pub items: Vec<Key>,
}

#[derive(ApiResponse)]
pub enum CreateKeyResponse {
    /// The key was created; `key` holds its plaintext, shown this once.
    #[oai(status = 201)]
    Created(Json<CreatedKey>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum ListKeysResponse {
    /// Your keys, revoked ones included, oldest first.
    #[oai(status = 200)]
    Ok(Json<KeyList>),
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
        400 => "The body is not JSON of the documented shape.",
        401 => "No bearer token, or an invalid or expired one.",
        403 => "The token lacks the `keys:manage` scope.",
        422 => "The name, scopes or expiry is not acceptable; `errors` lists which.",
        500 => "The server failed; the error has been logged."
    }
    ListKeysErrors {
        401 => "No bearer token, or an invalid or expired one.",
        403 => "The token lacks the `keys:manage` scope.",
        500 => "The server failed; the error has been logged."
    }
    KeyErrors {
        400 => "The id is not a UUID.",
        401 => "No bearer token, or an invalid or expired one.",
        403 => "The token lacks the `keys:manage` scope.",
        404 => "You have no key with this id.",
        500 => "The server failed; the error has been logged."
    }
}

pub const NAME_MAX: usize = 100;
const DEFAULT_SCOPES: [Scope; 2] = [Scope::TodosRead, Scope::TodosWrite];

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// Create an API key
    ///
    /// Returns the key's plaintext once. Trade it for an access token at
    /// `/auth/token` with `grant_type=client_credentials`. Needs `keys:manage`.
    #[oai(path = "/keys", method = "post", operation_id = "createKey")]
    async fn create_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        body: Json<NewKey>,
    ) -> Result<CreateKeyResponse, Failure<CreateKeyErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        // The role as it is now: a demoted user's token must not mint a key
        // that outlives the demotion.
        let owner = accounts::current(&state.db, claims).await?;
        let new = validate_new_key(body.0, owner.role.allowed_scopes(), db::now())?;
        let key = ApiKey::generate();
        let hint = key.hint();
        let created = db::keys::insert(
            state.db.writer(),
            db::keys::NewKey {
                user_id: claims.user_id,
                name: &new.name,
                hash: key.hash(),
                hint: &hint,
                scopes: new.scopes,
                expires_at: new.expires_at,
            },
        )
        .await?;
        let location = format!("/keys/{}", created.id);
        Ok(CreateKeyResponse::Created(
            Json(CreatedKey {
                record: created.into(),
                key: key.expose().to_owned(),
            }),
            location,
        ))
    }

    /// List your API keys
    ///
    /// Every key you made, revoked ones included. Needs `keys:manage`.
    #[oai(path = "/keys", method = "get", operation_id = "listKeys")]
    async fn list_keys(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
    ) -> Result<ListKeysResponse, Failure<ListKeysErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        let keys = db::keys::list_for_user(state.db.reader(), claims.user_id).await?;
        Ok(ListKeysResponse::Ok(Json(KeyList {
            items: keys.into_iter().map(Key::from).collect(),
        })))
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
        let key = db::keys::get(state.db.reader(), id.0, Some(claims.user_id))
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
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<RevokeKeyResponse, Failure<KeyErrors>> {
        let claims = auth.require(Scope::KeysManage)?;
        if db::keys::revoke(state.db.writer(), id.0, Some(claims.user_id)).await? {
            Ok(RevokeKeyResponse::Revoked)
        } else {
            Err(NO_SUCH_KEY.into())
        }
    }
}

pub const NO_SUCH_KEY: Error = Error::NotFound("There is no API key with this id");

struct ValidKey {
    name: String,
    scopes: Scopes,
    expires_at: Option<DateTime<Utc>>,
}

/// Checks a new key's fields together, so every bad one is reported at once.
fn validate_new_key(new: NewKey, allowed: Scopes, now: DateTime<Utc>) -> Result<ValidKey, Error> {
    let mut errors = Vec::new();
    let name = new.name.trim().to_owned();
    let name_len = name.chars().count();
    if name_len == 0 || name_len > NAME_MAX {
        errors.push(FieldError::new("name", "must be 1 to 100 characters"));
    }
    let scopes = match new.scopes {
        None => Scopes::of(&DEFAULT_SCOPES),
        Some(list) => match Scopes::parse_all(list.iter().map(String::as_str)) {
            Err(e) => {
                errors.push(FieldError::new(
                    "scopes",
                    format!("{e}; known scopes are todos:read, todos:write, keys:manage and admin"),
                ));
                Scopes::NONE
            }
            Ok(s) if s.is_empty() => {
                errors.push(FieldError::new("scopes", "must name at least one scope"));
                s
            }
            Ok(s) if !s.is_subset_of(allowed) => {
                errors.push(FieldError::new(
                    "scopes",
                    format!("your role does not allow: {}", s.difference(allowed)),
                ));
                s
            }
            Ok(s) => s,
        },
    };
    if new.expires_at.is_some_and(|at| at <= now) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if errors.is_empty() {
        Ok(ValidKey {
            name,
            scopes,
            expires_at: new.expires_at,
        })
    } else {
        Err(Error::Invalid(errors))
    }
}
