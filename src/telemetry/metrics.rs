//! The Prometheus series of one server. Each [`App`](crate::App) owns a
//! [`Metrics`] with its own registry, so servers in one process never share
//! a count. Every label value comes from a closed set fixed here, so no id,
//! email or address can become one; and every series a request touches is
//! resolved ahead of time (or, for the request histogram, once per series),
//! so counting is an atomic add: no lock, no allocation.

use std::{
    sync::{atomic::AtomicU64, OnceLock},
    time::Duration,
};

use poem::http::{Method, StatusCode};
use prometheus_client::{
    encoding::{text, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::histogram::DurationHistogram;

/// The request histogram's buckets, in seconds: a verified request answers
/// in well under a millisecond, a login waits for argon2 (tens to hundreds
/// of milliseconds), and `--request-timeout` ends everything at 30 s by
/// default.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// A closed set of label values, each with its counter's place.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $label:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order of their series.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }
    };
}

label_values! {
    /// The `grant_type` of a token request.
    GrantType {
        ClientCredentials = "client_credentials",
        Password = "password",
        /// Anything else (answered `unsupported_grant_type`).
        Other = "other",
    }
}

impl GrantType {
    pub fn of(grant_type: &str) -> GrantType {
        match grant_type {
            "client_credentials" => GrantType::ClientCredentials,
            "password" => GrantType::Password,
            _ => GrantType::Other,
        }
    }
}

label_values! {
    /// How a token request ended: `issued`, or the RFC 6749 error it got,
    /// with `throttled` (`429`), `busy` (the argon2 queue is full),
    /// `unavailable` (the database cannot answer) and `server_error`.
    Exchange {
        Issued = "issued",
        InvalidRequest = "invalid_request",
        UnsupportedGrantType = "unsupported_grant_type",
        InvalidClient = "invalid_client",
        InvalidGrant = "invalid_grant",
        InvalidScope = "invalid_scope",
        Throttled = "throttled",
        Busy = "busy",
        Unavailable = "unavailable",
        ServerError = "server_error",
    }
}

label_values! {
    /// How a bearer token's check ended.
    Verification {
        Valid = "valid",
        /// No `Authorization: Bearer` header.
        Missing = "missing",
        /// Malformed, badly signed, of another issuer or audience, issued in
        /// the future or living too long.
        Invalid = "invalid",
        Expired = "expired",
        Revoked = "revoked",
        /// Refused with `503`: out of touch with the database for longer
        /// than `--revocation-max-lag`.
        Stale = "stale",
    }
}

label_values! {
    /// What a revocation ended.
    Revocation {
        /// A key, and every token minted from it.
        Key = "key",
        /// One access token (`POST /auth/revoke`).
        Token = "token",
        /// Every token of an account (`POST /me/sign-out`).
        SignOut = "sign_out",
        /// Every token of an account (`PUT /me/password`).
        PasswordChange = "password_change",
        /// Every token of an account issued before its role changed.
        RoleChange = "role_change",
        /// Every token of an account while it is disabled.
        Disable = "disable",
    }
}

label_values! {
    /// Where an exchange found its key's record.
    KeyCacheLookup {
        /// In the key cache.
        Hit = "hit",
        /// Not in it: read from the database.
        Miss = "miss",
        /// Read from the database without asking the cache: the revocation
        /// feed has not heard from the database recently enough.
        Stale = "stale",
    }
}

label_values! {
    /// The abuse limiter that refused a request.
    Limiter {
        /// Failed client authentications per address.
        KeyFailures = "key_failures",
        /// Failed logins per account and address.
        Logins = "logins",
        /// Registrations per address.
        Registrations = "registrations",
    }
}

