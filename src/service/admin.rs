//! What an admin does to other accounts. Every operation first checks the
//! caller's account as it is now, not as the token remembers it.

use uuid::Uuid;

use super::{
    accounts,
    keys::{self, Revoker},
};
use crate::{
    db::{
        self,
        keys::Key,
        users::{UpdateUserError, User},
    },
    domain::{
        audit::{self, Action, Actor, Event, Target},
        pages::{paginate, Cursor, Limit},
        revocation::ChangeKind,
        scopes::Role,
        tokens::Claims,
    },
    error::Error,
    state::AppState,
    telemetry::metrics::Revocation,
    throttle::ClientAddress,
};

const NO_SUCH_USER: Error = Error::NotFound(std::borrow::Cow::Borrowed(
    "There is no account with this id",
));

/// A page of accounts and the cursor of the next one.
pub async fn list_users(
    state: &AppState,
    claims: &Claims,
    limit: Limit,
    cursor: Option<Cursor>,
) -> Result<(Vec<User>, Option<String>), Error> {
    accounts::current_admin(&state.db, claims).await?;
    let rows = db::users::list(&state.db, cursor.map(|c| c.0), limit.get()).await?;
    Ok(paginate(rows, limit, |u| u.id))
}

/// Changes an account's role or disabled flag, never leaving no active admin.
/// A new role or a disable ends the account's live tokens.
pub async fn update_user(
    state: &AppState,
    claims: &Claims,
    client: ClientAddress,
    id: Uuid,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<User, Error> {
    accounts::current_admin(&state.db, claims).await?;
    let lifetime = state.revocations.lifetime();
    let event = |before: &User, after: &User| {
        let details = audit::updated((before.role, before.disabled), (after.role, after.disabled))?;
        let actor = Actor::holder(claims, client);
        Some(Event::now(
            Action::UserUpdated,
            actor,
            Some(Target::user(id)),
            details,
        ))
    };
    let (user, changes) = db::users::update_access(&state.db, id, role, disabled, lifetime, event)
        .await
        .map_err(|e| match e {
            UpdateUserError::NotFound => NO_SUCH_USER,
            UpdateUserError::LastAdmin => Error::Conflict(
                "This is the last active admin; promote another account first".into(),
            ),
            UpdateUserError::Db(e) => e.into(),
        })?;
    for change in &changes {
        match change.kind {
            ChangeKind::Disabled => state.metrics.revocation(Revocation::Disable),
            ChangeKind::SignedOut => state.metrics.revocation(Revocation::RoleChange),
            _ => {}
        }
    }
    state.revocations.committed(changes).await;
    Ok(user)
}

/// A page of an account's keys, revoked ones included, and the cursor of the
/// next one.
pub async fn user_keys(
    state: &AppState,
    claims: &Claims,
    id: Uuid,
    limit: Limit,
    cursor: Option<Cursor>,
) -> Result<(Vec<Key>, Option<String>), Error> {
    accounts::current_admin(&state.db, claims).await?;
    db::users::get(&state.db, id).await?.ok_or(NO_SUCH_USER)?;
    keys::page(state, id, limit, cursor).await
}

/// Revokes anyone's key.
pub async fn revoke_key(
    state: &AppState,
    claims: &Claims,
    client: ClientAddress,
    id: Uuid,
) -> Result<(), Error> {
    accounts::current_admin(&state.db, claims).await?;
    keys::revoke(state, id, Revoker::Admin, Actor::holder(claims, client)).await
}
