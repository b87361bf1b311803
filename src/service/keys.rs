//! API keys: creating one (its plaintext leaves only in the answer) and
//! revoking one, with the tokens it minted.

use uuid::Uuid;

use super::accounts;
use crate::{
    db::{
        self,
        keys::{Key, Revoked},
    },
    domain::{
        keys::ApiKey,
        new_key::{self, KeyRequest},
        tokens::Claims,
    },
    error::Error,
    state::AppState,
};

pub const NO_SUCH_KEY: Error = Error::NotFound(std::borrow::Cow::Borrowed(
    "There is no API key with this id",
));

/// A key just made: its record, and the key itself, shown this once.
pub struct Created {
    pub record: Key,
    pub key: ApiKey,
}

/// A key for the caller's account. Its scopes are checked against the role
/// as it is now: a demoted user's token must not mint a key that outlives
/// the demotion.
pub async fn create(
    state: &AppState,
    claims: &Claims,
    request: KeyRequest,
) -> Result<Created, Error> {
    let owner = accounts::current(&state.db, claims).await?;
    let valid = new_key::validate(request, owner.role.allowed_scopes(), db::now())?;
    let key = ApiKey::generate();
    let record = db::keys::insert(
        &state.db,
        db::keys::NewKey {
            user_id: owner.id,
            name: &valid.name,
            hash: key.hash(),
            hint: &key.hint(),
            scopes: valid.scopes,
            expires_at: valid.expires_at,
        },
    )
    .await?;
    Ok(Created { record, key })
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
            Ok(())
        }
        Revoked::Already => Ok(()),
        Revoked::NoSuchKey => Err(NO_SUCH_KEY),
    }
}
