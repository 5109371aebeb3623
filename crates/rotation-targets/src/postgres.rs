//! The PostgreSQL role target: `ALTER ROLE ... PASSWORD` over an admin
//! connection, tested by a fresh login as the role.

use std::time::Duration;

use async_trait::async_trait;
use rotation_core::ports::{CredentialTarget, Step, StepContext, StepOutput, Verifier};
use rotation_core::secret::{Secret, Strategy};
use rotation_core::{Error, Reason, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::text::{Redactor, display_url, step_error};

/// Default time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for the statements of one step.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL role whose password rotates (secret type `database`).
///
/// Settings of the secret: `admin_secret` names the secret whose current
/// value is the admin connection URL (`postgres://user:pw@host:port/db`,
/// found in [`StepContext::references`]); `role` names the role (with
/// blue-green the engine names the slot role, `<role>_blue` or
/// `<role>_green`, in [`StepContext::slot`], and only that role is touched).
///
/// Steps: `set` runs `ALTER ROLE "<role>" PASSWORD 'SCRAM-SHA-256$4096:…'`
/// (the role quoted as an identifier): the SCRAM-SHA-256 verifier of the
/// pending password is computed here, as psql's `\password` and libpq's
/// `PQencryptPasswordConn` do (SASLprep, random salt, 4096 iterations), so
/// the password itself never reaches the server, its statement log or
/// `pg_stat_activity`, and the server stores the verifier as given whatever
/// its `password_encryption`; `test` opens a fresh connection to the same
/// host, port and database as the role with the pending password and runs
/// `SELECT 1`; `rollback` sets the current password again (its verifier, or
/// `PASSWORD NULL` when there is none); `create`, `finish` and `disable`
/// change nothing (a role has one password, so the previous one stopped
/// working at `set`).
/// Every step is idempotent.
///
/// TLS: connections to a host that is not this machine (not `localhost`,
/// a loopback address or a Unix socket) use `sslmode=verify-full` unless
/// the admin URL names another mode: the server's certificate must chain
/// to the webpki roots (or to the `sslrootcert` file of the URL) and name
/// the host. `sslmode=prefer` and `allow` are refused for such hosts (they
/// fall back to plaintext when TLS is refused, silently); `require` and
/// `verify-ca` are used as given, and so is `disable`, which an admin may
/// choose for the admin connection (every message then crosses the network
/// unencrypted, and a server asking for `password` authentication gets the
/// admin password in cleartext), but the `login` test then refuses to run:
/// it would offer the new password over that connection. Loopback
/// connections keep the URL's mode (libpq's default `prefer`).
///
/// Errors: `invalid_input` for missing settings, `backend_unavailable` when
/// the server cannot be reached (connect timeout 5 s by default),
/// `verification_failed` when the login of `test` is refused,
/// `rotation_failed` for other failures of `set` and `rollback`. Statements
/// are never logged by the driver (they carry the password's verifier).
#[derive(Debug, Clone)]
pub struct PostgresRoleTarget {
    connect_timeout: Duration,
    statement_timeout: Duration,
}

impl Default for PostgresRoleTarget {
    fn default() -> Self {
        Self::new()
    }
}

/// The admin connection and where it points, without its password.
struct Admin {
    options: PgConnectOptions,
    /// `host:port/database`.
    location: String,
    /// A non-loopback host with `sslmode=disable`: a password may cross
    /// the network in cleartext.
    cleartext: bool,
}

impl PostgresRoleTarget {
    /// A target with a 5 s connect timeout and 30 s for the statements of a step.
    pub fn new() -> Self {
        PostgresRoleTarget {
            connect_timeout: CONNECT_TIMEOUT,
            statement_timeout: STATEMENT_TIMEOUT,
        }
    }

    /// The same target with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The role the step acts on: the blue-green slot, else the `role` setting.
    fn role<'a>(&self, ctx: &'a StepContext) -> Result<&'a str> {
        let role = match ctx.slot.as_deref() {
            Some(slot) => slot,
            None => ctx.secret.config.role.as_deref().ok_or_else(|| {
                Error::invalid_input(format!(
                    "secret {}: the setting `role` is missing: name the PostgreSQL role whose password rotates",
                    ctx.secret.path
                ))
            })?,
        };
        if role.is_empty() {
            return Err(Error::invalid_input(format!(
                "secret {}: the PostgreSQL role name is empty",
                ctx.secret.path
            )));
        }
        Ok(role)
    }

    /// The admin connection options from the `admin_secret` reference;
    /// adds the admin password to `redactor`.
    fn admin(&self, ctx: &StepContext, redactor: &mut Redactor) -> Result<Admin> {
        let path = &ctx.secret.path;
        let admin_secret = ctx.secret.config.admin_secret.as_deref().ok_or_else(|| {
            Error::invalid_input(format!(
                "secret {path}: the setting `admin_secret` is missing: name the secret holding the admin connection URL"
            ))
        })?;
        let value = ctx.references.get(admin_secret).ok_or_else(|| {
            Error::invalid_input(format!(
                "secret {path}: the admin secret {admin_secret} has no current value"
            ))
        })?;
        let url = url::Url::parse(value.expose()).map_err(|e| {
            Error::invalid_input(format!(
                "secret {path}: the admin secret {admin_secret} is not a postgres:// URL ({e})"
            ))
        })?;
        if let Some(pw) = url.password() {
            redactor.add(pw);
            redactor.add(&percent_decode(pw));
        }
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::invalid_input(format!(
                "secret {path}: the admin secret {admin_secret} is not a postgres:// URL (scheme {:?})",
                url.scheme()
            )));
        }
        let options = PgConnectOptions::from_url(&url)
            .map_err(|e| {
                Error::invalid_input(format!(
                    "secret {path}: the admin URL {} is not usable: {}",
                    display_url(&url),
                    redactor.apply(&e.to_string())
                ))
            })?
            .disable_statement_logging();
        let location = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        );
        let local = options.get_socket().is_some() || is_loopback_host(options.get_host());
        let (options, cleartext) = match tls_mode(explicit_ssl_mode(&url), local) {
            Ok(Some(mode)) => {
                let cleartext = matches!(mode, PgSslMode::Disable);
                if cleartext {
                    tracing::warn!(location = %location, "PostgreSQL admin connection without TLS (sslmode=disable)");
                }
                (options.ssl_mode(mode), cleartext)
            }
            Ok(None) => (options, false),
            Err(m) => {
                return Err(Error::invalid_input(format!(
                    "secret {path}: the admin URL {}: {m}",
                    display_url(&url)
                )));
            }
        };
        Ok(Admin {
            options,
            location,
            cleartext,
        })
    }

    /// Opens a connection; `backend_unavailable` if the server cannot be
    /// reached in time, `on_refused` for errors the server returned.
    async fn connect(
        &self,
        options: &PgConnectOptions,
        location: &str,
        who: &str,
        on_refused: Reason,
        redactor: &Redactor,
    ) -> Result<PgConnection> {
        match tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(options)).await {
            Err(_) => Err(Error::backend(format!(
                "cannot reach PostgreSQL at {location} within {} s",
                self.connect_timeout.as_secs_f64()
            ))),
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => {
                let text = redactor.apply(&e.to_string());
                Err(match e {
                    sqlx::Error::Database(_) => {
                        Error::new(on_refused, format!("PostgreSQL at {location} refused {who}: {text}"))
                    }
                    sqlx::Error::Configuration(_) => {
                        Error::invalid_input(format!("cannot connect to PostgreSQL at {location} as {who}: {text}"))
                    }
                    _ => Error::backend(format!("cannot reach PostgreSQL at {location}: {text}")),
                })
            }
        }
    }

    /// Sets the role's password to `password` (`PASSWORD NULL` for `None`).
    async fn alter_password(
        &self,
        ctx: &StepContext,
        role: &str,
        password: Option<&str>,
        redactor: &mut Redactor,
    ) -> Result<String> {
        let admin = self.admin(ctx, redactor)?;
        let step = ctx.step;
        let location = admin.location.clone();
        let mut conn = self
            .connect(
                &admin.options,
                &location,
                "the admin login",
                Reason::RotationFailed,
                redactor,
            )
            .await
            .map_err(|e| match e.reason {
                Reason::RotationFailed => step_error(step, e.message),
                _ => e,
            })?;
        let work = async {
            // Checked first, so a missing role never puts the statement
            // (with the password's verifier) into the server's error log.
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut conn)
                .await?;
            if exists.is_none() {
                return Ok(Err(format!("role {role:?} does not exist")));
            }
            let sql = alter_role_sql(role, password);
            // Simple query protocol: not prepared, nothing cached.
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
            Ok::<_, sqlx::Error>(Ok(()))
        };
        let outcome = tokio::time::timeout(self.statement_timeout, work).await;
        let _ = conn.close().await;
        let statement = match password {
            Some(_) => format!("ALTER ROLE {role} PASSWORD [redacted] on {location}"),
            None => format!("ALTER ROLE {role} PASSWORD NULL on {location}"),
        };
        match outcome {
            Err(_) => Err(Error::backend(format!(
                "{statement}: no answer within {} s",
                self.statement_timeout.as_secs_f64()
            ))),
            Ok(Ok(Ok(()))) => {
                tracing::info!(role, location = %location, step = step.as_str(), "PostgreSQL role password changed");
                Ok(statement)
            }
            Ok(Ok(Err(message))) => Err(step_error(step, format!("{statement} failed: {message}"))),
            Ok(Err(e)) => {
                let text = redactor.apply(&e.to_string());
                Err(match e {
                    sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Error::backend(format!("{statement} failed: {text}")),
                    _ => step_error(step, format!("{statement} failed: {text}")),
                })
            }
        }
    }

    /// Logs in as the role with the pending password and runs `SELECT 1`.
    async fn login(&self, ctx: &StepContext, redactor: &mut Redactor) -> Result<String> {
        let role = self.role(ctx)?;
        let pending = ctx
            .pending
            .as_ref()
            .ok_or_else(|| Error::invalid_input(format!("secret {}: no new value to test", ctx.secret.path)))?;
        let admin = self.admin(ctx, redactor)?;
        if admin.cleartext {
            return Err(Error::invalid_input(format!(
                "login as {role} on {}: refused to offer the new password over a connection without TLS \
                 (sslmode=disable to a remote host); use sslmode=verify-full (the default) or require",
                admin.location
            )));
        }
        let options = admin.options.clone().username(role).password(pending.value.expose());
        let who = format!("the login of role {role} with the new password");
        let mut conn = self
            .connect(&options, &admin.location, &who, Reason::VerificationFailed, redactor)
            .await?;
        let outcome = tokio::time::timeout(
            self.statement_timeout,
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn),
        )
        .await;
        let _ = conn.close().await;
        match outcome {
            Ok(Ok(1)) => Ok(format!(
                "login as {role} on {} with the new password: ok",
                admin.location
            )),
            Ok(Ok(n)) => Err(Error::new(
                Reason::VerificationFailed,
                format!("login as {role} on {}: SELECT 1 returned {n}", admin.location),
            )),
            Ok(Err(e)) => Err(Error::new(
                Reason::VerificationFailed,
                format!(
                    "login as {role} on {}: SELECT 1 failed: {}",
                    admin.location,
                    redactor.apply(&e.to_string())
                ),
            )),
            Err(_) => Err(Error::backend(format!(
                "login as {role} on {}: SELECT 1 got no answer within {} s",
                admin.location,
                self.statement_timeout.as_secs_f64()
            ))),
        }
    }
}

