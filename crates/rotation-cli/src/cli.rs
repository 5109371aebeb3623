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
    /// Rotation policies: when a credential is due.
    #[command(subcommand)]
    Policy(PolicyCommand),
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
        /// Target: keyring:NAME or authority:ID.
        target: String,
        /// Policy name.
        #[arg(long)]
        policy: String,
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
        #[arg(long)]
        key_provider_command: Option<String>,
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
        /// Due when the current key is this many days old.
        #[arg(long)]
        max_age_days: Option<u32>,
        /// Due when the current key sealed this many values.
        #[arg(long)]
        max_uses: Option<u64>,
        /// Due at the times of a 5-field cron expression.
        #[arg(long)]
        cron: Option<String>,
        /// Time zone of --cron (IANA name).
        #[arg(long, default_value = "UTC", requires = "cron")]
        timezone: String,
        /// Due monthly at DAY:HH:MM (UTC), e.g. 1:02:00.
        #[arg(long)]
        monthly: Option<String>,
        /// Require every trigger instead of any.
        #[arg(long)]
        all: bool,
        /// After rotating a keyring, migrate its values.
        #[arg(long)]
        migrate: bool,
        /// After migrating, retire versions no value uses.
        #[arg(long)]
        retire_old: bool,
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
    /// Newest events first.
    List {
        /// How many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Check the hash chain; fails with `tampered` when any event was edited, inserted or deleted.
    Verify,
}
