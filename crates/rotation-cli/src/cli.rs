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
    /// Store URL.
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
    /// Default: `master.key` next to the SQLite database.
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
