//! Configuration: every setting is a flag with a `LATCHKEY_*` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use crate::{domain::signing::SigningAlg, http::cors::Origin};

mod limits;
pub use limits::Limits;

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./latchkey-data";
pub const DEFAULT_AUDIENCE: &str = "latchkey";
pub const DEFAULT_TOKEN_TTL: &str = "60s";
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_AUDIT_RETENTION: &str = "90d";
/// Key records held in memory: a few megabytes.
pub const DEFAULT_KEY_CACHE_SIZE: usize = 20_000;

// No `Debug` on `Config`: it holds the JWT and keyring secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlg {
    /// HMAC with SHA-256 and a shared secret.
    #[value(name = "HS256")]
    Hs256,
    /// Ed25519 signatures; the public key is published as a JWK Set.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<JwtAlg> for SigningAlg {
    fn from(alg: JwtAlg) -> SigningAlg {
        match alg {
            JwtAlg::Hs256 => SigningAlg::HS256,
            JwtAlg::EdDsa => SigningAlg::EdDSA,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Registration {
    /// Anyone may create an account with `POST /users`.
    Open,
    /// Only `latchkey admin create` makes accounts.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Args)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "LATCHKEY_BIND", default_value = DEFAULT_BIND, global = true)]
    pub bind: SocketAddr,

    /// Address and port of a second listener that serves Prometheus metrics at GET /metrics, and nothing else; keep it off the public network [default: off]
    #[arg(long, env = "LATCHKEY_METRICS_BIND", global = true)]
    pub metrics_bind: Option<SocketAddr>,

    /// Directory for the database and the generated signing keys; created if missing.
    #[arg(long, env = "LATCHKEY_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// Database URL: SQLite (sqlite:///var/lib/latchkey/latchkey.db) or PostgreSQL, which instances can share (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require]) [default: latchkey.db in the data directory]
    #[arg(
        long,
        env = "LATCHKEY_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// HS256 signing secret: at least 32 bytes with at least 16 different byte values (`openssl rand -base64 48` makes one); prefer --jwt-secret-file, which keeps it out of the process list [default: a rotatable key generated into the data directory, mode 0600]
    #[arg(
        long,
        env = "LATCHKEY_JWT_SECRET",
        hide_env_values = true,
        conflicts_with_all = ["jwt_key_file", "jwt_secret_file"],
        global = true
    )]
    pub jwt_secret: Option<String>,

    /// A file holding the HS256 signing secret, read at start (one trailing newline is stripped); the same strength rule as --jwt-secret
    #[arg(
        long,
        env = "LATCHKEY_JWT_SECRET_FILE",
        conflicts_with = "jwt_key_file",
        global = true
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// Ed25519 private key (PKCS#8 PEM) for --jwt-alg EdDSA [default: a rotatable key generated into the data directory, mode 0600]
    #[arg(long, env = "LATCHKEY_JWT_KEY_FILE", global = true)]
    pub jwt_key_file: Option<PathBuf>,

    /// 32 random bytes in base64 (`openssl rand -base64 32`) that encrypt the signing keyring kept in a PostgreSQL database; required there unless --jwt-secret or --jwt-key-file is given, and the same for every instance on the database. Checked but unused on SQLite, whose keyring is a file in the data directory.
    #[arg(
        long,
        env = "LATCHKEY_KEYRING_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub keyring_secret: Option<String>,

    /// Token signing algorithm.
    #[arg(
        long,
        env = "LATCHKEY_JWT_ALG",
        value_enum,
        default_value = "HS256",
        global = true
    )]
    pub jwt_alg: JwtAlg,

    /// Access token lifetime, e.g. 60s or 5m.
    #[arg(long, env = "LATCHKEY_TOKEN_TTL", default_value = DEFAULT_TOKEN_TTL, value_parser = parse_ttl, global = true)]
    pub token_ttl: Duration,

    /// The public base URL: the tokens' `iss` claim, and where discovery and the spec send clients [default: http://<bind>]
    #[arg(long, env = "LATCHKEY_ISSUER", value_parser = parse_issuer, global = true)]
    pub issuer: Option<String>,

    /// The tokens' `aud` claim.
    #[arg(long, env = "LATCHKEY_AUDIENCE", default_value = DEFAULT_AUDIENCE, global = true)]
    pub audience: String,

    /// Whether `POST /users` accepts sign-ups.
    #[arg(
        long,
        env = "LATCHKEY_REGISTRATION",
        value_enum,
        default_value = "open",
        global = true
    )]
    pub registration: Registration,

    /// Refuse tokens (503) once this instance has not heard from the database for this long, e.g. 10s; by default it keeps verifying with the revocations it knows.
    #[arg(long, env = "LATCHKEY_REVOCATION_MAX_LAG", value_parser = parse_max_lag, global = true)]
    pub revocation_max_lag: Option<Duration>,

    /// How often the revocation window is read back whatever the instance
    /// heard. Not a setting: the default is what the README states; tests
    /// lengthen it to show that notifications alone carry a change.
    #[arg(skip = crate::revocations::RELOAD_EVERY)]
    #[doc(hidden)]
    pub revocation_reload_every: Duration,

    /// How many API key records exchanges keep in memory (about 100 bytes each), so a key seen before exchanges without a database round trip; 0 turns the cache off.
    #[arg(long, env = "LATCHKEY_KEY_CACHE_SIZE", default_value_t = DEFAULT_KEY_CACHE_SIZE, global = true)]
    pub key_cache_size: usize,

    /// On SIGTERM, keep serving this long with `/ready` answering 503, so a load balancer stops sending before the listener closes, e.g. 10s.
    #[arg(long, env = "LATCHKEY_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_delay: Duration,

    /// Origins of browser apps that may call the API and the token endpoint, comma-separated and exact (https://app.example.com,http://localhost:3000) [default: none]
    #[arg(
        long,
        env = "LATCHKEY_CORS_ORIGINS",
        value_delimiter = ',',
        value_parser = Origin::parse,
        global = true
    )]
    pub cors_origins: Vec<Origin>,
    /// How long audit events are kept before they are deleted, e.g. 90d or 1y.
    #[arg(long, env = "LATCHKEY_AUDIT_RETENTION", default_value = DEFAULT_AUDIT_RETENTION, value_parser = parse_retention, global = true)]
    pub audit_retention: Duration,

    /// Log output format.
    #[arg(
        long,
        env = "LATCHKEY_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub limits: Limits,
}