#[async_trait]
impl CredentialTarget for PostgresRoleTarget {
    fn describe(&self, secret: &Secret) -> String {
        let role = secret.config.role.as_deref().unwrap_or("<role not set>");
        match secret.config.admin_secret.as_deref() {
            Some(admin) => format!("ALTER ROLE {role} over the admin connection in secret {admin}"),
            None => format!("ALTER ROLE {role} (no admin_secret set)"),
        }
    }

    fn strategies(&self) -> &'static [Strategy] {
        &[Strategy::Immediate, Strategy::Staged, Strategy::BlueGreen]
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput> {
        let mut redactor = Redactor::for_step(ctx);
        let log = match ctx.step {
            Step::Create => "create: nothing to do (the engine generates the password)".to_owned(),
            Step::Finish => "finish: nothing to do".to_owned(),
            Step::Disable => {
                "disable: nothing to do (a PostgreSQL role has one password; the old one stopped working at set)"
                    .to_owned()
            }
            Step::Set => {
                let role = self.role(ctx)?;
                let pending = ctx
                    .pending
                    .as_ref()
                    .ok_or_else(|| Error::invalid_input(format!("secret {}: no new value to set", ctx.secret.path)))?;
                let done = self
                    .alter_password(ctx, role, Some(pending.value.expose()), &mut redactor)
                    .await?;
                format!("set: {done}")
            }
            Step::Test => format!("test: {}", self.login(ctx, &mut redactor).await?),
            Step::Rollback => {
                let role = self.role(ctx)?;
                let current = ctx.current.as_ref().map(|c| c.value.expose());
                let done = self.alter_password(ctx, role, current, &mut redactor).await?;
                format!("rollback: {done}")
            }
        };
        Ok(StepOutput {
            log: redactor.apply(&log),
            ..StepOutput::default()
        })
    }
}

