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
        audit::{self, Action, Actor, Event, RevokedBy, Target},
        keys::ApiKey,
        new_key::{self, Creator, KeyRequest},
        pages::{paginate, Cursor, Limit},
        tokens::{Claims, TokenError},
    },
    error::Error,
    state::AppState,
    telemetry::metrics::Revocation,
    throttle::ClientAddress,
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
    client: ClientAddress,
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
    let id = Uuid::now_v7();
    let event = Event::now(
        Action::KeyCreated,
        Actor::holder(claims, client),
        Some(Target::key(id, owner.id)),
        serde_json::json!({
            "name": valid.name,
            "scopes": valid.scopes.names(),
            "expires_at": valid.expires_at,
        }),
    );
    let inserted = db::keys::insert(
        &state.db,
        db::keys::NewKey {
            id,
            user_id: owner.id,
            name: &valid.name,
            hash: key.hash(),
            hint: &key.hint(),
            scopes: valid.scopes,
            expires_at: valid.expires_at,
        },
        max,
        &event,
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

/// `DELETE /keys/{id}`: one of the caller's keys.
pub async fn revoke_own(
    state: &AppState,
    claims: &Claims,
    client: ClientAddress,
    id: Uuid,
) -> Result<(), Error> {
    let actor = Actor::holder(claims, client);
    revoke(state, id, Revoker::Owner(claims.user_id), actor).await
}

/// Who revokes a key, and so whose key it may be.
#[derive(Clone, Copy)]
pub enum Revoker {
    /// Only this user's (`DELETE /keys/{id}`).
    Owner(Uuid),
    /// Anyone's (`DELETE /admin/keys/{id}`).
    Admin,
    /// Whoever holds the key (`POST /auth/revoke`).
    Holder,
}

/// Revokes a key, keeping its record, and ends its live tokens, recording
/// that `actor` did; revoking it again changes nothing.
pub async fn revoke(
    state: &AppState,
    id: Uuid,
    revoker: Revoker,
    actor: Actor,
) -> Result<(), Error> {
    let (owner, by) = match revoker {
        Revoker::Owner(user) => (Some(user), RevokedBy::Owner),
        Revoker::Admin => (None, RevokedBy::Admin),
        Revoker::Holder => (None, RevokedBy::Holder),
    };
    let event = |owner| {
        let target = Some(Target::key(id, owner));
        Event::now(
            Action::KeyRevoked,
            actor,
            target,
            audit::key_revoked(by, owner),
        )
    };
    let lifetime = state.revocations.lifetime();
    match db::keys::revoke(&state.db, id, owner, lifetime, event).await? {
        Revoked::Now(change) => {
            state.revocations.committed(vec![change]).await;
            state.metrics.revocation(Revocation::Key);
            Ok(())
        }
        Revoked::Already => Ok(()),
        Revoked::NoSuchKey => Err(NO_SUCH_KEY),
    }
}
