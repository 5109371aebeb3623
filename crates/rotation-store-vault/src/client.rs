//! The HTTP client: authentication (token or AppRole, renewed before
//! expiry), the namespace header, timeouts, retries with backoff, and the
//! mapping of Vault's answers to the engine's error reasons.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rotation_core::error::{Error, Reason, Result};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// How the client authenticates.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token given by the operator (`VAULT_TOKEN`). On first use the
    /// client looks it up (`auth/token/lookup-self`); a renewable token with
    /// a TTL is renewed (`renew-self`) when a third of its TTL is left. A
    /// root or non-expiring token is used as it is.
    Token(SecretString),
    /// AppRole login (`auth/<mount>/login` with `role_id` and `secret_id`);
    /// the token it gives is renewed before it expires and replaced by a
    /// fresh login when it can no longer be renewed.
    AppRole {
        /// Mount of the AppRole auth method (usually `approle`).
        mount: String,
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(***)"),
            VaultAuth::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .field("secret_id", &"***")
                .finish(),
        }
    }
}

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Base address, e.g. `https://vault.example:8200` (no `/v1`).
    pub addr: String,
    /// Authentication.
    pub auth: VaultAuth,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Timeout of one HTTP request (default 10 s).
    pub timeout: Duration,
    /// Retries of a safe request after a connection error, a timeout or a
    /// 5xx/429 answer (default 3; backoff 100 ms, doubling).
    pub retries: u32,
}

impl VaultConfig {
    /// A configuration with the default timeout and retries.
    pub fn new(addr: impl Into<String>, auth: VaultAuth) -> Self {
        VaultConfig {
            addr: addr.into(),
            auth,
            namespace: None,
            timeout: Duration::from_secs(10),
            retries: 3,
        }
    }
}

/// Whether a request may be sent again after a failure whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: retried after connection errors, timeouts and 5xx.
    Safe,
    /// Writes that must not happen twice (a new KV version): retried only
    /// when the connection could not be made (the request was never sent).
    ConnectOnly,
}

struct TokenState {
    token: SecretString,
    /// When the token should be renewed (tokens with a TTL).
    renew_at: Option<Instant>,
    renewable: bool,
    /// Whether the TTL and renewability are known (an operator's token is
    /// looked up on first use; AppRole logins say them in their answer).
    known: bool,
}

/// How long an operator's token that could not be renewed is used before
/// renewing is tried again (there is no login to fall back on).
const RENEW_RETRY: Duration = Duration::from_secs(30);

/// A Vault/OpenBao HTTP client shared by the adapters of this crate.
///
/// Its `Debug` never shows a token or secret id.
pub struct VaultClient {
    http: reqwest::Client,
    base: String,
    config: VaultConfig,
    token: Mutex<Option<TokenState>>,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("addr", &self.base)
            .field("auth", &self.config.auth)
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

/// An answer with a success status (or 404, which callers interpret).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body, `Null` when there is none.
    pub body: Value,
}

