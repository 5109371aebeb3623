//! The rotation run: one persisted state machine per rotation (the journal).
//!
//! ```text
//! pending -> creating -> verifying -> promoting -> finishing -> completed
//!                  \          \           \            \
//!                   +----------+-----------+------------+--> rolling_back -> rolled_back
//!                                                        \-> failed (reason)
//! ```

use serde::{Deserialize, Serialize};

use crate::ids::{KeyId, RotationId, Target};
use crate::time::Timestamp;

/// State of a rotation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Recorded, no side effect yet.
    Pending,
    /// Creating the new credential.
    Creating,
    /// Testing the new credential.
    Verifying,
    /// Making the new credential current.
    Promoting,
    /// Kind-specific follow-up (authority: re-signing trust chains).
    Finishing,
    /// Done.
    Completed,
    /// Undoing a rotation that failed before promotion.
    RollingBack,
    /// Undone; the previous credential is still current.
    RolledBack,
    /// Failed and could not be rolled back or finished.
    Failed,
}

impl RunState {
    /// Whether the run is over. At most one non-terminal run exists per target.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Completed | RunState::RolledBack | RunState::Failed)
    }

    /// The stable string of this state.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Creating => "creating",
            RunState::Verifying => "verifying",
            RunState::Promoting => "promoting",
            RunState::Finishing => "finishing",
            RunState::Completed => "completed",
            RunState::RollingBack => "rolling_back",
            RunState::RolledBack => "rolled_back",
            RunState::Failed => "failed",
        }
    }

    /// Parses the stable string of a state.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RunState::Pending,
            "creating" => RunState::Creating,
            "verifying" => RunState::Verifying,
            "promoting" => RunState::Promoting,
            "finishing" => RunState::Finishing,
            "completed" => RunState::Completed,
            "rolling_back" => RunState::RollingBack,
            "rolled_back" => RunState::RolledBack,
            "failed" => RunState::Failed,
            _ => return None,
        })
    }

    /// All states, in the order of the happy path first.
    pub const ALL: [RunState; 9] = [
        RunState::Pending,
        RunState::Creating,
        RunState::Verifying,
        RunState::Promoting,
        RunState::Finishing,
        RunState::Completed,
        RunState::RollingBack,
        RunState::RolledBack,
        RunState::Failed,
    ];
}

/// A rotation run as journaled in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Run id and idempotency token.
    pub rotation_id: RotationId,
    /// What is rotated.
    pub target: Target,
    /// Current state.
    pub state: RunState,
    /// When the run was recorded.
    pub started_at: Timestamp,
    /// Last transition.
    pub updated_at: Timestamp,
    /// When the run reached a terminal state.
    pub completed_at: Option<Timestamp>,
    /// The process currently driving the run.
    pub lease_owner: String,
    /// Until when `lease_owner` holds the run; afterwards another process may take it over.
    pub lease_expires_at: Timestamp,
    /// Who asked for the rotation.
    pub actor: String,
    /// The credential being replaced.
    pub old_key_id: Option<KeyId>,
    /// The credential being introduced (chosen before it is created, so creation is idempotent).
    pub new_key_id: Option<KeyId>,
    /// Keyring version being replaced (keyring runs).
    pub old_version: Option<u32>,
    /// Keyring version being introduced, chosen before it is created (keyring runs).
    pub new_version: Option<u32>,
    /// Grace period given to the old credential.
    pub grace_period_hours: u32,
    /// When the old credential's grace period ends (set on promotion).
    pub grace_period_end: Option<Timestamp>,
    /// Trust chains re-signed (authority runs).
    pub chains_updated: u64,
    /// Stable reason of the failure, if any.
    pub error_reason: Option<String>,
    /// Failure message, if any.
    pub error_message: Option<String>,
    /// The schedule that started the run, if any.
    pub schedule_id: Option<RotationId>,
    /// Key material brought by the caller (imported or from a key provider),
    /// already wrapped by the custody, so a resumed run creates exactly
    /// that key. Never plaintext.
    pub staged_key: Option<crate::authority::CustodyRef>,
}

impl Run {
    /// Whether another driver may take this run over at `now`: its lease
    /// has expired. (Every driver holds a lease of its own, so even the same
    /// process never drives a run twice at once.)
    pub fn lease_expired(&self, now: Timestamp) -> bool {
        self.lease_expires_at <= now
    }
}
