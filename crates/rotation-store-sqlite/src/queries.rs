//! Read queries shared by the store (on the pool: committed data) and by
//! transactions (on their connection: their own writes included).

use rotation_core::Result;
use rotation_core::audit::{AuditEvent, AuditHead};
use rotation_core::authority::{Authority, SigningKey};
use rotation_core::chain::TrustRecord;
use rotation_core::ids::{AuthorityId, KeyId, RotationId, Target};
use rotation_core::ports::RecordQuery;
use rotation_core::run::Run;
use rotation_core::schedule::Schedule;
use sqlx::{AssertSqlSafe, Executor, Sqlite};

use crate::error::backend;
use crate::rows;

/// One authority.
pub(crate) async fn get_authority<'e, E>(e: E, id: &AuthorityId) -> Result<Option<Authority>>
where
    E: Executor<'e, Database = Sqlite>,
{
    sqlx::query("SELECT * FROM authorities WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading an authority", err))?
        .as_ref()
        .map(rows::authority)
        .transpose()
}

/// One signing key.
pub(crate) async fn get_key<'e, E>(e: E, key_id: &KeyId) -> Result<Option<SigningKey>>
where
    E: Executor<'e, Database = Sqlite>,
{
    sqlx::query("SELECT * FROM signing_keys WHERE key_id = ?")
        .bind(key_id.as_str())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a signing key", err))?
        .as_ref()
        .map(rows::signing_key)
        .transpose()
}

/// One run.
pub(crate) async fn get_run<'e, E>(e: E, id: RotationId) -> Result<Option<Run>>
where
    E: Executor<'e, Database = Sqlite>,
{
    sqlx::query("SELECT * FROM runs WHERE rotation_id = ?")
        .bind(id.to_string())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a run", err))?
        .as_ref()
        .map(rows::run)
        .transpose()
}

/// The non-terminal run of `target`, if any.
pub(crate) async fn active_run<'e, E>(e: E, target: &Target) -> Result<Option<Run>>
where
    E: Executor<'e, Database = Sqlite>,
{
    sqlx::query("SELECT * FROM runs WHERE target = ? AND state NOT IN ('completed', 'rolled_back', 'failed')")
        .bind(target.to_string())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading the active run", err))?
        .as_ref()
        .map(rows::run)
        .transpose()
}

/// The head of the audit chain.
pub(crate) async fn audit_head<'e, E>(e: E) -> Result<Option<AuditHead>>
where
    E: Executor<'e, Database = Sqlite>,
{
    sqlx::query("SELECT * FROM audit_head WHERE id = 1")
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading the audit head", err))?
        .as_ref()
        .map(rows::audit_head)
        .transpose()
}

/// Trust-chain records matching `query`, ordered by `(agent_id, id)`.
pub(crate) async fn list_records<'e, E>(e: E, query: &RecordQuery) -> Result<Vec<TrustRecord>>
where
    E: Executor<'e, Database = Sqlite>,
{
    if query.key_ids.as_ref().is_some_and(Vec::is_empty) {
        // `key_id IN ()` matches nothing.
        return Ok(Vec::new());
    }
    let mut sql = String::from("SELECT * FROM trust_records WHERE 1 = 1");
    if query.agent.is_some() {
        sql.push_str(" AND agent_id = ?");
    }
    if query.authority.is_some() {
        sql.push_str(" AND authority_id = ?");
    }
    if let Some(keys) = &query.key_ids {
        sql.push_str(" AND key_id IN (");
        sql.push_str(&placeholders(keys.len()));
        sql.push(')');
    }
    if query.after.is_some() {
        sql.push_str(" AND (agent_id, id) > (?, ?)");
    }
    sql.push_str(" ORDER BY agent_id, id LIMIT ?");

    // The SQL text holds only fixed fragments and `?` placeholders.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(agent) = &query.agent {
        q = q.bind(agent.as_str());
    }
    if let Some(authority) = &query.authority {
        q = q.bind(authority.as_str());
    }
    if let Some(keys) = &query.key_ids {
        for k in keys {
            q = q.bind(k.as_str());
        }
    }
    if let Some((agent, id)) = &query.after {
        q = q.bind(agent.as_str()).bind(id.to_string());
    }
    let found = q
        .bind(rows::limit(query.limit))
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing trust-chain records", err))?;
    rows::all(&found, rows::trust_record)
}

/// `n` comma-separated `?` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// Audit events with `seq > after_seq`, ascending.
pub(crate) async fn list_audit<'e, E>(e: E, after_seq: i64, limit: usize) -> Result<Vec<AuditEvent>>
where
    E: Executor<'e, Database = Sqlite>,
{
    let found = sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")
        .bind(after_seq)
        .bind(rows::limit(limit))
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing audit events", err))?;
    rows::all(&found, rows::audit_event)
}

/// Schedules, soonest first.
pub(crate) async fn list_schedules<'e, E>(e: E, target: Option<&Target>, only_pending: bool) -> Result<Vec<Schedule>>
where
    E: Executor<'e, Database = Sqlite>,
{
    let sql = match (target.is_some(), only_pending) {
        (false, false) => "SELECT * FROM schedules ORDER BY due_at, id",
        (false, true) => "SELECT * FROM schedules WHERE state = 'scheduled' ORDER BY due_at, id",
        (true, false) => "SELECT * FROM schedules WHERE target = ? ORDER BY due_at, id",
        (true, true) => "SELECT * FROM schedules WHERE target = ? AND state = 'scheduled' ORDER BY due_at, id",
    };
    let mut q = sqlx::query(sql);
    if let Some(t) = target {
        q = q.bind(t.to_string());
    }
    let found = q.fetch_all(e).await.map_err(|err| backend("listing schedules", err))?;
    rows::all(&found, rows::schedule)
}
