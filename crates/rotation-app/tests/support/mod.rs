//! Shared by the integration tests of `rotation-app`: an engine wired by
//! `rotation_app::engine` (real targets through `AppResolver`) on a SQLite
//! store in a temp dir with a settable clock; the PostgreSQL server of
//! `DATABASE_URL` (required) driven through `psql`; an HTTP receiver, a
//! small SMTP server, and an HMAC check independent of the code under test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use rotation_app::Identity;
use rotation_core::engine::{PutSecret, SecretRotateRequest};
use rotation_core::policy::{Policy, Procedure, Trigger};
use rotation_core::ports::{KeyCustody, Notifier, StateStore};
use rotation_core::secret::{SecretConfig, SecretType, SecretValue, Stage, VersionSelector};
use rotation_core::{Engine, Error};
use rotation_crypto::{Kek, LocalCustody, MasterSecret};
use rotation_testkit::SettableClock;
use secrecy::SecretBox;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One test's world: its own SQLite store, clock, custody and notifier.
pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) clock: Arc<SettableClock>,
    custody: Arc<dyn KeyCustody>,
    notifier: Option<Arc<dyn Notifier>>,
}

impl Env {
    /// A fresh SQLite store; the clock starts at the current whole second
    /// (certificates carry whole seconds).
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("rotation.db").display());
        let store = rotation_app::open_store(&url, true).await.unwrap();
        let secret = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![7u8; 32])));
        let (kek, _) = Kek::create(&secret).unwrap();
        let now = chrono::Utc::now();
        let start = chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap();
        Env {
            _dir: dir,
            store,
            clock: Arc::new(SettableClock::new(start)),
            custody: Arc::new(LocalCustody::new(kek)),
            notifier: None,
        }
    }

    /// The same world delivering notifications through `notifier`.
    pub(crate) fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// An engine as the binaries build it: `rotation_app::engine` (ring,
    /// `AppResolver`), plus the notifier when one was given. Its `http:`
    /// tests may reach 127.0.0.1 (the tests' listeners), as
    /// `ROTATION_URL_ALLOWLIST=127.0.0.1` allows.
    pub(crate) fn engine(&self) -> Engine {
        let engine = rotation_app::engine(
            self.store.clone(),
            self.custody.clone(),
            self.clock.clone(),
            Identity {
                owner: "rotation-app-it".into(),
                actor: "test".into(),
                lease: chrono::TimeDelta::seconds(60),
            },
        )
        .with_resolver(Arc::new(
            rotation_app::AppResolver::new().with_url_allowlist(loopback()),
        ));
        match &self.notifier {
            Some(n) => engine.with_notifier(n.clone()),
            None => engine,
        }
    }
}

/// The allowlist of these tests: their listeners are on 127.0.0.1.
pub(crate) fn loopback() -> Arc<rotation_core::outbound::UrlAllowlist> {
    Arc::new(rotation_core::outbound::UrlAllowlist::parse("127.0.0.1").unwrap())
}

/// Sets policy `name` (trigger: 365 days of age, so only what the test
/// arranges makes it fire) with the procedure `f` shapes.
pub(crate) async fn set_policy(engine: &Engine, name: &str, f: impl FnOnce(&mut Procedure)) {
    let mut procedure = Procedure::default();
    f(&mut procedure);
    engine
        .set_policy(Policy {
            name: name.into(),
            trigger: Trigger::MaxAgeDays(365),
            migrate: false,
            retire_old: false,
            updated_at: engine.now(),
            procedure,
        })
        .await
        .unwrap();
}

/// Writes a secret with a value.
pub(crate) async fn put(
    engine: &Engine,
    path: &str,
    secret_type: SecretType,
    value: &str,
    policy: Option<&str>,
    config: SecretConfig,
) {
    engine
        .put_secret(PutSecret {
            path: path.into(),
            secret_type: Some(secret_type),
            value: Some(SecretValue::new(value)),
            policy: policy.map(str::to_owned),
            config: Some(config),
            ..PutSecret::default()
        })
        .await
        .unwrap();
}

