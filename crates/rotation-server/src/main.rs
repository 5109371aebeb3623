//! `rotation-server`: serves the HTTP API and runs the scheduler worker;
//! `rotation-server token create|list|revoke` manages bearer tokens.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod config_file;
use rotation_core::ports::CryptoProvider;
use rotation_core::{Error, Result};
use rotation_crypto::{MasterSecret, RingCrypto};
use rotation_server::{Role, ServerConfig, Tokens};
use secrecy::ExposeSecret as _;
use tracing_subscriber::EnvFilter;

/// Rotation engine HTTP server.
#[derive(Parser)]
#[command(name = "rotation-server", version)]
struct Cli {
    /// TOML file with the same keys as the flags (e.g. `listen = "0.0.0.0:8443"`,
    /// `vault_addr = "..."`); flags and environment take precedence over it.
    #[arg(long, env = "ROTATION_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "ROTATION_STORE",
        hide_env_values = true,
        default_value = "sqlite://./rotation-data/rotation.db",
        global = true
    )]
    store: String,
    /// Master key file (default: master.key beside a SQLite store, ./rotation-data/master.key for PostgreSQL).
    /// A store protected by a password takes ROTATION_MASTER_PASSWORD instead.
    #[arg(long, env = "ROTATION_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    vault: VaultArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ROTATION_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Seconds between scheduler passes; 0 disables the worker.
    #[arg(long, env = "ROTATION_SCHEDULER_INTERVAL_SECONDS", default_value_t = 30)]
    scheduler_interval_seconds: u64,
    /// Name of this replica (lease owner and scheduler actor).
    #[arg(long, env = "ROTATION_WORKER_ID", default_value = "server")]
    worker_id: String,
    /// Lease of a run in seconds: another replica takes over a run this long after its owner stopped.
    #[arg(long, env = "ROTATION_LEASE_SECONDS", default_value_t = 60)]
    lease_seconds: u32,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "ROTATION_BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    body_limit_bytes: usize,
    /// Request timeout in seconds (rotations started go on in the background).
    #[arg(long, env = "ROTATION_REQUEST_TIMEOUT_SECONDS", default_value_t = 60)]
    request_timeout_seconds: u64,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "ROTATION_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (needs --tls-cert).
    #[arg(long, env = "ROTATION_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Notification routing file (JSON, see the README); without it, notification
    /// settings come from ROTATION_WEBHOOK_SECRET and ROTATION_SMTP_*.
    #[arg(long, env = "ROTATION_NOTIFY_CONFIG")]
    notify_config: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not loopback (behind a TLS-terminating
    /// proxy on the same host or network); without it such a server needs --tls-cert/--tls-key.
    #[arg(long, env = "ROTATION_ALLOW_PLAIN_HTTP")]
    allow_plain_http: bool,
    /// Development only: honour ROTATION_NOW (a frozen clock, which also freezes token
    /// expiry); without it the server ignores ROTATION_NOW and warns.
    #[arg(long, env = "ROTATION_UNSAFE_CLOCK")]
    unsafe_clock: bool,
    /// Most connections served at once; further clients wait until one closes.
    #[arg(long, env = "ROTATION_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Requests per second one token may send (bursts of twice that), then 429; 0: no limit.
    #[arg(long, env = "ROTATION_RATE_LIMIT_PER_SECOND", default_value_t = 100)]
    rate_limit_per_second: u32,
    /// `:validate` calls per minute one token may make on one secret, then 429; 0: no limit.
    #[arg(long, env = "ROTATION_VALIDATE_PER_MINUTE", default_value_t = 60)]
    validate_per_minute: u32,
}

