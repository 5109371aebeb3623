//! `rotation-server`: the HTTP API over the same engine as the `rotation`
//! CLI, with bearer tokens and roles, a scheduler worker and Prometheus
//! metrics.
//!
//! **Architecture invariant: thin.** Handlers authenticate, parse, call one
//! engine operation and shape JSON; every rule lives in `rotation-core`.
//! Adapters are built by `rotation-app`, as for the CLI. Each request gets
//! an engine whose audit actor is the caller's token (`token:<id>`).
//! Rotations run in their own task, so a client that disconnects or times
//! out never cancels a run halfway (and a run left behind is resumable
//! anyway).

mod api;
pub mod auth;
mod background;
mod cache;
pub mod error;
mod metrics;
mod openapi;
mod rate_limit;
mod secrets;
mod serve;
pub mod tls;
mod validations;
mod views;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rotation_app::Identity;
use rotation_core::ports::{CryptoProvider, KeyCustody, Notifier, SecretBackend, StateStore};
use rotation_core::time::Clock;
use rotation_core::{Engine, Result};
use rotation_crypto::{MasterSecret, RingCrypto};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::{Caller, Role, TokenInfo, Tokens};

/// Everything the server needs, resolved by the caller (the binary reads
/// flags and environment; tests build it directly).
pub struct ServerConfig {
    /// Store URL (`sqlite://PATH` or `postgres://...`).
    pub store: String,
    /// The master secret that unlocks the store's key custody.
    pub master_secret: MasterSecret,
    /// How often the scheduler worker processes due schedules; `None` disables it.
    pub scheduler_interval: Option<Duration>,
    /// Name of this replica (lease owner prefix and scheduler actor).
    pub worker_id: String,
    /// Lease of the runs this server drives.
    pub lease: chrono::TimeDelta,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Requests taking longer are answered 408 (the work they started goes on).
    pub request_timeout: Duration,
    /// The clock (the system clock outside tests).
    pub clock: Arc<dyn Clock>,
    /// Where the outbox's notifications go; `None` builds the channels
    /// from the environment at start (`rotation_app::notifier_from_env`:
    /// `ROTATION_NOTIFY_CONFIG`, `ROTATION_WEBHOOK_SECRET`, `ROTATION_SMTP_*`).
    pub notifier: Option<Arc<dyn Notifier>>,
    /// The key custody; `None` unlocks the store's local custody with
    /// `master_secret`.
    pub custody: Option<Arc<dyn KeyCustody>>,
    /// Where secret values live; `None`: the store's sealed table.
    pub secret_backend: Option<Arc<dyn SecretBackend>>,
    /// Serve HTTPS with this configuration ([`tls::load`]); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most connections served at once; further clients wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Requests per second one token may send (bursts of twice that);
    /// beyond, 429 `rate_limited`. 0: no limit.
    pub rate_limit_per_second: u32,
    /// `:validate` calls per minute one token may make on one secret; 0: no limit.
    pub validate_per_minute: u32,
    /// How often counted `:validate` attempts are written to the audit log.
    pub validation_audit_interval: Duration,
    /// Internal addresses `http:` verification tests may reach
    /// (`ROTATION_URL_ALLOWLIST` in the binary); checked when a policy or a
    /// secret's tests are set and again when a value is sent.
    pub url_allowlist: Arc<rotation_core::outbound::UrlAllowlist>,
}

