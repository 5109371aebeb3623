//! Command-line surface (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Credential rotation: signing keys, trust chains and schedules, with a
/// tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "rotation", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Store URL: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(
        long,
        global = true,
        env = "ROTATION_STORE",
        hide_env_values = true,
        default_value = "sqlite://./rotation-data/rotation.db"
    )]
    pub(crate) store: String,
    /// Output format: tables for people, JSON for scripts.
    #[arg(long, global = true, env = "ROTATION_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
    /// Master key file (when the store is not protected by ROTATION_MASTER_PASSWORD).
    /// Default: `master.key` next to the SQLite database; `./rotation-data/master.key`
    /// for a PostgreSQL store.
    #[arg(long, global = true, env = "ROTATION_MASTER_KEY_FILE")]
    pub(crate) master_key_file: Option<PathBuf>,
    /// Seconds a rotation run's lease lasts; after that another process may resume it.
    #[arg(long, global = true, env = "ROTATION_LEASE_SECONDS", default_value_t = 60)]
    pub(crate) lease_seconds: u32,
    /// Where secret values live: the store's sealed table, or Vault/OpenBao KV v2.
    #[arg(long, global = true, env = "ROTATION_SECRET_BACKEND", value_enum, default_value_t = SecretBackendArg::Store)]
    pub(crate) secret_backend: SecretBackendArg,
    /// Where private keys live: local (sealed under the master key), or Vault/OpenBao Transit.
    #[arg(long, global = true, env = "ROTATION_CUSTODY", value_enum, default_value_t = CustodyArg::Local)]
    pub(crate) custody: CustodyArg,
    /// Vault/OpenBao address, e.g. https://vault.example:8200.
    #[arg(long, global = true, env = "VAULT_ADDR", hide_env_values = true)]
    pub(crate) vault_addr: Option<String>,
    /// Vault token (also read from VAULT_TOKEN).
    #[arg(long, global = true, env = "ROTATION_VAULT_TOKEN", hide_env_values = true)]
    pub(crate) vault_token: Option<String>,
    /// AppRole role id (with --vault-secret-id; used instead of a token).
    #[arg(long, global = true, env = "ROTATION_VAULT_ROLE_ID", hide_env_values = true)]
    pub(crate) vault_role_id: Option<String>,
    /// AppRole secret id.
    #[arg(long, global = true, env = "ROTATION_VAULT_SECRET_ID", hide_env_values = true)]
    pub(crate) vault_secret_id: Option<String>,
    /// Vault namespace (X-Vault-Namespace).
    #[arg(long, global = true, env = "VAULT_NAMESPACE")]
    pub(crate) vault_namespace: Option<String>,
    /// KV v2 mount holding secret values.
    #[arg(long, global = true, env = "ROTATION_VAULT_KV_MOUNT", default_value = "secret")]
    pub(crate) vault_kv_mount: String,
    /// Prefix of every secret path in the KV mount (values at <mount>/data/<prefix>/<path>, field `value`).
    #[arg(long, global = true, env = "ROTATION_VAULT_KV_PREFIX", default_value = "rotation")]
    pub(crate) vault_kv_prefix: String,
    /// Transit mount holding signing keys and the data-key wrapping key.
    #[arg(long, global = true, env = "ROTATION_VAULT_TRANSIT_MOUNT", default_value = "transit")]
    pub(crate) vault_transit_mount: String,
}

/// `--secret-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SecretBackendArg {
    /// The store's own sealed table.
    Store,
    /// Vault/OpenBao KV v2.
    Vault,
}