/// Where secret values and private keys live: the same flags and
/// environment variables as the `rotation` CLI's global Vault options.
#[derive(clap::Args)]
struct VaultArgs {
    /// Where secret values live: the store's sealed table, or Vault/OpenBao KV v2.
    #[arg(long, env = "ROTATION_SECRET_BACKEND", value_enum, default_value_t = SecretBackendArg::Store)]
    secret_backend: SecretBackendArg,
    /// Where private keys live: local (sealed under the master key), or Vault/OpenBao Transit.
    #[arg(long, env = "ROTATION_CUSTODY", value_enum, default_value_t = CustodyArg::Local)]
    custody: CustodyArg,
    /// Vault/OpenBao address, e.g. https://vault.example:8200.
    #[arg(long, env = "VAULT_ADDR", hide_env_values = true)]
    vault_addr: Option<String>,
    /// Vault token (also read from VAULT_TOKEN).
    #[arg(long, env = "ROTATION_VAULT_TOKEN", hide_env_values = true)]
    vault_token: Option<String>,
    /// AppRole role id (with --vault-secret-id; used instead of a token).
    #[arg(long, env = "ROTATION_VAULT_ROLE_ID", hide_env_values = true)]
    vault_role_id: Option<String>,
    /// AppRole secret id.
    #[arg(long, env = "ROTATION_VAULT_SECRET_ID", hide_env_values = true)]
    vault_secret_id: Option<String>,
    /// Vault namespace (X-Vault-Namespace).
    #[arg(long, env = "VAULT_NAMESPACE")]
    vault_namespace: Option<String>,
    /// KV v2 mount holding secret values.
    #[arg(long, env = "ROTATION_VAULT_KV_MOUNT", default_value = "secret")]
    vault_kv_mount: String,
    /// Prefix of every secret path in the KV mount (values at <mount>/data/<prefix>/<path>, field `value`).
    #[arg(long, env = "ROTATION_VAULT_KV_PREFIX", default_value = "rotation")]
    vault_kv_prefix: String,
    /// Transit mount holding signing keys and the data-key wrapping key.
    #[arg(long, env = "ROTATION_VAULT_TRANSIT_MOUNT", default_value = "transit")]
    vault_transit_mount: String,
}

/// `--secret-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum SecretBackendArg {
    /// The store's own sealed table.
    Store,
    /// Vault/OpenBao KV v2.
    Vault,
}

/// `--custody`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum CustodyArg {
    /// Keys sealed under the master key in the store.
    Local,
    /// Vault/OpenBao Transit.
    Vault,
}

