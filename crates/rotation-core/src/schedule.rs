//! Scheduled rotations: a target, a due time and who has claimed it.

use serde::{Deserialize, Serialize};

use crate::ids::{RotationId, Target};
use crate::time::Timestamp;

/// State of a schedule entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    /// Waiting for its due time.
    Scheduled,
    /// Its rotation ran to completion.
    Done,
    /// Its rotation failed.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
    /// Its policy's `max_retries` were exhausted: no more automatic
    /// attempts until an operator runs `schedule resume`.
    Orphaned,
}

impl ScheduleState {
    /// The stable string of this state.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Scheduled => "scheduled",
            ScheduleState::Done => "done",
            ScheduleState::Failed => "failed",
            ScheduleState::Cancelled => "cancelled",
            ScheduleState::Orphaned => "orphaned",
        }
    }

    /// Parses the stable string of a state.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => ScheduleState::Scheduled,
            "done" => ScheduleState::Done,
            "failed" => ScheduleState::Failed,
            "cancelled" => ScheduleState::Cancelled,
            "orphaned" => ScheduleState::Orphaned,
            _ => return None,
        })
    }
}

/// A scheduled rotation. Without a policy it is one-off: its id is the
/// rotation id the run will use, so processing it twice cannot rotate
/// twice. With a policy it is recurring: each time it is due the policy is
/// evaluated, and a rotation runs when the policy fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Schedule id = rotation id of the run it starts.
    pub id: RotationId,
    /// What to rotate.
    pub target: Target,
    /// When it is due.
    pub due_at: Timestamp,
    /// State.
    pub state: ScheduleState,
    /// When it was created.
    pub created_at: Timestamp,
    /// Who created it.
    pub actor: String,
    /// Process that claimed it for processing.
    pub claimed_by: Option<String>,
    /// Until when the claim holds.
    pub claim_expires_at: Option<Timestamp>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// Policy evaluated each time the schedule is due (recurring schedules).
    pub policy: Option<String>,
    /// Failed attempts in a row (reset by a success or `schedule resume`).
    #[serde(default)]
    pub attempts: u32,
    /// Seconds added to every due time computed from the policy, so paired
    /// credentials never rotate at the same moment.
    #[serde(default)]
    pub offset_seconds: i64,
}