#[async_trait]
impl Verifier for PostgresRoleTarget {
    async fn verify(&self, ctx: &StepContext) -> Result<StepOutput> {
        let mut redactor = Redactor::for_step(ctx);
        let log = self.login(ctx, &mut redactor).await?;
        Ok(StepOutput {
            log: redactor.apply(&log),
            ..StepOutput::default()
        })
    }
}

/// The statement setting `role`'s password: `PASSWORD NULL` for `None`, else
/// the SCRAM-SHA-256 verifier of the password (never the password itself).
fn alter_role_sql(role: &str, password: Option<&str>) -> String {
    let role = quote_ident(role);
    match password {
        None => format!("ALTER ROLE {role} PASSWORD NULL"),
        Some(pw) => {
            let verifier = postgres_protocol::password::scram_sha_256(pw.as_bytes());
            // Base64 and `$:` only; doubled quotes all the same, should that change.
            format!("ALTER ROLE {role} PASSWORD '{}'", verifier.replace('\'', "''"))
        }
    }
}

/// The `sslmode` the URL names (the last one, as libpq takes it), if any.
fn explicit_ssl_mode(url: &url::Url) -> Option<String> {
    url.query_pairs()
        .filter(|(k, _)| k == "sslmode" || k == "ssl-mode")
        .map(|(_, v)| v.into_owned())
        .last()
}

