//! The operations HTTP and the command line share. Each takes the
//! application state and typed inputs (never an HTTP type), applies the rules
//! of `domain`, stores through `db`, and answers a `crate::error::Error` or,
//! for the token endpoint, its own error.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod keys;
pub mod revocation;
pub mod token;