impl VaultArgs {
    /// The Vault settings (`--vault-*`, `VAULT_*`), as the CLI builds them.
    fn settings(&self) -> rotation_app::VaultSettings {
        let token = self
            .vault_token
            .clone()
            .or_else(|| std::env::var("VAULT_TOKEN").ok())
            .filter(|t| !t.is_empty());
        rotation_app::VaultSettings {
            addr: self.vault_addr.clone(),
            token: token.map(secrecy::SecretString::from),
            role_id: self.vault_role_id.clone().filter(|r| !r.is_empty()),
            secret_id: self
                .vault_secret_id
                .clone()
                .filter(|s| !s.is_empty())
                .map(secrecy::SecretString::from),
            namespace: self.vault_namespace.clone(),
            kv_mount: self.vault_kv_mount.clone(),
            kv_prefix: self.vault_kv_prefix.clone(),
            transit_mount: self.vault_transit_mount.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and stored only hashed.
    Create {
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Days until the token expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// What the token is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id; it stops working at once.
    Revoke {
        /// Token id.
        id: String,
    },
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Err(error) = apply_config_file(&matches, &mut cli) {
        eprintln!("error[{}]: {}", error.reason, error.message);
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours for a terminal only: log files and collectors get plain `key=value`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_env("ROTATION_LOG").unwrap_or_else(|_| EnvFilter::new("info,tower_http=info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error[backend_unavailable]: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error[{}]: {}", error.reason, error.message);
            ExitCode::FAILURE
        }
    }
}

/// Fills in what neither a flag nor the environment set from `--config`
/// (precedence: flags > environment > file > defaults).
fn apply_config_file(matches: &clap::ArgMatches, cli: &mut Cli) -> Result<()> {
    use clap::parser::ValueSource;
    let Some(path) = cli.config.clone() else {
        return Ok(());
    };
    let file = config_file::read(&path)?;
    let unset = |id: &str| {
        !matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    macro_rules! fill {
        ($target:expr, $key:ident) => {
            if let Some(value) = file.$key
                && unset(stringify!($key))
            {
                $target = value.into();
            }
        };
    }
    let enum_value = |key: &str, value: Option<String>| value.filter(|_| unset(key));
    fill!(cli.store, store);
    fill!(cli.master_key_file, master_key_file);
    let serve = &mut cli.serve;
    fill!(serve.listen, listen);
    fill!(serve.scheduler_interval_seconds, scheduler_interval_seconds);
    fill!(serve.worker_id, worker_id);
    fill!(serve.lease_seconds, lease_seconds);
    fill!(serve.body_limit_bytes, body_limit_bytes);
    fill!(serve.request_timeout_seconds, request_timeout_seconds);
    fill!(serve.tls_cert, tls_cert);
    fill!(serve.tls_key, tls_key);
    fill!(serve.notify_config, notify_config);
    fill!(serve.allow_plain_http, allow_plain_http);
    fill!(serve.unsafe_clock, unsafe_clock);
    fill!(serve.max_connections, max_connections);
    fill!(serve.rate_limit_per_second, rate_limit_per_second);
    fill!(serve.validate_per_minute, validate_per_minute);
    let vault = &mut cli.vault;
    if let Some(v) = enum_value("secret_backend", file.secret_backend) {
        vault.secret_backend = <SecretBackendArg as clap::ValueEnum>::from_str(&v, true).map_err(|_| {
            Error::invalid_input(format!(
                "config file {}: secret_backend must be store or vault",
                path.display()
            ))
        })?;
    }
    if let Some(v) = enum_value("custody", file.custody) {
        vault.custody = <CustodyArg as clap::ValueEnum>::from_str(&v, true).map_err(|_| {
            Error::invalid_input(format!(
                "config file {}: custody must be local or vault",
                path.display()
            ))
        })?;
    }
    fill!(vault.vault_addr, vault_addr);
    if std::env::var_os("VAULT_TOKEN").is_none() {
        fill!(vault.vault_token, vault_token);
    }
    fill!(vault.vault_role_id, vault_role_id);
    fill!(vault.vault_secret_id, vault_secret_id);
    fill!(vault.vault_namespace, vault_namespace);
    fill!(vault.vault_kv_mount, vault_kv_mount);
    fill!(vault.vault_kv_prefix, vault_kv_prefix);
    fill!(vault.vault_transit_mount, vault_transit_mount);
    Ok(())
}

/// The notifier of a `--notify-config` routing file (errors give the
/// position, never the contents: the file may hold secrets).
fn notifier_from_file(path: &std::path::Path) -> Result<Arc<dyn rotation_core::ports::Notifier>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid_input(format!(
            "cannot read the notification config (--notify-config, ROTATION_NOTIFY_CONFIG) {}: {e}",
            path.display()
        ))
    })?;
    let config: rotation_notify::RouterConfig = serde_json::from_str(&text).map_err(|e| {
        Error::invalid_input(format!(
            "the notification config (--notify-config, ROTATION_NOTIFY_CONFIG) {} is not valid: {:?} error at line {} column {}",
            path.display(),
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let crypto: Arc<dyn CryptoProvider> = Arc::new(RingCrypto::new());
    Ok(Arc::new(rotation_notify::Router::from_config(&config, crypto)?))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None | Some(Command::Serve) => serve(&cli.store, cli.master_key_file, cli.serve, &cli.vault).await,
        Some(Command::Token(command)) => token(&cli.store, command, cli.serve.unsafe_clock).await,
    }
}

async fn serve(store: &str, key_file: Option<PathBuf>, args: ServeArgs, vault: &VaultArgs) -> Result<()> {
    let vault_client = if vault.secret_backend == SecretBackendArg::Vault || vault.custody == CustodyArg::Vault {
        Some(vault.settings().client()?)
    } else {
        None
    };
    let transit = match (&vault_client, vault.custody) {
        (Some(client), CustodyArg::Vault) => Some(vault.settings().transit_custody(client.clone())?),
        _ => None,
    };
    let secret = if transit.is_some() {
        // Private keys live in Transit: the master key is not needed (and not read).
        MasterSecret::KeyFile(secrecy::SecretBox::new(Box::default()))
    } else {
        let key_file = match key_file {
            Some(p) => p,
            None => rotation_app::default_key_file(store)?,
        };
        let params = {
            let s = rotation_app::open_store(store, false).await?;
            rotation_crypto::master_key::current_params(s.as_ref()).await?
        };
        rotation_app::master_secret(Some(&params), &key_file)?
    };
    let mut config = ServerConfig::new(store, secret);
    config.custody = transit;
    config.secret_backend = match (&vault_client, vault.secret_backend) {
        (Some(client), SecretBackendArg::Vault) => Some(vault.settings().kv_backend(client.clone())?),
        _ => None,
    };
    config.scheduler_interval =
        (args.scheduler_interval_seconds > 0).then(|| Duration::from_secs(args.scheduler_interval_seconds));
    config.worker_id = args.worker_id;
    config.lease = chrono::TimeDelta::seconds(i64::from(args.lease_seconds.max(1)));
    config.body_limit = args.body_limit_bytes;
    config.request_timeout = Duration::from_secs(args.request_timeout_seconds.max(1));
    config.clock = server_clock(args.unsafe_clock)?;
    config.max_connections = args.max_connections.max(1);
    config.rate_limit_per_second = args.rate_limit_per_second;
    config.validate_per_minute = args.validate_per_minute;
    if let Some(path) = &args.notify_config {
        config.notifier = Some(notifier_from_file(path)?);
    }
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(rotation_server::tls::load(cert, key)?),
        (None, None) => None,
        _ => return Err(Error::invalid_input("give both --tls-cert and --tls-key, or neither")),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| Error::backend(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::backend(format!("cannot read the listening address: {e}")))?;
    if config.tls.is_none() && !addr.ip().is_loopback() {
        if !args.allow_plain_http {
            return Err(Error::invalid_input(format!(
                "refusing to serve plain HTTP on {addr}, which is not a loopback address: bearer tokens \
                 and secret values would cross the network in cleartext. Give --tls-cert and --tls-key, \
                 or --allow-plain-http when a TLS-terminating proxy sits in front"
            )));
        }
        tracing::warn!(%addr, "serving plain HTTP on an address that is not loopback (--allow-plain-http): tokens and values cross the network in cleartext unless a proxy terminates TLS");
    }
    let server = rotation_server::start(config, listener).await?;
    let handle = server.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and the scheduler pass");
        handle.trigger();
    });
    server.wait().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The server's clock: the system clock, unless `unsafe_clock` lets
/// `ROTATION_NOW` freeze it (development only: it also freezes token
/// expiry). `ROTATION_NOW` without `--unsafe-clock` is ignored, with a
/// warning.
fn server_clock(unsafe_clock: bool) -> Result<Arc<dyn rotation_core::time::Clock>> {
    let now_set = std::env::var(rotation_app::NOW_ENV).is_ok_and(|v| !v.trim().is_empty());
    match (now_set, unsafe_clock) {
        (true, true) => {
            tracing::warn!(
                "--unsafe-clock: the clock is frozen at ROTATION_NOW; token expiry, grace periods and schedules follow it (development only)"
            );
            rotation_app::clock_from_env()
        }
        (true, false) => {
            tracing::warn!(
                "ROTATION_NOW is set but ignored: the server uses the system clock unless --unsafe-clock is given"
            );
            Ok(Arc::new(rotation_core::time::SystemClock))
        }
        (false, _) => Ok(Arc::new(rotation_core::time::SystemClock)),
    }
}

async fn token(store: &str, command: TokenCommand, unsafe_clock: bool) -> Result<()> {
    let store = rotation_app::open_store(store, false).await?;
    let crypto: Arc<dyn CryptoProvider> = Arc::new(RingCrypto::new());
    let tokens = Tokens::new(store, crypto, server_clock(unsafe_clock)?);
    let print = |value: serde_json::Value| {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    };
    match command {
        TokenCommand::Create {
            role,
            expires_in_days,
            description,
        } => {
            let role: Role = role.parse()?;
            let (info, token) = tokens.create(role, expires_in_days, description).await?;
            eprintln!("token {} ({}) created; it is shown only now:", info.id, info.role);
            println!("{}", token.expose_secret());
        }
        TokenCommand::List => print(serde_json::to_value(tokens.list().await?).unwrap_or_default()),
        TokenCommand::Revoke { id } => print(serde_json::to_value(tokens.revoke(&id).await?).unwrap_or_default()),
    }
    Ok(())
}