/// The methods the histogram names; any other is `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// The statuses the histogram names, ascending; any other is named by its
/// class (`4xx`), which a query for `status=~"4.."` still matches.
const STATUSES: [(u16, &str); 31] = [
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (301, "301"),
    (302, "302"),
    (303, "303"),
    (304, "304"),
    (307, "307"),
    (308, "308"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (406, "406"),
    (408, "408"),
    (409, "409"),
    (411, "411"),
    (413, "413"),
    (414, "414"),
    (415, "415"),
    (416, "416"),
    (422, "422"),
    (429, "429"),
    (431, "431"),
    (500, "500"),
    (501, "501"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
    (507, "507"),
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const STATUS_SLOTS: usize = STATUSES.len() + CLASSES.len();

/// The name the request log and histogram give `method`: the method itself
/// for the standard ones, `OTHER` for the rest (a client can send any word).
pub fn method_label(method: &Method) -> &'static str {
    METHODS[method_slot(method)]
}

fn method_slot(method: &Method) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn status_slot(status: StatusCode) -> usize {
    let code = status.as_u16();
    match STATUSES.binary_search_by_key(&code, |(c, _)| *c) {
        Ok(i) => i,
        Err(_) => STATUSES.len() + usize::from(code / 100).clamp(1, CLASSES.len()) - 1,
    }
}

fn status_label(slot: usize) -> &'static str {
    STATUSES
        .get(slot)
        .map_or_else(|| CLASSES[slot - STATUSES.len()], |(_, label)| label)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: &'static str,
}

type Labels<const N: usize> = [(&'static str, &'static str); N];

type RequestFamily = Family<RequestLabels, DurationHistogram, fn() -> DurationHistogram>;

fn request_histogram() -> DurationHistogram {
    DurationHistogram::new(REQUEST_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    requests: RequestFamily,
    /// By grant type, then outcome.
    exchanges: Box<[Counter]>,
    verifications: Box<[Counter]>,
    revocations: Box<[Counter]>,
    throttled: Box<[Counter]>,
    key_cache: Box<[Counter]>,
    database_errors: Counter,
    revocation_lag: Gauge<f64, AtomicU64>,
    connections: Family<Labels<2>, Gauge>,
    connections_max: Family<Labels<1>, Gauge>,
}

/// One counter per value of a closed set, created (and so exported, at
/// zero) before anything happens: a rate over a series that appears only at
/// its first event misses that event.
fn counters<const N: usize>(
    family: &Family<Labels<N>, Counter>,
    labels: impl IntoIterator<Item = Labels<N>>,
) -> Box<[Counter]> {
    labels
        .into_iter()
        .map(|labels| family.get_or_create_owned(&labels))
        .collect()
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();

        let requests = RequestFamily::new_with_constructor(request_histogram);
        registry.register_with_unit(
            "http_server_request_duration",
            "How long requests took to answer, by method, route template (unmatched when no route matched) and status",
            Unit::Seconds,
            requests.clone(),
        );

        let family = Family::<Labels<2>, Counter>::default();
        registry.register(
            "latchkey_token_exchanges",
            "Token requests at /auth/token, by grant type and outcome",
            family.clone(),
        );
        let exchanges = counters(
            &family,
            GrantType::ALL.iter().flat_map(|grant| {
                Exchange::ALL.iter().map(|outcome| {
                    [
                        ("grant_type", grant.as_str()),
                        ("outcome", outcome.as_str()),
                    ]
                })
            }),
        );

        let family = Family::<Labels<1>, Counter>::default();
        registry.register(
            "latchkey_token_verifications",
            "Bearer token checks, by outcome",
            family.clone(),
        );
        let verifications = counters(
            &family,
            Verification::ALL.iter().map(|v| [("outcome", v.as_str())]),
        );

        let family = Family::<Labels<1>, Counter>::default();
        registry.register(
            "latchkey_revocations",
            "Revocations this instance made, by what they ended",
            family.clone(),
        );
        let revocations = counters(
            &family,
            Revocation::ALL.iter().map(|r| [("kind", r.as_str())]),
        );

        let family = Family::<Labels<1>, Counter>::default();
        registry.register(
            "latchkey_throttled_requests",
            "Requests refused with 429 by an abuse limiter, by limiter",
            family.clone(),
        );
        let throttled = counters(
            &family,
            Limiter::ALL.iter().map(|l| [("limiter", l.as_str())]),
        );

        let family = Family::<Labels<1>, Counter>::default();
        registry.register(
            "latchkey_key_cache_lookups",
            "Where API key exchanges found the key's record: hit (in memory), miss or stale (read from the database)",
            family.clone(),
        );
        let key_cache = counters(
            &family,
            KeyCacheLookup::ALL.iter().map(|l| [("result", l.as_str())]),
        );

        let database_errors = Counter::default();
        registry.register(
            "latchkey_database_errors",
            "Requests answered 503 or 500 because the database failed them",
            database_errors.clone(),
        );

        let revocation_lag = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "latchkey_revocation_lag",
            "Time since this instance last heard from the database's revocation feed",
            Unit::Seconds,
            revocation_lag.clone(),
        );

        let connections = Family::<Labels<2>, Gauge>::default();
        registry.register(
            "latchkey_database_connections",
            "Database connections open, by pool and state (in_use or idle)",
            connections.clone(),
        );
        let connections_max = Family::<Labels<1>, Gauge>::default();
        registry.register(
            "latchkey_database_connections_max",
            "The most connections each database pool opens",
            connections_max.clone(),
        );

        Metrics {
            registry,
            requests,
            exchanges,
            verifications,
            revocations,
            throttled,
            key_cache,
            database_errors,
            revocation_lag,
            connections,
            connections_max,
        }
    }

    pub fn exchange(&self, grant: GrantType, outcome: Exchange) {
        self.exchanges[grant as usize * Exchange::ALL.len() + outcome as usize].inc();
    }

    pub fn verification(&self, outcome: Verification) {
        self.verifications[outcome as usize].inc();
    }

    pub fn revocation(&self, kind: Revocation) {
        self.revocations[kind as usize].inc();
    }

    pub fn throttled(&self, limiter: Limiter) {
        self.throttled[limiter as usize].inc();
    }

    pub fn key_cache(&self, lookup: KeyCacheLookup) {
        self.key_cache[lookup as usize].inc();
    }

    pub fn database_error(&self) {
        self.database_errors.inc();
    }

    /// The request histogram for an app serving `routes`, whose numbers
    /// are the ones [`RequestDurations::observe`] is given.
    pub fn request_durations<'a>(
        &self,
        routes: impl IntoIterator<Item = &'a str>,
    ) -> RequestDurations {
        let routes: Vec<String> = routes
            .into_iter()
            .map(str::to_owned)
            .chain([UNMATCHED.to_owned()])
            .collect();
        let slots = (0..routes.len() * METHODS.len() * STATUS_SLOTS)
            .map(|_| OnceLock::new())
            .collect();
        RequestDurations {
            family: self.requests.clone(),
            routes,
            slots,
        }
    }

    /// The feed's lag, read when a scrape asks for it.
    pub fn set_revocation_lag(&self, lag: Duration) {
        self.revocation_lag.set(lag.as_secs_f64());
    }

    /// A pool's connections, read when a scrape asks for them.
    pub fn set_connections(&self, pool: &'static str, in_use: u32, idle: u32, max: u32) {
        for (state, n) in [("in_use", in_use), ("idle", idle)] {
            self.connections
                .get_or_create(&[("pool", pool), ("state", state)])
                .set(i64::from(n));
        }
        self.connections_max
            .get_or_create(&[("pool", pool)])
            .set(i64::from(max));
    }

    /// Every series, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// The request histogram of one app, with a place for every series its
