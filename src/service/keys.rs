//! API keys: creating one (its plaintext leaves only in the answer) and
//! revoking one, with the tokens it minted.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{accounts, token::PASSWORD_CLIENT_ID};
use crate::{
    db::{
        self,
        keys::{Inserted, Key, Revoked},
    },
    domain::{
        keys::ApiKey,
        new_key::{self, Creator, KeyRequest},
        pages::{paginate, Cursor, Limit},
        tokens::{Claims, TokenError},
    },
    error::Error,
    state::AppState,
    telemetry::metrics::Revocation,
};

pub const NO_SUCH_KEY: Error = Error::NotFound(std::borrow::Cow::Borrowed(
    "There is no API key with this id",
));

/// A key just made: its record, and the key itself, shown this once.
pub struct Created {
    pub record: Key,
    pub key: ApiKey,
}

/// A key for the caller's account, bounded by the role as it is now (a
/// demoted user's token must not mint a key that outlives the demotion) and
/// by the token asking: no scope it lacks, and, for a token minted from a
/// key, no life beyond that key's. The parent key is looked up here, off
/// the verification path.
pub async fn create(
    state: &AppState,
    claims: &Claims,
    request: KeyRequest,
) -> Result<Created, Error> {
    let owner = accounts::current(&state.db, claims).await?;
    let now = db::now();
    let creator = Creator {
        role: owner.role.allowed_scopes(),
        token: claims.scopes,
        expires_at: parent_expiry(state, claims, now).await?,
    };
    let valid = new_key::validate(request, creator, now)?;
    let key = ApiKey::generate();
    let max = state.limits.max_keys_per_user;
    let inserted = db::keys::insert(
        &state.db,
        db::keys::NewKey {
            user_id: owner.id,
            name: &valid.name,
            hash: key.hash(),
            hint: &key.hint(),
            scopes: valid.scopes,
            expires_at: valid.expires_at,
        },
        max,
    )
    .await?;
    match inserted {
        Inserted::Key(record) => Ok(Created { record, key }),
        Inserted::AtLimit => Err(Error::Conflict(format!(
            "This account already holds {max} active API keys, the most one account may hold \
             on this server (--max-keys-per-user {max}); revoke a key it no longer needs, then \
             try again"
        ))),
    }
}

/// When the key the token was minted from expires: `None` for a login, or a
/// key that never expires. A token whose key is revoked or expired is
/// refused before it gets here; should one slip through (a revocation not
/// yet heard of, clock leeway), it is refused the same way.
async fn parent_expiry(
    state: &AppState,
    claims: &Claims,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Error> {
    if claims.client_id == PASSWORD_CLIENT_ID {
        return Ok(None);
    }
    let Ok(parent) = Uuid::parse_str(&claims.client_id) else {
        return Err(Error::InvalidToken(TokenError::Invalid));
    };
    match db::keys::get(&state.db, parent, Some(claims.user_id)).await? {
        Some(key) if key.revoked_at.is_some() => Err(Error::InvalidToken(TokenError::Revoked)),
        Some(key) if key.expires_at.is_some_and(|at| at <= now) => {
            Err(Error::InvalidToken(TokenError::Expired))
        }
        Some(key) => Ok(key.expires_at),
        None => Err(Error::InvalidToken(TokenError::Revoked)),
    }
}

/// A page of a user's keys and the cursor of the next one.
pub async fn page(
    state: &AppState,
    user_id: Uuid,
    limit: Limit,
    cursor: Option<Cursor>,
) -> Result<(Vec<Key>, Option<String>), Error> {
    let rows =
        db::keys::list_for_user(&state.db, user_id, cursor.map(|c| c.0), limit.get()).await?;
    Ok(paginate(rows, limit, |k| k.id))
}

/// Whose key may be revoked.
#[derive(Clone, Copy)]
pub enum Owner {
    /// Only this user's (`DELETE /keys/{id}`).
    User(Uuid),
    /// Anyone's (an admin's `DELETE /admin/keys/{id}`).
    Anyone,
}

/// Revokes a key, keeping its record, and ends its live tokens; revoking it
/// again changes nothing.
pub async fn revoke(state: &AppState, id: Uuid, owner: Owner) -> Result<(), Error> {
    let owner = match owner {
        Owner::User(user) => Some(user),
        Owner::Anyone => None,
    };
    match db::keys::revoke(&state.db, id, owner, state.revocations.lifetime()).await? {
        Revoked::Now(change) => {
            state.revocations.committed(vec![change]).await;
            state.metrics.revocation(Revocation::Key);
            Ok(())
        }
        Revoked::Already => Ok(()),
        Revoked::NoSuchKey => Err(NO_SUCH_KEY),
    }
}