/// Whether `host` is this machine: `localhost` (or a name under it), a
/// loopback address, or a Unix socket directory.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    host.starts_with('/')
        || lower == "localhost"
        || lower.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
            std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
            v4 => v4.is_loopback(),
        })
}

/// The TLS mode to connect with, from the URL's explicit `sslmode` and
/// whether the host is loopback: `None` keeps the URL's (and libpq's
/// default) mode for loopback; for another host `verify-full` unless the
/// URL names `disable`, `require`, `verify-ca` or `verify-full`; `prefer`
/// and `allow` there are an error (they fall back to plaintext silently).
fn tls_mode(explicit: Option<String>, loopback: bool) -> std::result::Result<Option<PgSslMode>, String> {
    if loopback {
        return Ok(None);
    }
    let Some(text) = explicit else {
        return Ok(Some(PgSslMode::VerifyFull));
    };
    let mode: PgSslMode = text
        .parse()
        .map_err(|_| format!("unknown sslmode {:?}", text.chars().take(32).collect::<String>()))?;
    match mode {
        PgSslMode::Prefer | PgSslMode::Allow => Err(format!(
            "sslmode={} may fall back to a connection without TLS to a remote host, sending the password \
             unprotected; use verify-full (the default), verify-ca or require (or disable, knowingly)",
            text.to_ascii_lowercase()
        )),
        mode => Ok(Some(mode)),
    }
}

