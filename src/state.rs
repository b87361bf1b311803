//! What every request handler shares.

use std::sync::Arc;

use crate::{db::Db, domain::tokens::Tokens, usage::UsageRecorder};

pub struct AppState {
    pub db: Db,
    pub tokens: Arc<Tokens>,
    pub usage: Arc<UsageRecorder>,
    pub registration_open: bool,
}