/// A rotation request for `path` under its own policy.
pub(crate) fn rotate(path: &str) -> SecretRotateRequest {
    SecretRotateRequest {
        path: path.into(),
        ..SecretRotateRequest::default()
    }
}

/// The value of `path` at `stage` with its version.
pub(crate) async fn at_stage(
    engine: &Engine,
    path: &str,
    stage: Stage,
) -> (rotation_core::secret::SecretVersion, String) {
    let (v, value) = engine
        .get_secret(path, VersionSelector::Stage(stage))
        .await
        .unwrap_or_else(|e| panic!("{path} has no {stage:?} value: {e}"));
    (v, value.expose().to_owned())
}

/// The value of version `n` of `path`.
pub(crate) async fn version(engine: &Engine, path: &str, n: u32) -> (rotation_core::secret::SecretVersion, String) {
    let (v, value) = engine
        .get_secret(path, VersionSelector::Version(n))
        .await
        .unwrap_or_else(|e| panic!("{path} has no version {n}: {e}"));
    (v, value.expose().to_owned())
}

/// A fresh random string (alphanumeric, so it needs no quoting anywhere).
pub(crate) fn random(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A unique PostgreSQL role name (lower case, fits `<role>_green` in 63 bytes).
pub(crate) fn unique_role() -> String {
    format!("rot_app_{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// The error's display text, for leak checks.
pub(crate) fn error_text(e: &Error) -> String {
    format!("{e} / {e:?}")
}

// ---------------------------------------------------------------- PostgreSQL

/// `DATABASE_URL`: a superuser URL of the server under test. Missing is a
/// failure, never a skip.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must name a PostgreSQL superuser URL (postgres://user:pw@127.0.0.1:port/db); \
         `cargo xtask test` starts a throwaway server and sets it",
    )
}

/// Host, port, database, user and password of `DATABASE_URL`.
fn database_parts() -> (String, u16, String, String, String) {
    let url = url::Url::parse(&database_url()).expect("DATABASE_URL is a URL");
    let db = url.path().trim_start_matches('/');
    (
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        url.port().unwrap_or(5432),
        if db.is_empty() {
            "postgres".to_owned()
        } else {
            db.to_owned()
        },
        url.username().to_owned(),
        url.password().unwrap_or_default().to_owned(),
    )
}

/// The `psql` client: `PG_BIN/psql`, the newest
/// `/usr/lib/postgresql/<version>/bin/psql`, or `psql` on `PATH`. It is
/// libpq, a client independent of the sqlx driver the target under test uses.
fn psql_binary() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let p = PathBuf::from(dir).join("psql");
        if p.is_file() {
            return p;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin/psql")))
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return p;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("psql").is_file() {
                return dir.join("psql");
            }
        }
    }
    panic!("psql (the PostgreSQL client) is needed by these tests: apt-get install postgresql-client")
}

