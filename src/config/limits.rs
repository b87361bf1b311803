//! The abuse limits: what one client, one account or one connection may use.
//! Every one is a flag with a `LATCHKEY_*` variable, so tests set them small
//! rather than wait, and operators size them to their traffic.

use std::{net::IpAddr, time::Duration};

use clap::Args;
use ipnet::IpNet;

#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Active (unrevoked, unexpired) API keys one account may hold; past it, creating a key answers 409.
    #[arg(long, env = "LATCHKEY_MAX_KEYS_PER_USER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_keys_per_user: u32,

    /// Todos one account may hold; past it, creating a todo answers 409.
    #[arg(long, env = "LATCHKEY_MAX_TODOS_PER_USER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_todos_per_user: u32,

    /// Consecutive failed logins of one account from one address before that address waits (a minute, doubling to a quarter of an hour); other addresses are unaffected.
    #[arg(long, env = "LATCHKEY_LOGIN_FAILURES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub login_failures: u32,

    /// Failed client authentications (bad or unknown API keys) one address may make per minute at the token, introspection and revocation endpoints before it gets 429.
    #[arg(long, env = "LATCHKEY_KEY_FAILURES_PER_MINUTE", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub key_failures_per_minute: u32,

    /// Registration attempts one address may make per hour, each counted whether it succeeds or not; past it, 429.
    #[arg(long, env = "LATCHKEY_REGISTRATIONS_PER_HOUR", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub registrations_per_hour: u32,

    /// Proxies whose `X-Forwarded-For` is believed, as a comma-separated list of CIDR blocks or addresses (10.0.0.0/8,::1); the client is then the right-most untrusted entry. By default the header is ignored.
    #[arg(
        long,
        env = "LATCHKEY_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = proxy,
        global = true
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// How long a client may take to send a request's line and headers, from the connection's opening or, between requests, from the next request's first byte; a slower one is disconnected without an answer.
    #[arg(long, env = "LATCHKEY_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration, global = true)]
    pub header_timeout: Duration,

    /// How long a keep-alive connection may have no request in flight (HTTP/2: no open stream) before it is closed.
    #[arg(long, env = "LATCHKEY_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration, global = true)]
    pub idle_timeout: Duration,

    /// How long a request may take in all, its body included, before it is answered 503 with Retry-After.
    #[arg(long, env = "LATCHKEY_REQUEST_TIMEOUT", default_value = "30s", value_parser = positive_duration, global = true)]
    pub request_timeout: Duration,

    /// Concurrent connections; further ones wait in the kernel's backlog until one closes [default: 4096, or less when the process's open-file limit is lower]
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections: Option<u32>,

    /// Concurrent HTTP/2 streams per connection; a stream past it is refused with REFUSED_STREAM.
    #[arg(long, env = "LATCHKEY_HTTP2_MAX_STREAMS", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub http2_max_streams: u32,

    /// Password hashes and checks that may wait for a core; past it, a login or registration answers 503 with Retry-After.
    #[arg(
        long,
        env = "LATCHKEY_ARGON2_QUEUE",
        default_value_t = 32,
        global = true
    )]
    pub argon2_queue: u32,
}

/// A proxy as a CIDR block, or a single address (a /32 or /128): an
/// operator naming the one proxy in front should not need the suffix.
fn proxy(s: &str) -> Result<IpNet, String> {
    s.trim()
        .parse::<IpNet>()
        .or_else(|_| s.trim().parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is neither a CIDR block (10.0.0.0/8) nor an address"))
}

/// A timeout of zero would close every connection or answer every request
/// `503` at once: refused at start instead.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_keys_per_user: 100,
            max_todos_per_user: 10_000,
            login_failures: 10,
            key_failures_per_minute: 30,
            registrations_per_hour: 10,
            trusted_proxies: Vec::new(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: None,
            http2_max_streams: 200,
            argon2_queue: 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: Limits,
    }

    /// The defaults the flags document are the ones embedders and tests get.
    #[test]
    fn the_default_is_what_the_flags_default_to() {
        let parsed = Cli::parse_from(["latchkey"]).limits;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Limits::default()));
    }

    #[test]
    fn trusted_proxies_are_a_cidr_list() {
        let parsed =
            Cli::parse_from(["latchkey", "--trusted-proxies", "10.0.0.0/8,::1/128"]).limits;
        assert_eq!(parsed.trusted_proxies.len(), 2);
        assert!(Cli::try_parse_from(["latchkey", "--trusted-proxies", "proxy.local"]).is_err());
    }

    #[test]
    fn a_trusted_proxy_may_be_a_single_address() {
        let parsed = Cli::parse_from(["latchkey", "--trusted-proxies", "10.0.0.1, ::1"]).limits;
        let shown: Vec<String> = parsed
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.1/32", "::1/128"]);
    }

    #[test]
    fn timeouts_must_be_longer_than_zero() {
        for flag in ["--header-timeout", "--idle-timeout", "--request-timeout"] {
            let err = Cli::try_parse_from(["latchkey", flag, "0s"]).err().unwrap();
            assert!(
                err.to_string().contains("longer than zero"),
                "{flag}: {err}"
            );
        }
    }
}
