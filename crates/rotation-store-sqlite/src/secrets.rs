//! Secrets' metadata, the secret versions kept by the store's own backend,
//! and the notification outbox: the queries behind the secret half of the
//! store.

use std::collections::HashSet;

use rotation_core::ports::OutboxMessage;
use rotation_core::secret::{Secret, SecretVersion};
use rotation_core::time::Timestamp;
use rotation_core::{Error, Reason, Result};
use sqlx::{AssertSqlSafe, Connection, Executor, Sqlite, SqliteConnection};

use crate::error::{backend, insert, missing};
use crate::queries::placeholders;
use crate::rows::{self, limit, micros, opt_micros};

/// Ids per `IN (...)` lookup of taken outbox ids.
const ID_CHUNK: usize = 1000;

/// A value serialised as JSON text, for a column.
fn to_json(what: &str, value: std::result::Result<String, serde_json::Error>) -> Result<String> {
    value.map_err(|e| Error::invalid_input(format!("{what} cannot be stored: {e}")))
}

/// One secret's metadata.
pub(crate) async fn get_secret<'e, E: Executor<'e, Database = Sqlite>>(e: E, path: &str) -> Result<Option<Secret>> {
    sqlx::query("SELECT * FROM secrets WHERE path = ?")
        .bind(path)
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a secret", err))?
        .as_ref()
        .map(rows::secret)
        .transpose()
}

/// All secrets, by path.
pub(crate) async fn list_secrets<'e, E: Executor<'e, Database = Sqlite>>(e: E) -> Result<Vec<Secret>> {
    let found = sqlx::query("SELECT * FROM secrets ORDER BY path")
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing secrets", err))?;
    rows::all(&found, rows::secret)
}

/// A secret's versions, ascending.
pub(crate) async fn list_secret_versions<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    path: &str,
) -> Result<Vec<SecretVersion>> {
    let found = sqlx::query("SELECT * FROM secret_versions WHERE path = ? ORDER BY version")
        .bind(path)
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing secret versions", err))?;
    rows::all(&found, rows::secret_version)
}

/// Outbox messages by `(created_at, id)`; with `only_pending`, undelivered ones only.
pub(crate) async fn list_outbox<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    only_pending: bool,
    max: usize,
) -> Result<Vec<OutboxMessage>> {
    let sql = if only_pending {
        "SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY created_at, id LIMIT ?"
    } else {
        "SELECT * FROM outbox ORDER BY created_at, id LIMIT ?"
    };
    let found = sqlx::query(sql)
        .bind(limit(max))
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing the outbox", err))?;
    rows::all(&found, rows::outbox_message)
}

/// Inserts or replaces a secret's metadata.
pub(crate) async fn put_secret(c: &mut SqliteConnection, s: &Secret) -> Result<()> {
    let body = to_json(&format!("secret {}", s.path), serde_json::to_string(s))?;
    sqlx::query(
        "INSERT INTO secrets (path, body, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (path) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
    )
    .bind(s.path.as_str())
    .bind(body)
    .bind(micros(s.updated_at))
    .execute(c)
    .await
    .map_err(|e| backend("writing a secret", e))?;
    Ok(())
}

/// Inserts or replaces one secret version's labels and attributes.
pub(crate) async fn put_secret_version(c: &mut SqliteConnection, v: &SecretVersion) -> Result<()> {
    let what = format!("version {} of secret {}", v.version, v.path);
    let stages = to_json(&what, serde_json::to_string(&v.stages))?;
    let attributes = to_json(&what, serde_json::to_string(&v.attributes))?;
    sqlx::query(
        "INSERT INTO secret_versions (path, version, stages, attributes, created_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (path, version) DO UPDATE SET stages = excluded.stages, attributes = excluded.attributes, \
         created_at = excluded.created_at",
    )
    .bind(v.path.as_str())
    .bind(i64::from(v.version))
    .bind(stages)
    .bind(attributes)
    .bind(micros(v.created_at))
    .execute(c)
    .await
    .map_err(|e| backend("writing a secret version", e))?;
    Ok(())
}

/// The error for an outbox id that is taken.
fn taken(id: impl std::fmt::Display) -> Error {
    Error::new(Reason::AlreadyExists, format!("outbox message {id} already exists"))
}