/// Runs `sql` (on stdin) on a fresh TCP connection as `user` with `password`.
async fn psql(user: &str, password: &str, sql: &str) -> std::process::Output {
    let (host, port, db, _, _) = database_parts();
    let mut child = tokio::process::Command::new(psql_binary())
        .args(["-X", "-w", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host={host} port={port} dbname={db} user={user} connect_timeout=10 sslmode=disable"
        ))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .env("PGPASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(sql.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

/// Runs `sql` as the superuser of `DATABASE_URL`; panics on failure.
pub(crate) async fn admin_sql(sql: &str) {
    let (_, _, _, user, password) = database_parts();
    let out = psql(&user, &password, sql).await;
    assert!(
        out.status.success(),
        "admin SQL failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates a LOGIN role with `password` (both alphanumeric).
pub(crate) async fn create_role(role: &str, password: &str) {
    assert!(role.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    admin_sql(&format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}';")).await;
}

/// Drops roles (best effort: cleanup).
pub(crate) async fn drop_roles(roles: &[&str]) {
    let (_, _, _, user, password) = database_parts();
    for role in roles {
        let _ = psql(&user, &password, &format!("DROP ROLE IF EXISTS \"{role}\";")).await;
    }
}

/// Whether `role` logs in with `password` on a fresh connection (scram
/// over TCP) and runs `SELECT 1`. A refusal other than a wrong password panics.
pub(crate) async fn can_login(role: &str, password: &str) -> bool {
    let out = psql(role, password, "SELECT 1;").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert_eq!(stdout.trim(), "1", "SELECT 1 as {role}: {stdout} {stderr}");
        return true;
    }
    assert!(
        stderr.contains("password authentication failed"),
        "unexpected failure logging in as {role}: {stderr}"
    );
    false
}

// ---------------------------------------------------------------- HTTP

/// One request an HTTP receiver saw.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    }
}

pub(crate) type Requests = Arc<Mutex<Vec<Recorded>>>;

#[derive(Clone)]
struct HttpState {
    status: u16,
    seen: Requests,
}

/// Serves every request on `listener` with `status`, recording it.
pub(crate) fn serve_http(listener: TcpListener, status: u16) -> Requests {
    let seen: Requests = Arc::new(Mutex::new(Vec::new()));
    async fn record(
        State(state): State<HttpState>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        state.seen.lock().unwrap().push(Recorded {
            path: uri.to_string(),
            headers,
            body: body.to_vec(),
        });
        StatusCode::from_u16(state.status).unwrap()
    }
    let app = axum::Router::new().fallback(record).with_state(HttpState {
        status,
        seen: seen.clone(),
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    seen
}

/// An HTTP receiver on an ephemeral port answering `status`.
pub(crate) async fn http_receiver(status: u16) -> (SocketAddr, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_http(listener, status))
}

/// Verifies `X-Rotation-Signature` (`sha256=<hex>` of HMAC-SHA256 over
/// `"<X-Rotation-Timestamp>.<body>"`) with the `hmac` crate, in constant time.
pub(crate) fn verify_signature(secret: &str, request: &Recorded) -> bool {
    let timestamp = request.header("x-rotation-timestamp");
    let signature = request.header("x-rotation-signature");
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 || hex.chars().any(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return false;
    }
    let expected: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    mac.verify_slice(&expected).is_ok()
}

// ---------------------------------------------------------------- SMTP
// Copied from rotation-notify's tests (a test helper of another crate).

/// One message the SMTP server accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mail {
    pub(crate) from: String,
    pub(crate) rcpt: Vec<String>,
    pub(crate) data: String,
}

impl Mail {
    /// A header's value, unfolded.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((key, v)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }

    /// The body, decoded when it is quoted-printable (soft line breaks
    /// and `=XX` escapes), so a value cannot hide across a wrapped line.
    pub(crate) fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let qp = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if !qp {
            return raw.to_owned();
        }
        let joined = raw.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

pub(crate) type Mails = Arc<Mutex<Vec<Mail>>>;

/// A small SMTP server (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) on
/// an ephemeral port.
pub(crate) async fn smtp_server() -> (SocketAddr, Mails) {
    let mails: Mails = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                let mut mail = Mail::default();
                if write.write_all(b"220 127.0.0.1 ESMTP test\r\n").await.is_err() {
                    return;
                }
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let command = line.trim_end().to_owned();
                    let upper = command.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-127.0.0.1\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
                    } else if upper.starts_with("HELO") {
                        b"250 127.0.0.1\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = command[10..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.rcpt.push(command[8..].trim().to_owned());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        if write
                            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                            data.push_str(unstuffed);
                        }
                        mail.data = data;
                        store.lock().unwrap().push(std::mem::take(&mut mail));
                        b"250 OK queued\r\n"
                    } else if upper == "RSET" || upper == "NOOP" {
                        b"250 OK\r\n"
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 Bye\r\n").await;
                        return;
                    } else {
                        b"502 Command not implemented\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, mails)
}

// ---------------------------------------------------------------- scripts

/// Writes an executable shell script `name` into `dir`.
pub(crate) fn write_script(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(body.as_bytes()).unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// A script that echoes its stdin (which carries the values) to stdout and
/// stderr and exits 3 on `test`.
pub(crate) const ECHO_SCRIPT_FAILING_TEST: &str = r#"#!/bin/sh
input=$(cat)
echo "script step $1 got: $input"
echo "script step $1 stderr got: $input" >&2
if [ "$1" = "test" ]; then
  exit 3
fi
exit 0
"#;