/// `name` as a quoted SQL identifier: `"` around it, inner `"` doubled
/// (case and every other character kept, like `format('%I')`).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Decodes `%XX` escapes (userinfo of a URL); other bytes are kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{
        PgSslMode, alter_role_sql, explicit_ssl_mode, is_loopback_host, percent_decode, quote_ident, tls_mode,
    };

    #[test]
    fn remote_hosts_default_to_verify_full_and_never_fall_back_silently() {
        let mode = |url: &str| {
            let url = url::Url::parse(url).unwrap();
            let host = url.host_str().unwrap_or_default().to_owned();
            tls_mode(explicit_ssl_mode(&url), is_loopback_host(&host)).map(|m| m.map(|m| format!("{m:?}")))
        };
        let some = |s: &str| Ok(Some(s.to_owned()));
        // Remote: verify-full by default; explicit strict modes and disable kept.
        assert_eq!(mode("postgres://a:pw@db.example.com/app"), some("VerifyFull"));
        assert_eq!(mode("postgres://a:pw@10.1.2.3:5432/app"), some("VerifyFull"));
        assert_eq!(
            mode("postgres://a:pw@db.example.com/app?sslmode=require"),
            some("Require")
        );
        assert_eq!(
            mode("postgres://a:pw@db.example.com/app?sslmode=verify-ca"),
            some("VerifyCa")
        );
        assert_eq!(
            mode("postgres://a:pw@db.example.com/app?sslmode=disable"),
            some("Disable")
        );
        assert_eq!(
            mode("postgres://a:pw@db.example.com/app?ssl-mode=VERIFY-FULL"),
            some("VerifyFull")
        );
        // The last sslmode wins, as in libpq.
        assert_eq!(
            mode("postgres://a@h.example/app?sslmode=disable&sslmode=require"),
            some("Require")
        );
        // Modes that fall back to plaintext are refused for remote hosts.
        for url in [
            "postgres://a:pw@db.example.com/app?sslmode=prefer",
            "postgres://a:pw@db.example.com/app?sslmode=allow",
        ] {
            let e = mode(url).unwrap_err();
            assert!(e.contains("fall back") && !e.contains("pw"), "{e}");
        }
        assert!(mode("postgres://a@db.example.com/app?sslmode=bogus").is_err());
        // Loopback keeps the URL's mode (None: unchanged).
        for url in [
            "postgres://a:pw@127.0.0.1:5432/app",
            "postgres://a:pw@localhost/app?sslmode=prefer",
            "postgres://a:pw@[::1]:5432/app?sslmode=disable",
            "postgres://a:pw@127.0.0.2/app",
        ] {
            assert_eq!(mode(url), Ok(None), "{url}");
        }
        assert!(is_loopback_host("/var/run/postgresql"));
        assert!(is_loopback_host("::ffff:127.0.0.1"));
        assert!(!is_loopback_host("localhost.example.com"));
        assert!(!is_loopback_host("192.168.1.10"));
        assert!(matches!(tls_mode(None, false), Ok(Some(PgSslMode::VerifyFull))));
    }

    #[test]
    fn decodes_userinfo() {
        assert_eq!(percent_decode("a%40b%2Fc%"), "a@b/c%");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("x%4"), "x%4");
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("app"), r#""app""#);
        assert_eq!(quote_ident(r#"My "Role"; --"#), r#""My ""Role""; --""#);
    }

    #[test]
    fn sends_a_scram_verifier_never_the_password() {
        let pw = "s3cret'pa\"ss\\ $$wörd";
        let sql = alter_role_sql("app_blue", Some(pw));
        assert!(!sql.contains(pw), "{sql}");
        assert!(!sql.contains("s3cret"), "{sql}");
        let verifier = sql
            .strip_prefix(r#"ALTER ROLE "app_blue" PASSWORD 'SCRAM-SHA-256$4096:"#)
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap_or_else(|| panic!("unexpected statement: {sql}"));
        // <salt>$<StoredKey>:<ServerKey>, base64 of 16, 32 and 32 bytes.
        let (salt, keys) = verifier.split_once('$').expect("salt$keys");
        let (stored, server) = keys.split_once(':').expect("StoredKey:ServerKey");
        assert_eq!((salt.len(), stored.len(), server.len()), (24, 44, 44), "{sql}");
        // A random salt: the same password gives another verifier each time.
        assert_ne!(sql, alter_role_sql("app_blue", Some(pw)));
        assert_eq!(alter_role_sql("app", None), r#"ALTER ROLE "app" PASSWORD NULL"#);
    }
}