impl ServerConfig {
    /// A configuration with defaults: scheduler every 30 s, 60 s leases,
    /// 1 MiB bodies, 60 s request timeout, system clock, 1,024
    /// connections, 100 requests per second per token, 60 validations per
    /// minute per token and secret, audited every 60 s.
    pub fn new(store: impl Into<String>, master_secret: MasterSecret) -> Self {
        ServerConfig {
            store: store.into(),
            master_secret,
            scheduler_interval: Some(Duration::from_secs(30)),
            worker_id: "server".into(),
            lease: chrono::TimeDelta::seconds(60),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            clock: Arc::new(rotation_core::time::SystemClock),
            notifier: None,
            custody: None,
            secret_backend: None,
            tls: None,
            max_connections: 1024,
            rate_limit_per_second: 100,
            validate_per_minute: 60,
            validation_audit_interval: Duration::from_secs(60),
            url_allowlist: Arc::default(),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    store: Arc<dyn StateStore>,
    custody: Arc<dyn KeyCustody>,
    clock: Arc<dyn Clock>,
    tokens: Tokens,
    owner: String,
    lease: chrono::TimeDelta,
    notifier: Arc<dyn Notifier>,
    secret_backend: Option<Arc<dyn SecretBackend>>,
    background: background::Background,
    gauges: Arc<metrics::GaugeCache>,
    limits: Arc<rate_limit::Limits>,
    validations: Arc<validations::Validations>,
    cached: Arc<cache::Verdicts>,
    url_allowlist: Arc<rotation_core::outbound::UrlAllowlist>,
}

impl AppState {
    /// An engine acting as `actor`.
    pub(crate) fn engine(&self, actor: String) -> Engine {
        let engine = rotation_app::engine_with_allowlist(
            self.store.clone(),
            self.custody.clone(),
            self.clock.clone(),
            Identity {
                owner: self.owner.clone(),
                actor,
                lease: self.lease,
            },
            self.url_allowlist.clone(),
        )
        .with_notifier(self.notifier.clone());
        match &self.secret_backend {
            Some(backend) => engine.with_secret_backend(backend.clone()),
            None => engine,
        }
    }
}

/// A running server.
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    worker: Option<JoinHandle<()>>,
    validation_audit: JoinHandle<()>,
    /// The handlers' state, for the last audit of validations at shutdown.
    state: AppState,
    background: background::Background,
    /// How long a shutdown waits for operations started by requests.
    background_grace: std::time::Duration,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful shutdown: the scheduler worker stops between rotations
    /// (the one in progress finishes, unstarted claims are handed back),
    /// the server stops accepting connections and finishes in-flight
    /// requests, then waits up to one lease for operations requests started
    /// (a rotation whose client went away); what is still running then is
    /// resumed by another replica once its lease expires.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops (after [`RunningServer::shutdown`] or a
    /// signal given to [`start`]).
    pub async fn wait(self) -> Result<()> {
        if let Some(worker) = self.worker {
            let _ = worker.await;
        }
        let served = self.server.await;
        // Requests are done: what they counted is audited now.
        let _ = self.validation_audit.await;
        validations::flush(&self.state).await;
        if !self.background.wait_idle(self.background_grace).await {
            tracing::warn!(
                running = self.background.running(),
                "operations still running at shutdown; another replica resumes their runs when their leases expire"
            );
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(rotation_core::Error::backend(format!("HTTP server failed: {e}"))),
            Err(e) => Err(rotation_core::Error::backend(format!("HTTP server task failed: {e}"))),
        }
    }

    /// A handle that triggers the same graceful shutdown as [`RunningServer::shutdown`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }
}

/// Triggers a graceful shutdown from elsewhere (e.g. a signal handler).
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Starts the graceful shutdown.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Opens the store, unlocks the custody (a wrong master secret fails
/// here, before anything listens), builds the notification channels (a
/// configuration error fails here too), and serves on `listener` with the
/// scheduler worker running beside the HTTP server.
pub async fn start(config: ServerConfig, listener: TcpListener) -> Result<RunningServer> {
    let store = rotation_app::open_store(&config.store, false).await?;
    let custody: Arc<dyn KeyCustody> = match config.custody {
        Some(custody) => custody,
        None => Arc::new(rotation_crypto::master_key::unlock(store.as_ref(), &config.master_secret).await?),
    };
    let crypto: Arc<dyn CryptoProvider> = Arc::new(RingCrypto::new());
    let notifier = match config.notifier {
        Some(n) => n,
        None => rotation_app::notifier_from_env(crypto.clone()).map_err(|e| {
            rotation_core::Error::new(
                e.reason,
                format!("invalid notification settings (ROTATION_NOTIFY_CONFIG, ROTATION_WEBHOOK_SECRET, ROTATION_SMTP_*): {}", e.message),
            )
        })?,
    };
    let state = AppState {
        notifier,
        secret_backend: config.secret_backend,
        tokens: Tokens::new(store.clone(), crypto, config.clock.clone()),
        store,
        custody,
        clock: config.clock.clone(),
        owner: rotation_app::process_owner(&format!("server:{}", config.worker_id)),
        lease: config.lease,
        background: background::Background::default(),
        gauges: Arc::default(),
        limits: Arc::new(rate_limit::Limits::new(
            config.rate_limit_per_second,
            config.validate_per_minute,
        )),
        validations: Arc::default(),
        cached: Arc::default(),
        url_allowlist: config.url_allowlist.clone(),
    };
    let background = state.background.clone();
    let background_grace = config.lease.to_std().unwrap_or(std::time::Duration::from_secs(60));
    metrics::init();
    let addr = listener
        .local_addr()
        .map_err(|e| rotation_core::Error::backend(format!("cannot read the listening address: {e}")))?;
    let (shutdown, rx) = watch::channel(false);
    let worker = config.scheduler_interval.map(|interval| {
        let engine = state.engine(format!("scheduler:{}", config.worker_id));
        tokio::spawn(worker::run(engine, interval, rx.clone()))
    });
    let validation_audit = tokio::spawn(validations::run(
        state.clone(),
        config.validation_audit_interval,
        rx.clone(),
    ));
    let app = api::router(state.clone(), config.body_limit, config.request_timeout);
    let server_rx = rx;
    let https = config.tls.is_some();
    let header_timeout = config.request_timeout.min(serve::MAX_HEADER_TIME);
    let server = tokio::spawn(serve::serve(
        listener,
        app,
        config.tls,
        serve::Limits {
            header_timeout,
            max_connections: config.max_connections.max(1),
        },
        server_rx,
    ));
    tracing::info!(%addr, https, "rotation-server listening");
    Ok(RunningServer {
        addr,
        shutdown,
        server,
        worker,
        validation_audit,
        state,
        background,
        background_grace,
    })
}
