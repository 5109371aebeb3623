//! Rotation statistics (seeds 001 and 003): totals, success rate, durations.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use crate::audit::event;
use crate::error::Result;
use crate::ids::Target;
use crate::run::RunState;
use crate::schedule::ScheduleState;
use crate::time::Timestamp;

/// Store metadata key holding the instant statistics were last reset.
const RESET_KEY: &str = "stats.reset_at";

/// Statistics over the rotations that ended since the last reset, and
/// the rotations in progress now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Rotations that ended (completed, failed or rolled back).
    pub total_rotations: u64,
    /// Completed.
    pub successful_rotations: u64,
    /// Failed without rollback.
    pub failed_rotations: u64,
    /// Rolled back.
    pub rollbacks: u64,
    /// `successful / total` (0 when nothing ended).
    pub success_rate: f64,
    /// Mean duration of ended rotations, in seconds.
    pub avg_duration_seconds: f64,
    /// 95th percentile duration (nearest rank), in seconds.
    pub p95_duration_seconds: f64,
    /// Schedules waiting to fire.
    pub active_schedules: u64,
    /// Rotations in progress.
    pub active_rotations: u64,
    /// Since when the figures count (`None`: since the store was created).
    pub since: Option<Timestamp>,
}

impl Engine {
    /// Statistics over every kind of rotation that ended since the last
    /// reset (a run begun before it and ended after it counts), and every
    /// rotation in progress.
    pub async fn stats(&self) -> Result<Stats> {
        let since = match self.store.get_meta(RESET_KEY).await? {
            Some(bytes) => String::from_utf8(bytes)
                .ok()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            None => None,
        };
        let runs = self.store.list_runs(None, usize::MAX).await?;
        let (mut ok, mut failed, mut rolled_back, mut active) = (0u64, 0u64, 0u64, 0u64);
        let mut durations: Vec<f64> = Vec::new();
        for r in &runs {
            // Runs in progress always count as active; finished ones count
            // when they ended after the reset (also if they began before it).
            let end = r.completed_at.unwrap_or(r.updated_at);
            if r.state.is_terminal() && since.is_some_and(|s| end <= s) {
                continue;
            }
            match r.state {
                RunState::Completed => ok += 1,
                RunState::Failed => failed += 1,
                RunState::RolledBack => rolled_back += 1,
                _ => {
                    active += 1;
                    continue;
                }
            }
            durations.push((end - r.started_at).num_milliseconds() as f64 / 1000.0);
        }
        durations.sort_by(f64::total_cmp);
        let total = ok + failed + rolled_back;
        let avg = if durations.is_empty() {
            0.0
        } else {
            durations.iter().sum::<f64>() / durations.len() as f64
        };
        let p95 = if durations.is_empty() {
            0.0
        } else {
            let rank = ((0.95 * durations.len() as f64).ceil() as usize).clamp(1, durations.len());
            durations[rank - 1]
        };
        let active_schedules = self
            .store
            .list_schedules(None, true)
            .await?
            .iter()
            .filter(|s| s.state == ScheduleState::Scheduled)
            .count() as u64;
        Ok(Stats {
            total_rotations: total,
            successful_rotations: ok,
            failed_rotations: failed,
            rollbacks: rolled_back,
            success_rate: if total == 0 { 0.0 } else { ok as f64 / total as f64 },
            avg_duration_seconds: avg,
            p95_duration_seconds: p95,
            active_schedules,
            active_rotations: active,
            since,
        })
    }

    /// Starts counting statistics afresh from now (runs and the audit log
    /// are kept; audited as `stats_reset`).
    pub async fn reset_stats(&self) -> Result<Timestamp> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        tx.put_meta(RESET_KEY, crate::time::rfc3339(now).as_bytes()).await?;
        let draft = self.draft(event::STATS_RESET, Target::Store, None, json!({}));
        self.append_audit(tx.as_mut(), now, vec![draft]).await?;
        tx.commit().await?;
        Ok(now)
    }
}
