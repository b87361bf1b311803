//! Types and rules of the product: no HTTP, no SQL.

pub mod argon2id;
pub mod audit;
pub mod grants;
pub mod jws;
pub mod keys;
pub mod new_key;
pub mod pages;
pub mod revocation;
pub mod scopes;
pub mod signing;
pub mod todos;
pub mod tokens;
pub mod users;