/// requests can touch (route × method × status): the first request of a
/// series creates it, every later one finds it with an atomic load.
pub struct RequestDurations {
    family: RequestFamily,
    /// The route labels by number, `unmatched` last.
    routes: Vec<String>,
    slots: Box<[OnceLock<DurationHistogram>]>,
}

impl RequestDurations {
    /// A request under route number `route` (none: it matched no route).
    pub fn observe(
        &self,
        route: Option<usize>,
        method: &Method,
        status: StatusCode,
        took: Duration,
    ) {
        let unmatched = self.routes.len() - 1;
        let route = route.filter(|&r| r < unmatched).unwrap_or(unmatched);
        let (method, status) = (method_slot(method), status_slot(status));
        let slot = (route * METHODS.len() + method) * STATUS_SLOTS + status;
        self.slots[slot]
            .get_or_init(|| {
                self.family.get_or_create_owned(&RequestLabels {
                    method: METHODS[method],
                    route: self.routes[route].clone(),
                    status: status_label(status),
                })
            })
            .observe(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_label_and_unlisted_ones_are_named_by_class() {
        let label = |code| status_label(status_slot(StatusCode::from_u16(code).unwrap()));
        assert!(STATUSES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(label(200), "200");
        assert_eq!(label(503), "503");
        assert_eq!(label(418), "4xx");
        assert_eq!(label(102), "1xx");
        assert_eq!(label(599), "5xx");
        assert_eq!(label(999), "5xx");
    }

    #[test]
    fn methods_outside_the_standard_ones_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(
            method_label(&Method::from_bytes(b"LK_SECRET").unwrap()),
            "OTHER"
        );
        assert_eq!(method_label(&Method::TRACE), "OTHER");
    }

    #[test]
    fn every_counter_is_exported_from_the_start_and_moves_alone() {
        let metrics = Metrics::new();
        metrics.exchange(GrantType::Password, Exchange::InvalidGrant);
        metrics.verification(Verification::Revoked);
        metrics.revocation(Revocation::Disable);
        metrics.throttled(Limiter::Logins);
        metrics.key_cache(KeyCacheLookup::Hit);
        metrics.database_error();

        let text = metrics.encode();

        let ones: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.ends_with(" 1"))
            .collect();
        assert_eq!(
            ones,
            [
                r#"latchkey_token_exchanges_total{grant_type="password",outcome="invalid_grant"} 1"#,
                r#"latchkey_token_verifications_total{outcome="revoked"} 1"#,
                r#"latchkey_revocations_total{kind="disable"} 1"#,
                r#"latchkey_throttled_requests_total{limiter="logins"} 1"#,
                r#"latchkey_key_cache_lookups_total{result="hit"} 1"#,
                "latchkey_database_errors_total 1",
            ],
            "{text}"
        );
        let zeros = text.lines().filter(|l| l.ends_with(" 0")).count();
        let expected = GrantType::ALL.len() * Exchange::ALL.len() - 1 + Verification::ALL.len() - 1
            + Revocation::ALL.len()
            - 1
            + Limiter::ALL.len()
            - 1
            + KeyCacheLookup::ALL.len()
            - 1;
        assert_eq!(zeros, expected, "{text}");
    }

    #[test]
    fn requests_are_counted_by_method_template_and_status() {
        let metrics = Metrics::new();
        let durations = metrics.request_durations(["/todos", "/todos/{id}"]);

        durations.observe(
            Some(1),
            &Method::GET,
            StatusCode::OK,
            Duration::from_millis(2),
        );
        durations.observe(
            Some(1),
            &Method::GET,
            StatusCode::OK,
            Duration::from_millis(3),
        );
        durations.observe(None, &Method::GET, StatusCode::NOT_FOUND, Duration::ZERO);
        let text = metrics.encode();

        for line in [
            r#"http_server_request_duration_seconds_count{method="GET",route="/todos/{id}",status="200"} 2"#,
            r#"http_server_request_duration_seconds_count{method="GET",route="unmatched",status="404"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains(r#"route="/todos""#), "{text}");
    }
}
