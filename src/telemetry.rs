//! Logs and metrics. Nothing secret is ever passed to a log call; see
//! `http::problem` for the one place request errors are logged, and
//! `http::observe` for the line every request leaves.

pub mod histogram;
pub mod metrics;

use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber, writing to `writer`; `RUST_LOG` overrides
/// the default `info` level.
pub fn init<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second init (as in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
