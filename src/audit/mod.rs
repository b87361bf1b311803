//! The audit log's work beside the requests. The events of changes are
//! written by `db/` in each change's own transaction; failures and throttled
//! requests are tallied in memory here and written behind the response
//! (`failures`), and events older than `--audit-retention` are deleted in
//! the background (`retention`). The events and their rules are
//! `domain::audit`.

pub mod failures;
pub mod retention;
