//! Reading the audit log: everyone's (admins), or the caller's own.

use crate::{
    db,
    domain::{
        audit::{Event, Filter},
        pages::{paginate, Cursor, Limit},
        tokens::Claims,
    },
    error::Error,
    state::AppState,
};

/// A page of events, newest first, and the cursor of the next one.
pub type Page = (Vec<Event>, Option<String>);

/// `GET /admin/audit`: every event `filter` selects. The caller must still
/// be an admin.
pub async fn everyone(
    state: &AppState,
    claims: &Claims,
    filter: Filter,
    limit: Limit,
    cursor: Option<Cursor>,
) -> Result<Page, Error> {
    super::accounts::current_admin(&state.db, claims).await?;
    page(state, &filter, limit, cursor).await
}

/// `GET /me/audit`: the events whose actor or target is the caller's
/// account (or one of its keys or tokens), among those `filter` selects.
pub async fn mine(
    state: &AppState,
    claims: &Claims,
    filter: Filter,
    limit: Limit,
    cursor: Option<Cursor>,
) -> Result<Page, Error> {
    let filter = Filter {
        user_id: Some(claims.user_id),
        ..filter
    };
    page(state, &filter, limit, cursor).await
}

async fn page(
    state: &AppState,
    filter: &Filter,
    limit: Limit,
    cursor: Option<Cursor>,
) -> Result<Page, Error> {
    let rows = db::audit::page(&state.db, filter, cursor.map(|c| c.0), limit.get()).await?;
    Ok(paginate(rows, limit, |e| e.id))
}