impl Config {
    /// The defaults, with data kept in `data_dir`: how tests and embedders build
    /// a configuration without touching the environment.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            bind: DEFAULT_BIND
                .parse()
                .expect("the default bind address parses"),
            metrics_bind: None,
            data_dir: data_dir.into(),
            database_url: None,
            jwt_secret: None,
            jwt_secret_file: None,
            jwt_key_file: None,
            keyring_secret: None,
            jwt_alg: JwtAlg::Hs256,
            token_ttl: parse_ttl(DEFAULT_TOKEN_TTL).expect("the default lifetime parses"),
            issuer: None,
            audience: DEFAULT_AUDIENCE.into(),
            registration: Registration::Open,
            revocation_max_lag: None,
            revocation_reload_every: crate::revocations::RELOAD_EVERY,
            key_cache_size: DEFAULT_KEY_CACHE_SIZE,
            shutdown_delay: Duration::ZERO,
            cors_origins: Vec::new(),
            audit_retention: parse_retention(DEFAULT_AUDIT_RETENTION)
                .expect("the default retention parses"),
            log_format: LogFormat::Pretty,
            limits: Limits::default(),
        }
    }

    /// The configured database, refusing a URL of a backend latchkey lacks.
    pub fn database(&self) -> Result<crate::db::Location, crate::db::UnsupportedUrl> {
        match &self.database_url {
            Some(url) => crate::db::Location::from_url(url),
            None => Ok(crate::db::Location::SqliteFile(
                self.data_dir.join("latchkey.db"),
            )),
        }
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if ttl < Duration::from_secs(1) || ttl > MAX_TOKEN_TTL {
        return Err("must be between 1s and 24h".into());
    }
    Ok(ttl)
}

/// The window is reloaded twice a second; a lag shorter than a few reloads
/// would refuse tokens whenever one reload is slow.
fn parse_max_lag(s: &str) -> Result<Duration, String> {
    let lag = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if lag < Duration::from_secs(2) {
        return Err("must be at least 2s".into());
    }
    Ok(lag)
}

/// A retention of zero would delete every event as it is written.
fn parse_retention(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// RFC 8414 §2: the issuer is an http(s) URL with no query or fragment. It
/// has no path either: this server answers discovery at the root, where
/// clients look for an issuer without a path.
fn parse_issuer(s: &str) -> Result<String, String> {
    let uri: poem::http::Uri = s
        .parse()
        .map_err(|_| "must be a URL such as https://auth.example.com".to_owned())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err("must be an http or https URL such as https://auth.example.com".into());
    }
    if uri.query().is_some() || s.contains('#') {
        return Err("must not have a query or a fragment".into());
    }
    if !matches!(uri.path(), "" | "/") {
        return Err("must be the server's base URL, without a path".into());
    }
    // Kept exactly as given: verifiers compare `iss` as a string.
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_a_base_url() {
        assert_eq!(
            parse_issuer("https://auth.example.com/"),
            Ok("https://auth.example.com/".into())
        );
        assert!(parse_issuer("http://127.0.0.1:8080").is_ok());
        assert!(parse_issuer("http://127.0.0.1:8080/latchkey").is_err());
        assert!(parse_issuer("latchkey").is_err());
        assert!(parse_issuer("ftp://example.com").is_err());
        assert!(parse_issuer("https://example.com/?a=b").is_err());
        assert!(parse_issuer("https://example.com/#top").is_err());
    }

    #[test]
    fn the_audit_retention_is_a_duration_longer_than_zero() {
        assert_eq!(
            parse_retention("90d"),
            Ok(Duration::from_secs(90 * 24 * 3600))
        );
        assert_eq!(parse_retention("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            parse_retention("0s"),
            Err("must be longer than zero".into())
        );
        assert!(parse_retention("forever").is_err());
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        assert_eq!(parse_ttl("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("2days").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
