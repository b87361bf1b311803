//! latchkey: API keys traded for short-lived JWTs, and a Todo API that checks
//! them statelessly.

pub mod audit;
pub mod backup;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod key_cache;
pub mod keyring;
pub mod last_used;
pub mod migrate;
pub mod owner_only;
pub mod revocations;
pub mod server;
pub mod service;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod throttle;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    audit::failures::Failures,
    config::{Config, Registration},
    db::Db,
    domain::tokens::{KeySet, TokenSettings, Tokens},
    http::cors::Cors,
    key_cache::KeyCache,
    keyring::Keyring,
    last_used::LastUsed,
    revocations::Revocations,
    server::ConnectionLimits,
    state::AppState,
    tasks::BackgroundTasks,
    telemetry::metrics::Metrics,
    throttle::{argon2::Argon2Queue, Throttle},
};

/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections the metrics listener serves at once: a scraper or two needs
/// one each, and the rest are left to the API.
const METRICS_CONNECTIONS: usize = 16;

/// How long a scrape in flight when the API has drained may take to finish.
const METRICS_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A built server: listening, migrated, not yet serving.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    /// With `--metrics-bind`: where `GET /metrics` is served.
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    state: Arc<AppState>,
    tasks: BackgroundTasks,
    shutdown_delay: Duration,
}

impl App {
    /// Binds first (so port 0 resolves to a real port), then prepares the data
    /// directory, the database and the signing key.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener
            .local_addr()
            .context("the listener has no address")?;
        let metrics_listener = match config.metrics_bind {
            Some(bind) => {
                let listener = TcpListener::bind(bind)
                    .await
                    .with_context(|| format!("binding --metrics-bind {bind}"))?;
                let addr = listener
                    .local_addr()
                    .context("the metrics listener has no address")?;
                Some((listener, addr))
            }
            None => None,
        };

        // Refused before anything is opened, even where it goes unused.
        keyring::secret(&config)?;
        let db = open_db(&config).await?;
        service::accounts::fold_stored_emails(&db)
            .await
            .context("folding the stored emails")?;
        let (keys, keyring) = match keyring::configured(&config)? {
            Some(key) => (
                KeySet {
                    current: key,
                    previous: Vec::new(),
                },
                None,
            ),
            None => {
                let mut keyring = Keyring::for_config(&config, &db)?;
                (keyring.load_or_create().await?, Some(keyring))
            }
        };
        let tokens = Tokens::new(
            TokenSettings {
                issuer: config
                    .issuer
                    .clone()
                    .unwrap_or_else(|| format!("http://{addr}")),
                audience: config.audience.clone(),
                ttl: config.token_ttl,
            },
            keys,
        );
        let key_cache = Arc::new(KeyCache::new(config.key_cache_size));
        // Loaded before the first request: a restart forgets no revocation.
        let revocations = Arc::new(Revocations::new(
            config.token_ttl,
            config.revocation_max_lag,
            config.revocation_reload_every,
            Arc::clone(&key_cache),
        ));
        revocations
            .reload(&db)
            .await
            .context("loading the revocations in force")?;
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(AppState {
            db,
            tokens: Arc::new(tokens),
            last_used: Arc::new(LastUsed::default()),
            revocations,
            keys: key_cache,
            registration_open: config.registration == Registration::Open,
            limits: config.limits.clone(),
            throttle: Arc::new(Throttle::new(&config.limits, Arc::clone(&metrics))),
            argon2: Arc::new(Argon2Queue::new(config.limits.argon2_queue)),
            failures: Arc::new(Failures::default()),
            draining: AtomicBool::new(false),
            metrics,
            cors: Arc::new(Cors::new(&config.cors_origins)),
        });

