//! Binding domain values to the columns of their tables.

use rotation_core::authority::{Authority, SigningKey};
use rotation_core::run::Run;
use rotation_core::schedule::Schedule;
use rotation_core::{Error, Result};
use sqlx::Postgres;

use crate::rows::{count, micros, opt_micros};

/// A query with runtime-bound arguments.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// A JSON value as stored (TEXT).
pub(crate) fn json_text(what: &str, value: &serde_json::Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::invalid_input(format!("cannot serialise the {what}: {e}")))
}

/// Binds every column of `authorities`, `id` last.
pub(crate) fn bind_authority<'q>(q: Query<'q>, a: &Authority) -> Query<'q> {
    q.bind(a.name.clone())
        .bind(i64::from(a.rotation_period_days))
        .bind(i64::from(a.grace_period_hours))
        .bind(a.current_key_id.as_str())
        .bind(micros(a.created_at))
        .bind(opt_micros(a.last_rotated_at))
        .bind(i64::from(a.prepublish_hours))
        .bind(a.id.as_str())
}

/// Binds every column of `signing_keys`, `key_id` last.
pub(crate) fn bind_key<'q>(q: Query<'q>, k: &SigningKey) -> Query<'q> {
    q.bind(k.authority_id.as_str())
        .bind(k.algorithm.clone())
        .bind(k.public_key.clone())
        .bind(k.state.as_str())
        .bind(micros(k.created_at))
        .bind(opt_micros(k.activated_at))
        .bind(opt_micros(k.rotated_at))
        .bind(opt_micros(k.grace_until))
        .bind(opt_micros(k.revoked_at))
        .bind(k.revocation_reason.clone())
        .bind(k.created_by.map(|id| id.to_string()))
        .bind(k.custody.custody.clone())
        .bind(k.custody.handle.clone())
        .bind(k.key_id.as_str())
}

/// Binds every column of `runs`, `rotation_id` last.
pub(crate) fn bind_run<'q>(q: Query<'q>, r: &Run) -> Result<Query<'q>> {
    Ok(q.bind(r.target.to_string())
        .bind(r.state.as_str())
        .bind(micros(r.started_at))
        .bind(micros(r.updated_at))
        .bind(opt_micros(r.completed_at))
        .bind(r.lease_owner.clone())
        .bind(micros(r.lease_expires_at))
        .bind(r.actor.clone())
        .bind(r.old_key_id.as_ref().map(|k| k.as_str().to_owned()))
        .bind(r.new_key_id.as_ref().map(|k| k.as_str().to_owned()))
        .bind(i64::from(r.grace_period_hours))
        .bind(opt_micros(r.grace_period_end))
        .bind(count("chains_updated", r.chains_updated)?)
        .bind(r.error_reason.clone())
        .bind(r.error_message.clone())
        .bind(r.schedule_id.map(|id| id.to_string()))
        .bind(r.old_version.map(i64::from))
        .bind(r.new_version.map(i64::from))
        .bind(r.staged_key.as_ref().map(|k| k.custody.clone()))
        .bind(r.staged_key.as_ref().map(|k| k.handle.clone()))
        .bind(r.rotation_id.to_string()))
}

/// Binds every column of `schedules`, `id` last.
pub(crate) fn bind_schedule<'q>(q: Query<'q>, s: &Schedule) -> Query<'q> {
    q.bind(s.target.to_string())
        .bind(micros(s.due_at))
        .bind(s.state.as_str())
        .bind(micros(s.created_at))
        .bind(s.actor.clone())
        .bind(s.claimed_by.clone())
        .bind(opt_micros(s.claim_expires_at))
        .bind(s.last_error.clone())
        .bind(s.policy.clone())
        .bind(i64::from(s.attempts))
        .bind(s.offset_seconds)
        .bind(s.id.to_string())
}
