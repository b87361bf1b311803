//! What every request handler shares.

use std::sync::Arc;

use crate::{db::Db, domain::tokens::Tokens, last_used::LastUsed};

pub struct AppState {
    pub db: Db,
    pub tokens: Arc<Tokens>,
    pub last_used: Arc<LastUsed>,
    pub registration_open: bool,
}