impl VaultClient {
    /// A client for `config`; `invalid_input` for an address that is not
    /// `http(s)://`. Nothing is sent until the first request.
    pub fn new(config: VaultConfig) -> Result<Self> {
        let base = config.addr.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::invalid_input(format!(
                "vault address {base:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::backend(format!("cannot build the HTTP client: {e}")))?;
        let token = match &config.auth {
            VaultAuth::Token(t) => Some(TokenState {
                token: t.clone(),
                renew_at: None,
                renewable: false,
                known: false,
            }),
            VaultAuth::AppRole { .. } => None,
        };
        Ok(VaultClient {
            http,
            base,
            config,
            token: Mutex::new(token),
        })
    }

    /// The server's base address.
    pub fn addr(&self) -> &str {
        &self.base
    }

    /// `GET /v1/<path>`: the body, or `None` on 404.
    pub async fn read(&self, path: &str) -> Result<Option<Value>> {
        let a = self.call(Method::GET, path, None, Retry::Safe).await?;
        Ok((a.status != StatusCode::NOT_FOUND).then_some(a.body))
    }

    /// `POST /v1/<path>` with a JSON body: the body of the answer, or `None` on 404.
    pub async fn write(&self, path: &str, body: &Value, retry: Retry) -> Result<Option<Value>> {
        let a = self.call(Method::POST, path, Some(body), retry).await?;
        Ok((a.status != StatusCode::NOT_FOUND).then_some(a.body))
    }

    /// `DELETE /v1/<path>` (idempotent).
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call(Method::DELETE, path, None, Retry::Safe).await?;
        Ok(())
    }

    /// One request with authentication and retries. 404 is returned as an
    /// answer; every other failure becomes an error with its reason.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, retry: Retry) -> Result<Answer> {
        let mut relogged = false;
        let mut attempt = 0u32;
        loop {
            let token = self.token().await?;
            let outcome = self.send(&method, path, body, Some(&token)).await;
            let error = match outcome {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            // An AppRole token that expired meanwhile: log in again, once.
            if error.error.reason == Reason::Forbidden
                && !relogged
                && matches!(self.config.auth, VaultAuth::AppRole { .. })
            {
                relogged = true;
                *self.token.lock().await = None;
                continue;
            }
            let again = match retry {
                Retry::Safe => error.transient,
                Retry::ConnectOnly => error.not_sent,
            };
            if !again || attempt >= self.config.retries {
                return Err(error.error);
            }
            tracing::debug!(%path, attempt, "vault request failed, retrying: {}", error.error);
            tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(6))).await;
            attempt += 1;
        }
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&SecretString>,
    ) -> std::result::Result<Answer, Failure> {
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(ns) = &self.config.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let what = format!("vault {method} /v1/{path}");
        let response = request.send().await.map_err(|e| Failure {
            not_sent: e.is_connect(),
            transient: true,
            error: Error::backend(format!(
                "{what}: {}{}",
                if e.is_timeout() { "timed out: " } else { "" },
                without_url(&e)
            )),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Failure {
            not_sent: false,
            transient: true,
            error: Error::backend(format!("{what}: reading the answer: {}", without_url(&e))),
        })?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(Answer { status, body });
        }
        let messages: Vec<String> = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let joined = if messages.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            messages.join("; ")
        };
        let message = format!("{what}: {} {joined}", status.as_u16());
        let (reason, transient) = match status.as_u16() {
            400 if joined.contains("check-and-set") => (Reason::ConcurrentRotation, false),
            // A freshly mounted KV v2 answers this for a moment ("will resume service shortly").
            400 if joined.contains("Upgrading from non-versioned to versioned data") => {
                (Reason::BackendUnavailable, true)
            }
            400 | 405 | 413 | 422 => (Reason::InvalidInput, false),
            401 => (Reason::Unauthorized, false),
            403 => (Reason::Forbidden, false),
            412 | 429 | 472 | 473 => (Reason::BackendUnavailable, true),
            s if s >= 500 => (Reason::BackendUnavailable, true),
            _ => (Reason::BackendUnavailable, false),
        };
        Err(Failure {
            not_sent: false,
            transient,
            error: Error::new(reason, message),
        })
    }

    /// The token to send, logging in or renewing first when needed.
    async fn token(&self) -> Result<SecretString> {
        let mut guard = self.token.lock().await;
        if let Some(state) = guard.as_mut() {
            if !state.known && state.renew_at.is_none_or(|at| Instant::now() >= at) {
                self.look_up(state).await;
            }
            match state.renew_at {
                Some(at) if Instant::now() >= at => {
                    if state.renewable
                        && let Ok(renewed) = self.renew(&state.token).await
                    {
                        *state = renewed;
                        return Ok(state.token.clone());
                    }
                    if matches!(self.config.auth, VaultAuth::Token(_)) {
                        // No login to fall back on: use the token until the
                        // server refuses it, and try renewing again later.
                        state.renew_at = Some(Instant::now() + RENEW_RETRY);
                        return Ok(state.token.clone());
                    }
                    // Not renewable (or past its max TTL): log in again below.
                }
                _ => return Ok(state.token.clone()),
            }
        }
        let state = self.login().await?;
        let token = state.token.clone();
        *guard = Some(state);
        Ok(token)
    }

    async fn login(&self) -> Result<TokenState> {
        let VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } = &self.config.auth
        else {
            return Err(Error::new(Reason::Unauthorized, "vault: no token"));
        };
        let body = json!({"role_id": role_id, "secret_id": secret_id.expose_secret()});
        let path = format!("auth/{mount}/login");
        let mut attempt = 0;
        let answer = loop {
            match self.send(&Method::POST, &path, Some(&body), None).await {
                Ok(a) => break a,
                Err(f) if f.transient && attempt < self.config.retries => {
                    tokio::time::sleep(Duration::from_millis(100u64 << attempt)).await;
                    attempt += 1;
                }
                Err(f) => return Err(f.error),
            }
        };
        if answer.status == StatusCode::NOT_FOUND {
            return Err(Error::new(
                Reason::Unauthorized,
                format!("vault POST /v1/{path}: 404 (is AppRole enabled at {mount}/?)"),
            ));
        }
        token_state(&answer.body, &path)
    }

    /// Learns the TTL and renewability of an operator's token. A server
    /// that cannot be reached leaves them unknown (asked again after
    /// [`RENEW_RETRY`], so an outage does not double every request); a
    /// token that may not look itself up is used as it is.
    async fn look_up(&self, state: &mut TokenState) {
        match self
            .send(&Method::GET, "auth/token/lookup-self", None, Some(&state.token))
            .await
        {
            Ok(answer) => {
                let data = answer.body.get("data");
                let ttl = data.and_then(|d| d.get("ttl")).and_then(Value::as_u64).unwrap_or(0);
                state.renewable = data
                    .and_then(|d| d.get("renewable"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                state.renew_at = renew_at(ttl);
                state.known = true;
            }
            Err(f) if f.transient => state.renew_at = Some(Instant::now() + RENEW_RETRY),
            Err(_) => state.known = true,
        }
    }

    async fn renew(&self, token: &SecretString) -> Result<TokenState> {
        let path = "auth/token/renew-self";
        let answer = self
            .send(&Method::POST, path, Some(&json!({})), Some(token))
            .await
            .map_err(|f| f.error)?;
        token_state(&answer.body, path)
    }
}

/// The token, renewal time and renewability in an `auth` answer. Renewal is
/// due when a third of the lease is left.
fn token_state(body: &Value, path: &str) -> Result<TokenState> {
    let auth = body.get("auth").filter(|a| !a.is_null());
    let token = auth
        .and_then(|a| a.get("client_token"))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::backend(format!("vault /v1/{path}: the answer has no auth.client_token")))?;
    let lease = auth
        .and_then(|a| a.get("lease_duration"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let renewable = auth
        .and_then(|a| a.get("renewable"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(TokenState {
        token: SecretString::from(token.to_owned()),
        renew_at: renew_at(lease),
        renewable,
        known: true,
    })
}

/// When a token with `ttl` seconds left is due for renewal: when a third
/// of it is left; never for a token without a TTL.
fn renew_at(ttl: u64) -> Option<Instant> {
    (ttl > 0).then(|| Instant::now() + Duration::from_millis(ttl * 1000 * 2 / 3))
}

/// A reqwest error without its URL (the address is in our message already).
fn without_url(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "").replace(" ()", "");
    }
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

struct Failure {
    /// The request never reached the server (connection refused).
    not_sent: bool,
    /// Retrying later may succeed.
    transient: bool,
    error: Error,
}