/// `--custody`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CustodyArg {
    /// Keys sealed under the master key in the store.
    Local,
    /// Vault/OpenBao Transit.
    Vault,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Human-readable tables.
    Table,
    /// JSON, the stable interface for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the data directory, the store and the master key.
    Init,
    /// Authorities and their signing keys.
    #[command(subcommand)]
    Authority(AuthorityCommand),
    /// Trust chains signed by authorities.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Scheduled rotations.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Encryption keyrings: versioned data keys, rotation, migration.
    #[command(subcommand)]
    Keyring(KeyringCommand),
    /// Values stored encrypted under a keyring.
    #[command(subcommand)]
    Value(ValueCommand),
    /// Rotation policies: when a credential is due and how it rotates.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Secrets: versioned values with stage labels, rotated through strategies.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Rotation statistics: totals, success rate, durations.
    Stats {
        /// Start counting afresh from now: rotations that end later count (runs in progress are always shown; runs and the audit log are kept).
        #[arg(long)]
        reset: bool,
    },
    /// The master key (KEK) that wraps every stored key.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
    /// Compliance report: ages against policies, overdue and stuck work
    /// (exit code 2 when anything is overdue or stuck).
    Report,
    /// Write an encrypted, authenticated snapshot of the whole store.
    Backup {
        /// File to create (never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into an empty store.
    Restore {
        /// Backup file.
        #[arg(long)]
        from: PathBuf,
        /// Replace a store that is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Initialise (if needed), create org-acme, issue three trust chains,
    /// rotate the key and verify every chain.
    Quickstart,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuthorityCommand {
    /// Create an authority with a fresh Ed25519 signing key.
    Create {
        /// Authority id, e.g. org-acme.
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// How often the key should rotate.
        #[arg(long, default_value_t = 90)]
        rotation_period_days: u32,
        /// Grace period of a replaced key.
        #[arg(long, default_value_t = 24)]
        grace_period_hours: u32,
        /// Publish the next key in the JWKS this many hours before the
        /// rotation is due (`run-due` creates it), so cached key sets know it.
        #[arg(long, default_value_t = 0)]
        prepublish_hours: u32,
    },
    /// List authorities.
    List,
    /// Show an authority and its keys.
    Show {
        /// Authority id.
        id: String,
    },
    /// Rotate the signing key now and re-sign every trust chain.
    Rotate {
        /// Authority id.
        id: String,
        /// Grace period of the old key (default: the authority's).
        #[arg(long)]
        grace_period_hours: Option<u32>,
    },
    /// Schedule a rotation (processed by `schedule run-due`).
    Schedule {
        /// Authority id.
        id: String,
        /// When, in RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        at: String,
    },
    /// Rotation status: current key, grace keys, pending revocations, schedule.
    Status {
        /// Authority id.
        id: String,
    },
    /// Revoke a key whose grace period has ended.
    Revoke {
        /// Authority id.
        id: String,
        /// Key id.
        key_id: String,
        /// Revoke before the grace period ends (audited as key_force_revoked).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why (required with --force).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Public keys as a JWK Set (active and grace keys).
    Jwks {
        /// Authority id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ChainCommand {
    /// Issue trust-chain records for an agent (genesis on first issue).
    Issue {
        /// Agent id.
        agent_id: String,
        /// Signing authority.
        #[arg(long)]
        authority: String,
        /// Capability to attest (repeatable).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// Delegate the capabilities to this agent.
        #[arg(long)]
        delegate_to: Option<String>,
    },
    /// Verify one agent's chain, or every chain.
    Verify {
        /// Agent id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        agent_id: Option<String>,
        /// Verify every chain in the store.
        #[arg(long)]
        all: bool,
    },
    /// List records with their signed bodies and signatures.
    List {
        /// Only records signed by this authority.
        #[arg(long)]
        authority: Option<String>,
        /// Only this agent's records.
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// List schedules.
    List {
        /// Include schedules already processed.
        #[arg(long)]
        all: bool,
    },
    /// Run every due schedule and resume interrupted rotations (for cron).
    RunDue,
    /// Add a recurring schedule: each run-due evaluates the policy for the target.
    Add {
        /// Target: secret:PATH, keyring:NAME or authority:ID.
        target: String,
        /// Policy name.
        #[arg(long)]
        policy: String,
        /// Fire this long after the policy would (e.g. 30m, 2h), so paired
        /// credentials never rotate at the same moment.
        #[arg(long)]
        offset: Option<String>,
    },
    /// What would rotate within a period, when, how and what it touches; changes nothing.
    Plan {
        /// How far ahead (e.g. 30d, 12h).
        #[arg(long, default_value = "30d")]
        within: String,
    },
    /// Put an orphaned (retries exhausted) or failed schedule back in service.
    Resume {
        /// Schedule id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Write a secret: a new CURRENT version (the old one becomes PREVIOUS).
    Put {
        /// Path, e.g. db/prod/app.
        path: String,
        /// generic, password, api_key, database or certificate (new secrets; default generic).
        #[arg(long = "type")]
        secret_type: Option<String>,
        /// The value (prefer --value-stdin: command lines are visible to other users).
        #[arg(long, conflicts_with_all = ["value_stdin", "generate"])]
        value: Option<String>,
        /// Read the value from standard input (one trailing newline is dropped).
        #[arg(long, conflicts_with = "generate")]
        value_stdin: bool,
        /// Generate the value: random:LEN[:CHARSET], uuid or hex:LEN (certificates are issued).
        #[arg(long)]
        generate: Option<String>,
        /// Policy used by `secret rotate` and schedules.
        #[arg(long)]
        policy: Option<String>,
        /// Database: the secret holding the admin connection URL.
        #[arg(long)]
        admin_secret: Option<String>,
        /// Database: the role whose password rotates.
        #[arg(long)]
        role: Option<String>,
        /// An executable run for each rotation step.
        #[arg(long)]
        script: Option<String>,
        /// Keep the script's stdout (redacted) in the rotation history, shown
        /// to admins only; by default only its exit status and stderr tail are kept.
        #[arg(long)]
        script_log: bool,
        /// Verification tests run before promotion (login, certificate, script, nonempty, http:URL).
        #[arg(long = "verify")]
        verify: Vec<String>,
        /// Certificate: issue a CA certificate.
        #[arg(long)]
        ca: bool,
        /// Certificate: the secret holding the issuing CA (self-signed without).
        #[arg(long)]
        ca_secret: Option<String>,
        /// Certificate: subject common name and DNS name.
        #[arg(long)]
        common_name: Option<String>,
        /// Certificate: validity of new certificates in days.
        #[arg(long)]
        validity_days: Option<u32>,
        /// Certificate: renew when the current one expires within this many days.
        #[arg(long)]
        renew_before_days: Option<u32>,
    },
    /// Print a version's value (audited as secret_read).
    Get {
        /// Path.
        path: String,
        /// Version number.
        #[arg(long, conflicts_with = "stage")]
        version: Option<u32>,
        /// Stage: current, pending or previous (default current).
        #[arg(long)]
        stage: Option<String>,
    },
    /// Rotate now, through the policy's strategy.
    Rotate {
        /// Path.
        path: String,
        /// Policy (default: the secret's).
        #[arg(long)]
        policy: Option<String>,
        /// The new value (default: generated; prefer --value-stdin: command lines are visible to other users).
        #[arg(long, conflicts_with = "value_stdin")]
        value: Option<String>,
        /// Read the new value from standard input (one trailing newline is dropped).
        #[arg(long)]
        value_stdin: bool,
        /// Idempotency token: a rotation with this id is resumed or reported, never repeated.
        #[arg(long)]
        rotation_id: Option<String>,
    },
    /// List secrets (never values), optionally only those under a path prefix.
    List {
        /// Only secrets whose path is PREFIX or starts with PREFIX/ (e.g. db/prod).
        prefix: Option<String>,
    },
    /// Rotations of a secret, newest first, with each step's output.
    History {
        /// Path.
        path: String,
        /// At most this many rotations.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Versions, labels, schedule, last and next rotation.
    Status {
        /// Path.
        path: String,
    },
    /// Check a presented value: CURRENT, or PREVIOUS during a dual-write grace period (exit 1, reason verification_failed, if not).
    Validate {
        /// Path.
        path: String,
        /// The value to check (or --value-stdin).
        #[arg(long, conflicts_with = "value_stdin")]
        value: Option<String>,
        /// Read the value from standard input.
        #[arg(long)]
        value_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyringCommand {
    /// Create a keyring with a fresh version 1.
    Create {
        /// Keyring name.
        name: String,
    },
    /// List keyrings.
    List,
    /// Current version and every version's metadata.
    Info {
        /// Keyring name.
        name: String,
    },
    /// Add a version and make it current (old versions still decrypt).
    Rotate {
        /// Keyring name.
        name: String,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Explicit version number (greater than every existing one), e.g. an emergency version.
        #[arg(long)]
        new_version: Option<u32>,
        /// Take the new key from this command: it must print
        /// `{"key": "<32 bytes as hex or base64>", "version": "<label>"}` and exit 0.
        /// It runs with only PATH, HOME, USER, LOGNAME, LANG, LC_ALL, TZ and
        /// TMPDIR from this environment (plus --key-provider-env).
        #[arg(long)]
        key_provider_command: Option<String>,
        /// Also pass this environment variable to the key provider command
        /// (repeatable), e.g. a KMS CLI's credentials; ROTATION_* variables never pass.
        #[arg(long = "key-provider-env", value_name = "NAME", requires = "key_provider_command")]
        key_provider_env: Vec<String>,
    },
    /// Import 32 raw key bytes (hex or base64 in a file) as a new current version.
    ImportKey {
        /// Keyring name.
        name: String,
        /// File holding the key as hex or base64.
        #[arg(long)]
        key_file: PathBuf,
        /// Version number (default: the next one).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Re-encrypt every value sealed under an older version.
    Migrate(MigrateArgs),
    /// Rotate, then migrate every value to the new version.
    FullRotation(MigrateArgs),
    /// Version distribution of the stored values.
    Report {
        /// Keyring name.
        name: String,
    },
    /// Check the KEK, the current key, a round trip and the values' versions.
    HealthCheck {
        /// Keyring name.
        name: String,
    },
    /// Retire a version no value uses any more (it no longer decrypts).
    Retire {
        /// Keyring name.
        name: String,
        /// Version to retire.
        #[arg(long)]
        version: u32,
    },
    /// Key history: creation, rotation, usage and migration events.
    History {
        /// Keyring name.
        name: String,
        /// Only events about this version.
        #[arg(long)]
        version: Option<u32>,
        /// Only this event type (e.g. rotation, migrated, key_created).
        #[arg(long)]
        event: Option<String>,
        /// How many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Options of `keyring migrate` and `keyring full-rotation`.
#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Keyring name.
    pub(crate) name: String,
    /// Version to migrate to (default: the current one).
    #[arg(long)]
    pub(crate) target_version: Option<u32>,
    /// Values per committed batch.
    #[arg(long, default_value_t = 5000)]
    pub(crate) batch_size: usize,
    /// Count what would be migrated; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Allow a target version that is not the current one.
    #[arg(long)]
    pub(crate) force: bool,
    /// Afterwards, retire every older version no value uses any more.
    #[arg(long)]
    pub(crate) retire_old: bool,
    /// Take an encrypted backup of the store to this file first.
    #[arg(long)]
    pub(crate) backup: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MasterKeyCommand {
    /// Re-wrap every stored key under a KEK from a new master secret
    /// (resumable: run it again after an interruption).
    Rotate {
        /// Environment variable holding the new master password.
        #[arg(long, conflicts_with = "new_key_file", required_unless_present = "new_key_file")]
        new_password_env: Option<String>,
        /// New master key file (created with 64 random hex characters if missing).
        #[arg(long)]
        new_key_file: Option<PathBuf>,
        /// Take an encrypted backup (under the old master key) to this file first.
        #[arg(long)]
        backup: Option<PathBuf>,
    },
    /// Which KEK is current, and a rotation's progress.
    Status,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ValueCommand {
    /// Encrypt and store a value (read from stdin unless --value is given).
    Encrypt {
        /// Keyring name.
        #[arg(long)]
        keyring: String,
        /// Value id.
        id: String,
        /// The plaintext (visible to other local users in the process list; prefer stdin).
        #[arg(long)]
        value: Option<String>,
    },
    /// Decrypt a stored value to stdout (audited as secret_read).
    Decrypt {
        /// Keyring name.
        #[arg(long)]
        keyring: String,
        /// Value id.
        id: String,
    },
    /// List stored values (ids and versions, never plaintext).
    List {
        /// Keyring name.
        #[arg(long)]
        keyring: String,
        /// How many values.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this id.
        #[arg(long)]
        after: Option<String>,
    },
    /// Import JSON lines `{"id": "...", "value": "..."}` (stdin when no file).
    Import {
        /// Keyring name.
        #[arg(long)]
        keyring: String,
        /// File to read.
        file: Option<PathBuf>,
    },
    /// Export every value as JSON lines `{"id": "...", "value": "..."}` (plaintext; audited).
    Export {
        /// Keyring name.
        #[arg(long)]
        keyring: String,
        /// File to write (stdout when absent), created with mode 0600.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Create or replace a policy. Several triggers combine with ANY (or --all).
    Set {
        /// Policy name.
        name: String,
        #[command(flatten)]
        spec: Box<PolicyArgs>,
    },
    /// List policies.
    List,
    /// Show a policy and its next due time estimates.
    Show {
        /// Policy name.
        name: String,
    },
    /// Remove a policy.
    Remove {
        /// Policy name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Newest events first, optionally filtered; page with --before-seq.
    List {
        /// How many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only this target, e.g. secret:db/app or authority:org-acme.
        #[arg(long)]
        target: Option<String>,
        /// Only this event type, e.g. secret_read.
        #[arg(long)]
        event: Option<String>,
        /// Only events of this rotation.
        #[arg(long)]
        rotation_id: Option<String>,
        /// Only events by this actor, e.g. cli:alice or token:ID.
        #[arg(long)]
        actor: Option<String>,
        /// Only events at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this instant (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Continue below this sequence number (the last one printed).
        #[arg(long)]
        before_seq: Option<i64>,
    },
    /// Check the hash chain, the Merkle tree and the stored checkpoint;
    /// fails with `tampered` when any event was edited, inserted or deleted,
    /// or when the log no longer extends the checkpoint given.
    Verify {
        /// A signed checkpoint kept elsewhere (the output of `audit
        /// checkpoint`): the log must still contain its tree.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Print the newest signed checkpoint (a C2SP signed note), signing one
    /// first when the log has grown (that needs the master key).
    Checkpoint,
    /// Print the audit key's note verifier key (`<name>+<key hash>+<key>`).
    PublicKey,
    /// Show, or replace, the webhook URLs every new checkpoint is pushed to
    /// (through the outbox, HMAC-signed like every webhook).
    Witnesses {
        /// Replace the list with these URLs (repeat the option).
        #[arg(long = "set", value_name = "URL")]
        set: Vec<String>,
        /// Remove every witness.
        #[arg(long, conflicts_with = "set")]
        clear: bool,
    },
}

/// `policy set` options (checked by `PolicySpec::into_policy`).
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// Rotate every N days.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) interval_days: Option<i64>,
    /// Due when the current credential is this many days old.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) max_age_days: Option<i64>,
    /// Due when the current key sealed this many values (keyrings).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) max_uses: Option<i64>,
    /// Due at the times of a 5-field cron expression.
    #[arg(long)]
    pub(crate) cron: Option<String>,
    /// Time zone of --cron (IANA name, default UTC).
    #[arg(long)]
    pub(crate) timezone: Option<String>,
    /// Due monthly at DAY:HH:MM (UTC), e.g. 1:02:00.
    #[arg(long)]
    pub(crate) monthly: Option<String>,
    /// Require every trigger instead of any.
    #[arg(long)]
    pub(crate) all: bool,
    /// Calendar triggers only fire within this long after an occurrence (e.g. 2h).
    #[arg(long)]
    pub(crate) window: Option<String>,
    /// manual, automatic or scheduled.
    #[arg(long)]
    pub(crate) rotation_type: Option<String>,
    /// immediate, staged, dual-write or blue-green.
    #[arg(long)]
    pub(crate) strategy: Option<String>,
    /// random:LEN[:CHARSET], uuid or hex:LEN.
    #[arg(long)]
    pub(crate) generator: Option<String>,
    /// Verification test (repeatable): login, certificate, script, nonempty, http:URL.
    #[arg(long = "verify")]
    pub(crate) verify: Vec<String>,
    /// Skip verification tests.
    #[arg(long)]
    pub(crate) no_verify: bool,
    /// Leave a failed rotation in place instead of rolling it back.
    #[arg(long)]
    pub(crate) no_rollback: bool,
    /// Retries of a failed scheduled rotation before the schedule is orphaned.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) max_retries: Option<i64>,
    /// Backoff before the first retry, in seconds (doubles each time).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) retry_backoff_seconds: Option<i64>,
    /// Grace period of the replaced credential.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) grace_period_hours: Option<i64>,
    /// Notification recipient (repeatable): https://URL, mailto:ADDRESS or log.
    #[arg(long = "notify")]
    pub(crate) notify: Vec<String>,
    /// Do not notify on failures and rollbacks.
    #[arg(long)]
    pub(crate) no_notify_on_failure: bool,
    /// Lead time before expiry or the next rotation (repeatable), e.g. 7d, 1d.
    #[arg(long = "notify-before")]
    pub(crate) notify_before: Vec<String>,
    /// Create the policy inactive (it never fires).
    #[arg(long)]
    pub(crate) inactive: bool,
    /// After rotating a keyring, migrate its values.
    #[arg(long)]
    pub(crate) migrate: bool,
    /// After migrating, retire versions no value uses.
    #[arg(long)]
    pub(crate) retire_old: bool,
    /// Authorities: revoke keys automatically when their grace period ends.
    #[arg(long)]
    pub(crate) auto_revoke: bool,
}

impl PolicyArgs {
    /// The operator's policy, to be checked by `PolicySpec::into_policy`.
    pub(crate) fn into_spec(self) -> rotation_core::policy::PolicySpec {
        rotation_core::policy::PolicySpec {
            interval_days: self.interval_days,
            max_age_days: self.max_age_days,
            max_uses: self.max_uses,
            cron: self.cron,
            timezone: self.timezone,
            monthly: self.monthly,
            all: self.all,
            window: self.window,
            rotation_type: self.rotation_type,
            strategy: self.strategy,
            generator: self.generator,
            verify: self.verify,
            require_verification: Some(!self.no_verify),
            no_rollback: self.no_rollback,
            max_retries: self.max_retries,
            retry_backoff_seconds: self.retry_backoff_seconds,
            grace_period_hours: self.grace_period_hours,
            notify: self.notify,
            notify_on_failure: Some(!self.no_notify_on_failure),
            notify_before: self.notify_before,
            active: Some(!self.inactive),
            migrate: self.migrate,
            retire_old: self.retire_old,
            auto_revoke: self.auto_revoke,
        }
    }
}

impl KeyringCommand {
    /// The keyring the command acts on (`None` for `list`).
    pub(crate) fn keyring_name(&self) -> Option<&str> {
        match self {
            KeyringCommand::List => None,
            KeyringCommand::Create { name }
            | KeyringCommand::Info { name }
            | KeyringCommand::Rotate { name, .. }
            | KeyringCommand::ImportKey { name, .. }
            | KeyringCommand::Report { name }
            | KeyringCommand::HealthCheck { name }
            | KeyringCommand::Retire { name, .. }
            | KeyringCommand::History { name, .. } => Some(name),
            KeyringCommand::Migrate(args) | KeyringCommand::FullRotation(args) => Some(&args.name),
        }
    }
}

impl ValueCommand {
    /// The keyring the command acts on.
    pub(crate) fn keyring_name(&self) -> &str {
        match self {
            ValueCommand::Encrypt { keyring, .. }
            | ValueCommand::Decrypt { keyring, .. }
            | ValueCommand::List { keyring, .. }
            | ValueCommand::Import { keyring, .. }
            | ValueCommand::Export { keyring, .. } => keyring,
        }
    }
}
