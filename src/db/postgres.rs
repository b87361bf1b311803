//! The PostgreSQL backend: how the pool is opened, and what the server's
//! errors mean.

use std::{str::FromStr, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

use super::DbError;

/// How long a statement waits for a connection, connecting included: an
/// unreachable server is answered with a 503 in this time, not a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// One pool serves reads and writes: PostgreSQL orders concurrent writers
/// itself, so there is no single-writer queue as with SQLite. Opening it
/// connects once, so a server that cannot be reached stops the start.
pub(super) async fn open(url: &str, connections: u32) -> Result<PgPool, DbError> {
    let options = PgConnectOptions::from_str(url)?.application_name("latchkey");
    let target = describe(&options);
    let pool = PgPoolOptions::new()
        .max_connections(connections.max(2))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| DbError::Connect(target, e))?;
    // sqlx takes an advisory lock around the migrations, so instances that
    // start together apply each migration once.
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// Where a URL connects, for messages: never the password.
pub(super) fn describe_url(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => describe(&options),
        Err(_) => "a PostgreSQL database (the URL does not parse)".into(),
    }
}

/// Where a pool connects, for messages: never the password.
fn describe(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    match options.get_socket() {
        Some(socket) => format!("{} (database {database})", socket.display()),
        None => format!(
            "{}:{} (database {database})",
            options.get_host(),
            options.get_port()
        ),
    }
}

/// Whether a SQLSTATE means the server cannot take the request now, so the
/// same request may succeed later, as opposed to a bug or a constraint.
pub(super) fn is_unavailable(sqlstate: &str) -> bool {
    match sqlstate.get(..2) {
        // connection_exception, insufficient_resources (disk_full is 53100).
        Some("08" | "53") => true,
        _ => matches!(
            sqlstate,
            // admin_shutdown, crash_shutdown, cannot_connect_now (starting up
            // or shutting down).
            "57P01" | "57P02" | "57P03"
            // serialization_failure, deadlock_detected: the transaction lost
            // a race and was rolled back; running it again succeeds.
            | "40001" | "40P01"
            // read_only_sql_transaction: a standby, or a primary put in
            // read-only mode (as when its disk fills).
            | "25006"
            // io_error.
            | "58030"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_of_a_server_that_cannot_answer_now_are_unavailability() {
        for code in [
            "08000", "08003", "08006", "08001", "08004", "53000", "53100", "53200", "53300",
            "57P01", "57P02", "57P03", "40001", "40P01", "25006", "58030",
        ] {
            assert!(is_unavailable(code), "{code}");
        }
    }

    #[test]
    fn sqlstates_of_a_request_that_would_fail_again_are_not() {
        // unique_violation, foreign_key_violation, check_violation,
        // undefined_table, syntax_error, invalid_text_representation,
        // query_canceled, insufficient_privilege.
        for code in [
            "23505", "23503", "23514", "42P01", "42601", "22P02", "57014", "42501", "",
        ] {
            assert!(!is_unavailable(code), "{code}");
        }
    }

    #[test]
    fn a_connection_target_is_described_without_its_password() {
        let options =
            PgConnectOptions::from_str("postgres://latchkey:hunter2@db.example.com:5433/keys")
                .unwrap();

        let described = describe(&options);

        assert_eq!(described, "db.example.com:5433 (database keys)");
    }
}