/// Enqueues messages, skipping those whose `dedup_key` is taken; returns
/// how many were inserted. A taken (or repeated) id is `already_exists`
/// and inserts nothing.
pub(crate) async fn enqueue_outbox(c: &mut SqliteConnection, messages: &[OutboxMessage]) -> Result<u64> {
    const OP: &str = "enqueueing outbox messages";
    if messages.is_empty() {
        return Ok(0);
    }
    // Ids first, so a taken id is `already_exists` even when the message's
    // dedup_key would have it skipped.
    let mut batch_ids = HashSet::with_capacity(messages.len());
    for m in messages {
        if !batch_ids.insert(m.id) {
            return Err(taken(m.id));
        }
    }
    for chunk in messages.chunks(ID_CHUNK) {
        let sql = AssertSqlSafe(format!(
            "SELECT id FROM outbox WHERE id IN ({}) LIMIT 1",
            placeholders(chunk.len())
        ));
        let mut q = sqlx::query_scalar::<_, String>(sql);
        for m in chunk {
            q = q.bind(m.id.to_string());
        }
        if let Some(id) = q.fetch_optional(&mut *c).await.map_err(|e| backend(OP, e))? {
            return Err(taken(id));
        }
    }
    // A savepoint makes the batch all-or-nothing even if the caller goes on.
    let mut batch = c.begin().await.map_err(|e| backend(OP, e))?;
    let mut inserted = 0;
    for m in messages {
        let notification = to_json(
            &format!("outbox message {}", m.id),
            serde_json::to_string(&m.notification),
        )?;
        inserted += sqlx::query(
            "INSERT INTO outbox (id, dedup_key, recipient, notification, created_at, attempts, next_attempt_at, \
             delivered_at, last_error, claimed_by, claim_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(m.id.to_string())
        .bind(m.dedup_key.as_deref())
        .bind(m.recipient.as_str())
        .bind(notification)
        .bind(micros(m.created_at))
        .bind(i64::from(m.attempts))
        .bind(micros(m.next_attempt_at))
        .bind(opt_micros(m.delivered_at))
        .bind(m.last_error.as_deref())
        .bind(m.claimed_by.as_deref())
        .bind(opt_micros(m.claim_expires_at))
        .execute(&mut *batch)
        .await
        .map_err(|e| insert(OP, &format!("outbox message {}", m.id), e))?
        .rows_affected();
    }
    batch.commit().await.map_err(|e| backend(OP, e))?;
    Ok(inserted)
}

/// Claims up to `max` undelivered, due messages without a live claim,
/// oldest first.
pub(crate) async fn claim_outbox(
    c: &mut SqliteConnection,
    now: Timestamp,
    owner: &str,
    until: Timestamp,
    max: usize,
) -> Result<Vec<OutboxMessage>> {
    let found = sqlx::query(
        "UPDATE outbox SET claimed_by = ?, claim_expires_at = ? WHERE id IN ( \
         SELECT id FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? \
         AND (claim_expires_at IS NULL OR claim_expires_at <= ?) \
         ORDER BY created_at, id LIMIT ?) \
         RETURNING *",
    )
    .bind(owner)
    .bind(micros(until))
    .bind(micros(now))
    .bind(micros(now))
    .bind(limit(max))
    .fetch_all(c)
    .await
    .map_err(|e| backend("claiming outbox messages", e))?;
    let mut claimed = rows::all(&found, rows::outbox_message)?;
    claimed.sort_by_key(|m| (m.created_at, m.id));
    Ok(claimed)
}

/// Replaces a message's delivery fields; `not_found` if missing.
pub(crate) async fn update_outbox(c: &mut SqliteConnection, m: &OutboxMessage) -> Result<()> {
    let done = sqlx::query(
        "UPDATE outbox SET attempts = ?, next_attempt_at = ?, delivered_at = ?, last_error = ?, claimed_by = ?, \
         claim_expires_at = ? WHERE id = ?",
    )
    .bind(i64::from(m.attempts))
    .bind(micros(m.next_attempt_at))
    .bind(opt_micros(m.delivered_at))
    .bind(m.last_error.as_deref())
    .bind(m.claimed_by.as_deref())
    .bind(opt_micros(m.claim_expires_at))
    .bind(m.id.to_string())
    .execute(c)
    .await
    .map_err(|e| backend("updating an outbox message", e))?;
    if done.rows_affected() == 0 {
        return Err(missing(format_args!("outbox message {}", m.id)));
    }
    Ok(())
}
