//! The PostgreSQL backend: how the pool is opened, how long an operation may
//! take, and what the server's errors mean.

use std::{future::Future, str::FromStr, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    Connection, PgConnection, PgPool,
};

use super::DbError;

/// How long an operation may take in all: waiting for a connection, then its
/// statements (a transaction's together), until the last answer. sqlx has no
/// socket or statement timeout, and a connection whose packets are dropped
/// (a partition, a firewall that forgot the flow) fails only when the
/// kernel stops retransmitting, some fifteen minutes later; without a bound,
/// a request would wait that long. This one lets a client have its `503`
/// within a few seconds, while the statements here, one-row reads and
/// writes by index and small transactions, take milliseconds even on a busy
/// machine: 3 s cuts only a server that does not answer.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an operation waits for a connection, connecting (or checking an
/// idle one) included. Shorter than [`OPERATION_TIMEOUT`], so that an
/// operation that never had a connection fails as such, saying nothing was
/// sent, before the deadline of an operation that may have been carried out.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// One pool serves reads and writes: PostgreSQL orders concurrent writers
/// itself, so there is no single-writer queue as with SQLite. Opening it
/// connects once, so a server that cannot be reached stops the start.
pub(super) async fn open(url: &str, connections: u32) -> Result<PgPool, DbError> {
    let pool = connect(url, connections).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// [`open`]'s pool, with the schema left as it is.
pub(super) async fn connect(url: &str, connections: u32) -> Result<PgPool, DbError> {
    let options = PgConnectOptions::from_str(url)?.application_name("latchkey");
    let target = describe(&options);
    PgPoolOptions::new()
        .max_connections(connections.max(2))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // Both checks in place of sqlx's own untimed ping before an acquire.
        .test_before_acquire(false)
        .before_acquire(|conn, _| Box::pin(answers_in_time(conn)))
        .after_release(|conn, _| Box::pin(answers_in_time(conn)))
        .connect_with(options)
        .await
        .map_err(|e| DbError::Connect(target, e))
}

/// Brings the schema up to date. sqlx takes an advisory lock around the
/// migrations, so instances that start together apply each migration once.
pub(super) async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    migrator().run(pool).await?;
    Ok(())
}

/// The version of the migration that creates latchkey's schema: a database
/// whose record of migrations holds it has had latchkey's schema made in it.
pub(super) fn first_migration() -> i64 {
    migrator()
        .iter()
        .map(|migration| migration.version)
        .min()
        .expect("there are PostgreSQL migrations")
}

fn migrator() -> sqlx::migrate::Migrator {
    super::migrator(sqlx::migrate!("./migrations/postgres"))
}

/// How long a pooled connection may take to answer a ping, on its way back
/// to the pool and before it is handed out: ample for a server that answers
/// (milliseconds), and short enough that an acquire (at most
/// [`ACQUIRE_TIMEOUT`]) can pass over stalled connections and still reach a
/// good one.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a pooled connection still answers, in time. sqlx pings one
/// returning to the pool or leaving it, but without a deadline: a connection
/// that a cut left stalled (behind a firewall that has since forgotten the
/// flow) would hold its slot until the kernel gave up, some fifteen minutes,
/// and a pool full of them would serve nobody long after the database is
/// back. An error here makes sqlx drop the connection at once instead.
async fn answers_in_time(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    match tokio::time::timeout(PING_TIMEOUT, conn.ping()).await {
        Ok(answered) => answered.map(|()| true),
        Err(_) => Err(unanswered()),
    }
}

/// Where a URL connects, for messages: never the password.
pub(super) fn describe_url(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => describe(&options),
        Err(_) => "a PostgreSQL database (the URL does not parse)".into(),
    }
}

/// Runs one operation within [`OPERATION_TIMEOUT`]. One cut short fails as
/// unavailability (a `503`); whether the server carried out what it had
/// been sent is unknown. Its connection goes back to the pool, which sees
/// whether it still answers before handing it out again.
pub(super) async fn bounded<T, E>(operation: impl Future<Output = Result<T, E>>) -> Result<T, E>
where
    E: From<sqlx::Error>,
{
    match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
        Ok(done) => done,
        Err(_) => Err(unanswered().into()),
    }
}

/// The error of an operation the server did not answer in time: an I/O
/// timeout, which is unavailability, carrying [`Unanswered`].
fn unanswered() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        Unanswered,
    ))
}

/// What an operation cut short by [`bounded`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL did not answer within {OPERATION_TIMEOUT:?}")]
pub(super) struct Unanswered;

/// Whether `err` is an operation cut short by [`bounded`].
pub(super) fn is_unanswered(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<Unanswered>()))
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
    fn an_operation_cut_short_is_unavailability_of_unknown_outcome() {
        let cut_short = unanswered();
        let never_connected = sqlx::Error::PoolTimedOut;

        assert!(is_unanswered(&cut_short));
        assert!(!is_unanswered(&never_connected));
        assert!(cut_short.to_string().contains("did not answer within 3s"));
        assert!(matches!(
            crate::error::Error::from(cut_short),
            crate::error::Error::Storage(_)
        ));
    }

    #[tokio::test]
    async fn an_operation_that_does_not_finish_in_time_is_cut_short() {
        let started = std::time::Instant::now();

        let outcome: Result<(), sqlx::Error> = bounded(std::future::pending()).await;

        assert!(is_unanswered(&outcome.unwrap_err()));
        assert!(started.elapsed() >= OPERATION_TIMEOUT);
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