        let mut tasks = BackgroundTasks::default();
        let (last_used, db) = (Arc::clone(&state.last_used), state.db.clone());
        tasks.add("key-use writer", move |stopping| async move {
            last_used.write_behind(db, stopping).await;
        });
        let (failures, db) = (Arc::clone(&state.failures), state.db.clone());
        tasks.add("audit failure writer", move |stopping| async move {
            failures.write_behind(db, stopping).await;
        });
        tasks.add_until_stopped(
            "audit pruner",
            audit::retention::prune_periodically(state.db.clone(), config.audit_retention),
        );
        let (revocations, db) = (Arc::clone(&state.revocations), state.db.clone());
        tasks.add("revocation feed", move |stopping| {
            revocations.follow(db, stopping)
        });
        let throttle = Arc::clone(&state.throttle);
        tasks.add_until_stopped("limiter sweeper", async move {
            let mut every = tokio::time::interval(throttle::FORGET_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                throttle.forget_idle();
            }
        });
        // Where the signing keys are reloaded from; none for a configured key.
        if let Some(keyring) = keyring {
            tasks.add_until_stopped("keyring watcher", keyring.watch(Arc::clone(&state.tokens)));
        }
        Ok(App {
            listener,
            addr,
            metrics_listener,
            state,
            tasks,
            shutdown_delay: config.shutdown_delay,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `GET /metrics` is served, with `--metrics-bind`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The server's own database handle (closing it makes `/ready` fail).
    pub fn db(&self) -> Db {
        self.state.db.clone()
    }

    /// The revocations this server enforces, for tests that look at its window.
    pub fn revocations(&self) -> Arc<Revocations> {
        Arc::clone(&self.state.revocations)
    }

    /// The argon2 queue, for tests that fill it.
    pub fn argon2(&self) -> Arc<Argon2Queue> {
        Arc::clone(&self.state.argon2)
    }

    /// The failures tallied for the audit log, for tests that write them
    /// without waiting for the next flush.
    pub fn audit_failures(&self) -> Arc<Failures> {
        Arc::clone(&self.state.failures)
    }

    /// Serves until `stop` completes, then lets in-flight requests finish,
    /// stops the background tasks (which writes pending key-use times and
    /// the tallied failures) and closes the database.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let tasks = self.tasks.start();
        let state = Arc::clone(&self.state);
        let delay = self.shutdown_delay;
        let stop = async move {
            stop.await;
            state.draining.store(true, Ordering::Relaxed);
            if !delay.is_zero() {
                tracing::info!(?delay, "shutting down: /ready answers 503 before the drain");
                tokio::time::sleep(delay).await;
            }
        };
        let limits = ConnectionLimits::new(&self.state.limits);
        let (drained, metrics_stop) = tokio::sync::oneshot::channel();
        let api = async {
            server::serve(
                self.listener,
                http::app(Arc::clone(&self.state)),
                limits,
                stop,
                DRAIN_TIMEOUT,
            )
            .await;
            let _ = drained.send(());
        };
        let metrics = serve_metrics(
            self.metrics_listener.map(|(listener, _)| listener),
            Arc::clone(&self.state),
            limits,
            metrics_stop,
        );
        tokio::join!(api, metrics);
        let stopped = tasks.stop().await;
        self.state.db.close().await;
        stopped
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// The metrics listener, if there is one, until `stop`: the API's drain is
/// over then, so a scrape during it still sees the server.
async fn serve_metrics(
    listener: Option<TcpListener>,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Some(listener) = listener else {
        return;
    };
    let limits = ConnectionLimits {
        max_connections: METRICS_CONNECTIONS,
        ..limits
    };
    let stop = async {
        let _ = stop.await;
    };
    server::serve(
        listener,
        http::metrics::app(state),
        limits,
        stop,
        METRICS_DRAIN_TIMEOUT,
    )
    .await;
}

/// Creates the data directory (owner-only) and opens the database with twice
/// as many connections as cores for reads (on PostgreSQL, for everything).
pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let location = config.database()?;
    owner_only::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let connections = u32::try_from(cores * 2).unwrap_or(u32::MAX).max(4);
    Db::open(&location, connections)
        .await
        .context("opening the database")
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: draining requests");
}
