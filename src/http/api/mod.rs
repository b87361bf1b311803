//! One `OpenApi` impl per tag.

pub mod admin;
pub mod audit;
pub mod discovery;
pub mod health;
pub mod keys;
pub mod password;
pub mod revocation;
pub mod todos;
pub mod token;
pub mod users;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Accounts: sign up.
    Users,
    /// The OAuth 2.0 token endpoint, revocation and introspection, and the
    /// token's own claims.
    Auth,
    /// Your API keys: create, list, revoke.
    Keys,
    /// Your todos, the API that access tokens protect.
    Todos,
    /// Every account and key (scope `admin`).
    Admin,
    /// The audit log: your own events, and (scope `admin`) everyone's.
    Audit,
    /// Liveness and readiness.
    Health,
    /// OAuth 2.0 server metadata and the public keys that verify tokens.
    Discovery,
}
