//! A server on a fresh store, tokens of each role, and request helpers.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rotation_core::ports::CryptoProvider;
use rotation_core::time::{Timestamp, truncate};
use rotation_crypto::{Kek, MasterSecret, RingCrypto};
use rotation_server::{Role, RunningServer, ServerConfig, Tokens};
use rotation_testkit::SettableClock;
use secrecy::{ExposeSecret as _, SecretBox};
use serde_json::Value;

/// A running server with an admin, an operator and a viewer token.
pub(crate) struct TestServer {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) admin: String,
    pub(crate) operator: String,
    pub(crate) viewer: String,
    pub(crate) clock: Arc<SettableClock>,
    pub(crate) tokens: Tokens,
    server: Option<RunningServer>,
    _dir: Option<tempfile::TempDir>,
}

/// The master key file contents every test store uses.
pub(crate) const KEY_BYTES: [u8; 32] = [7u8; 32];

fn secret() -> MasterSecret {
    MasterSecret::KeyFile(SecretBox::new(Box::new(KEY_BYTES.to_vec())))
}

/// Creates and initialises the store at `url` (as `rotation init` would)
/// under the key file [`KEY_BYTES`].
pub(crate) async fn init_store(url: &str) -> Arc<dyn rotation_core::ports::StateStore> {
    let store = rotation_app::open_store(url, true).await.unwrap();
    let (_kek, params) = Kek::create(&secret()).unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.put_meta(rotation_app::KEK_META, &serde_json::to_vec(&params).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store
}

/// Options of a test server.
pub(crate) struct Options {
    pub(crate) scheduler_interval: Option<Duration>,
    pub(crate) body_limit: usize,
    /// Requests taking longer are answered 408.
    pub(crate) request_timeout: Duration,
    /// The outbox's notifier (default: from the environment, as the binary).
    pub(crate) notifier: Option<Arc<dyn rotation_core::ports::Notifier>>,
    /// The key custody (default: the store's local custody).
    pub(crate) custody: Option<Arc<dyn rotation_core::ports::KeyCustody>>,
    /// Serve HTTPS with this configuration (the base URL is then `https://`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Requests per second per token (0: no limit).
    pub(crate) rate_limit_per_second: u32,
    /// `:validate` calls per minute per token and secret (0: no limit).
    pub(crate) validate_per_minute: u32,
    /// How often validation attempts are audited.
    pub(crate) validation_audit_interval: Duration,
    /// Most connections served at once.
    pub(crate) max_connections: usize,
    /// Internal addresses `http:` tests may reach (`ROTATION_URL_ALLOWLIST`).
    pub(crate) url_allowlist: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scheduler_interval: None,
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(60),
            notifier: None,
            custody: None,
            tls: None,
            rate_limit_per_second: ServerConfig::new("", secret()).rate_limit_per_second,
            validate_per_minute: ServerConfig::new("", secret()).validate_per_minute,
            validation_audit_interval: Duration::from_secs(60),
            max_connections: 1024,
            url_allowlist: "127.0.0.1",
        }
    }
}

impl TestServer {
    /// A server on a new SQLite store, the scheduler off.
    pub(crate) async fn sqlite() -> TestServer {
        Self::sqlite_with(Options::default()).await
    }

    /// A server on a new SQLite store.
    pub(crate) async fn sqlite_with(options: Options) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("rotation.db").display());
        Self::start(url, Some(dir), options).await
    }

    /// A server on the (new, empty) store at `url`.
    pub(crate) async fn start(url: String, dir: Option<tempfile::TempDir>, options: Options) -> TestServer {
        let store = init_store(&url).await;
        let clock = Arc::new(SettableClock::new(truncate(chrono::Utc::now())));
        let crypto: Arc<dyn CryptoProvider> = Arc::new(RingCrypto::new());
        let tokens = Tokens::new(store, crypto, clock.clone());
        let token = |role| {
            let tokens = tokens.clone();
            async move {
                let (_, t) = tokens.create(role, None, Some(format!("test {role}"))).await.unwrap();
                t.expose_secret().to_owned()
            }
        };
        let (admin, operator, viewer) = (
            token(Role::Admin).await,
            token(Role::Operator).await,
            token(Role::Viewer).await,
        );
        let mut config = ServerConfig::new(url, secret());
        config.scheduler_interval = options.scheduler_interval;
        config.body_limit = options.body_limit;
        config.request_timeout = options.request_timeout;
        config.notifier = options.notifier;
        config.custody = options.custody;
        config.rate_limit_per_second = options.rate_limit_per_second;
        config.validate_per_minute = options.validate_per_minute;
        config.validation_audit_interval = options.validation_audit_interval;
        config.max_connections = options.max_connections;
        config.url_allowlist = Arc::new(rotation_core::outbound::UrlAllowlist::parse(options.url_allowlist).unwrap());
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        config.tls = options.tls;
        config.clock = clock.clone();
        config.worker_id = "test".into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = rotation_server::start(config, listener).await.unwrap();
        TestServer {
            base: format!("{scheme}://{}", server.addr()),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            admin,
            operator,
            viewer,
            clock,
            tokens,
            server: Some(server),
            _dir: dir,
        }
    }

    /// Now, by the server's clock.
    pub(crate) fn now(&self) -> Timestamp {
        use rotation_core::time::Clock as _;
        self.clock.now()
    }

    /// A request with `token` (none when `None`) and an optional JSON body;
    /// returns the status and the JSON body (`Null` when not JSON).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET as `token`.
    /// `GET /metrics` (no token): the Prometheus text.
    pub(crate) async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// PUT as `token`.
    pub(crate) async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    /// POST as `token`.
    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Graceful shutdown.
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }
}

/// Asserts an error body: status and reason.
#[track_caller]
pub(crate) fn assert_error(got: &(StatusCode, Value), status: StatusCode, reason: &str) {
    assert_eq!(got.0, status, "body: {}", got.1);
    assert_eq!(got.1["reason"], reason, "body: {}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {}",
        got.1
    );
}

/// A unique id for names in a shared store.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid_like()[..8])
}

fn uuid_like() -> String {
    let mut b = [0u8; 8];
    RingCrypto::new().fill_random(&mut b).unwrap();
    hex::encode(b)
}

/// A local HTTP server answering every request with `status` (and no
/// body); returns its base URL. Runs until the test process ends.
pub(crate) async fn http_answering(status: u16) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    if socket.readable().await.is_err() {
                        return;
                    }
                    match socket.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                let answer = format!("HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let mut rest = answer.as_bytes();
                while !rest.is_empty() {
                    if socket.writable().await.is_err() {
                        return;
                    }
                    match socket.try_write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}
