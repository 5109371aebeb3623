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
use sqlx::{AssertSqlSafe, Executor, Postgres};

use crate::error::backend;
use crate::rows;

/// One authority.
pub(crate) async fn get_authority<'e, E>(e: E, id: &AuthorityId) -> Result<Option<Authority>>
where
    E: Executor<'e, Database = Postgres>,
{
    sqlx::query("SELECT * FROM authorities WHERE id = $1")
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
    E: Executor<'e, Database = Postgres>,
{
    sqlx::query("SELECT * FROM signing_keys WHERE key_id = $1")
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
    E: Executor<'e, Database = Postgres>,
{
    sqlx::query("SELECT * FROM runs WHERE rotation_id = $1")
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
    E: Executor<'e, Database = Postgres>,
{
    sqlx::query("SELECT * FROM runs WHERE target = $1 AND state NOT IN ('completed', 'rolled_back', 'failed')")
        .bind(target.to_string())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading the active run", err))?
        .as_ref()
        .map(rows::run)
        .transpose()
}

/// The head of the audit chain; with `lock`, the head row is locked
/// (`FOR UPDATE`) until the end of the transaction.
pub(crate) async fn audit_head<'e, E>(e: E, lock: bool) -> Result<Option<AuditHead>>
where
    E: Executor<'e, Database = Postgres>,
{
    let sql = if lock {
        "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT seq, hash FROM audit_head WHERE id = 1"
    };
    let row = sqlx::query(sql)
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading the audit head", err))?;
    match row {
        Some(row) => rows::audit_head(&row),
        None => Err(crate::error::tampered(
            "audit_head",
            "1",
            "seq",
            "the head row is missing",
        )),
    }
}

/// Trust-chain records matching `query`, ordered by `(agent_id, id)`.
pub(crate) async fn list_records<'e, E>(e: E, query: &RecordQuery) -> Result<Vec<TrustRecord>>
where
    E: Executor<'e, Database = Postgres>,
{
    if query.key_ids.as_ref().is_some_and(Vec::is_empty) {
        // `key_id = ANY('{}')` matches nothing.
        return Ok(Vec::new());
    }
    let mut sql = String::from("SELECT * FROM trust_records WHERE TRUE");
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if query.agent.is_some() {
        sql.push_str(&format!(" AND agent_id = {}", param()));
    }
    if query.authority.is_some() {
        sql.push_str(&format!(" AND authority_id = {}", param()));
    }
    if query.key_ids.is_some() {
        sql.push_str(&format!(" AND key_id = ANY({})", param()));
    }
    if query.after.is_some() {
        let (a, b) = (param(), param());
        sql.push_str(&format!(" AND (agent_id, id) > ({a}, {b})"));
    }
    sql.push_str(&format!(" ORDER BY agent_id, id LIMIT {}", param()));

    // The SQL text holds only fixed fragments and numbered placeholders.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(agent) = &query.agent {
        q = q.bind(agent.as_str().to_owned());
    }
    if let Some(authority) = &query.authority {
        q = q.bind(authority.as_str().to_owned());
    }
    if let Some(keys) = &query.key_ids {
        q = q.bind(keys.iter().map(|k| k.as_str().to_owned()).collect::<Vec<String>>());
    }
    if let Some((agent, id)) = &query.after {
        q = q.bind(agent.as_str().to_owned()).bind(id.to_string());
    }
    let found = q
        .bind(rows::limit(query.limit))
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing trust-chain records", err))?;
    rows::all(&found, rows::trust_record)
}

/// Audit events with `seq > after_seq`, ascending.
pub(crate) async fn list_audit<'e, E>(e: E, after_seq: i64, limit: usize) -> Result<Vec<AuditEvent>>
where
    E: Executor<'e, Database = Postgres>,
{
    let found = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
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
    E: Executor<'e, Database = Postgres>,
{
    let sql = match (target.is_some(), only_pending) {
        (false, false) => "SELECT * FROM schedules ORDER BY due_at, id",
        (false, true) => "SELECT * FROM schedules WHERE state = 'scheduled' ORDER BY due_at, id",
        (true, false) => "SELECT * FROM schedules WHERE target = $1 ORDER BY due_at, id",
        (true, true) => "SELECT * FROM schedules WHERE target = $1 AND state = 'scheduled' ORDER BY due_at, id",
    };
    let mut q = sqlx::query(sql);
    if let Some(t) = target {
        q = q.bind(t.to_string());
    }
    let found = q.fetch_all(e).await.map_err(|err| backend("listing schedules", err))?;
    rows::all(&found, rows::schedule)
}
