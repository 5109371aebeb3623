//! Secrets' metadata, the secret versions kept by the store's own backend,
//! and the notification outbox: the queries behind the secret half of the
//! store. Enqueueing is one `UNNEST` statement per [`BULK_CHUNK`]
//! messages; claiming locks with `FOR UPDATE SKIP LOCKED`, like
//! `claim_due_schedules`, so concurrent deliverers get disjoint messages.

use std::collections::HashSet;

use rotation_core::ports::OutboxMessage;
use rotation_core::secret::{Secret, SecretVersion};
use rotation_core::time::Timestamp;
use rotation_core::{Error, Reason, Result};
use sqlx::{Connection, Executor, PgConnection, Postgres};

use crate::error::{backend, insert, missing};
use crate::rows::{self, limit, micros, opt_micros};
use crate::tx::BULK_CHUNK;

/// A value serialised as JSON text, for a column.
fn to_json(what: &str, value: std::result::Result<String, serde_json::Error>) -> Result<String> {
    value.map_err(|e| Error::invalid_input(format!("{what} cannot be stored: {e}")))
}

/// One secret's metadata.
pub(crate) async fn get_secret<'e, E: Executor<'e, Database = Postgres>>(e: E, path: &str) -> Result<Option<Secret>> {
    sqlx::query("SELECT * FROM secrets WHERE path = $1")
        .bind(path)
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a secret", err))?
        .as_ref()
        .map(rows::secret)
        .transpose()
}

/// All secrets, by path.
pub(crate) async fn list_secrets<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Secret>> {
    let found = sqlx::query("SELECT * FROM secrets ORDER BY path")
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing secrets", err))?;
    rows::all(&found, rows::secret)
}

/// A secret's versions, ascending.
pub(crate) async fn list_secret_versions<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    path: &str,
) -> Result<Vec<SecretVersion>> {
    let found = sqlx::query("SELECT * FROM secret_versions WHERE path = $1 ORDER BY version")
        .bind(path)
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing secret versions", err))?;
    rows::all(&found, rows::secret_version)
}

/// Outbox messages by `(created_at, id)`; with `only_pending`, undelivered ones only.
pub(crate) async fn list_outbox<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    only_pending: bool,
    max: usize,
) -> Result<Vec<OutboxMessage>> {
    let sql = if only_pending {
        "SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY created_at, id LIMIT $1"
    } else {
        "SELECT * FROM outbox ORDER BY created_at, id LIMIT $1"
    };
    let found = sqlx::query(sql)
        .bind(limit(max))
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing the outbox", err))?;
    rows::all(&found, rows::outbox_message)
}

/// Inserts or replaces a secret's metadata.
pub(crate) async fn put_secret(c: &mut PgConnection, s: &Secret) -> Result<()> {
    let body = to_json(&format!("secret {}", s.path), serde_json::to_string(s))?;
    sqlx::query(
        "INSERT INTO secrets (path, body, updated_at) VALUES ($1, $2, $3) \
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
pub(crate) async fn put_secret_version(c: &mut PgConnection, v: &SecretVersion) -> Result<()> {
    let what = format!("version {} of secret {}", v.version, v.path);
    let stages = to_json(&what, serde_json::to_string(&v.stages))?;
    let attributes = to_json(&what, serde_json::to_string(&v.attributes))?;
    sqlx::query(
        "INSERT INTO secret_versions (path, version, stages, attributes, created_at) VALUES ($1, $2, $3, $4, $5) \
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

/// The columns of a batch of outbox messages, one array per column, for `UNNEST`.
#[derive(Default)]
struct OutboxColumns {
    id: Vec<String>,
    dedup_key: Vec<Option<String>>,
    recipient: Vec<String>,
    notification: Vec<String>,
    created_at: Vec<i64>,
    attempts: Vec<i64>,
    next_attempt_at: Vec<i64>,
    delivered_at: Vec<Option<i64>>,
    last_error: Vec<Option<String>>,
    claimed_by: Vec<Option<String>>,
    claim_expires_at: Vec<Option<i64>>,
}

impl OutboxColumns {
    fn of(messages: &[OutboxMessage]) -> Result<Self> {
        let mut c = OutboxColumns::default();
        for m in messages {
            c.id.push(m.id.to_string());
            c.dedup_key.push(m.dedup_key.clone());
            c.recipient.push(m.recipient.clone());
            c.notification.push(to_json(
                &format!("outbox message {}", m.id),
                serde_json::to_string(&m.notification),
            )?);
            c.created_at.push(micros(m.created_at));
            c.attempts.push(i64::from(m.attempts));
            c.next_attempt_at.push(micros(m.next_attempt_at));
            c.delivered_at.push(opt_micros(m.delivered_at));
            c.last_error.push(m.last_error.clone());
            c.claimed_by.push(m.claimed_by.clone());
            c.claim_expires_at.push(opt_micros(m.claim_expires_at));
        }
        Ok(c)
    }
}

/// Enqueues messages, skipping those whose `dedup_key` is taken (`ON
/// CONFLICT (dedup_key) DO NOTHING`, in batch order, so the first of two
/// messages sharing a key wins); returns how many were inserted. A taken
/// (or repeated) id is `already_exists` and inserts nothing.
pub(crate) async fn enqueue_outbox(c: &mut PgConnection, messages: &[OutboxMessage]) -> Result<u64> {
    const OP: &str = "enqueueing outbox messages";
    if messages.is_empty() {
        return Ok(0);
    }
    // Ids first: `ON CONFLICT (dedup_key) DO NOTHING` would silently skip a
    // message whose id is taken if its dedup_key is taken too. Writers are
    // serialised by the write lock, so the check cannot go stale.
    let mut batch_ids = HashSet::with_capacity(messages.len());
    for m in messages {
        if !batch_ids.insert(m.id) {
            return Err(taken(m.id));
        }
    }
    let ids: Vec<String> = messages.iter().map(|m| m.id.to_string()).collect();
    let existing: Option<String> = sqlx::query_scalar("SELECT id FROM outbox WHERE id = ANY($1::text[]) LIMIT 1")
        .bind(ids)
        .fetch_optional(&mut *c)
        .await
        .map_err(|e| backend(OP, e))?;
    if let Some(id) = existing {
        return Err(taken(id));
    }
    // A savepoint makes the batch all-or-nothing and keeps the transaction
    // usable if it fails, as in the SQLite store.
    let mut batch = c.begin().await.map_err(|e| backend(OP, e))?;
    let mut inserted = 0;
    for chunk in messages.chunks(BULK_CHUNK) {
        let cols = OutboxColumns::of(chunk)?;
        let result = sqlx::query(
            "INSERT INTO outbox (id, dedup_key, recipient, notification, created_at, attempts, next_attempt_at, \
             delivered_at, last_error, claimed_by, claim_expires_at) \
             SELECT id, dedup_key, recipient, notification, created_at, attempts, next_attempt_at, delivered_at, \
             last_error, claimed_by, claim_expires_at \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[], \
             $8::int8[], $9::text[], $10::text[], $11::int8[]) WITH ORDINALITY \
             AS u(id, dedup_key, recipient, notification, created_at, attempts, next_attempt_at, delivered_at, \
             last_error, claimed_by, claim_expires_at, n) \
             ORDER BY n \
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(cols.id)
        .bind(cols.dedup_key)
        .bind(cols.recipient)
        .bind(cols.notification)
        .bind(cols.created_at)
        .bind(cols.attempts)
        .bind(cols.next_attempt_at)
        .bind(cols.delivered_at)
        .bind(cols.last_error)
        .bind(cols.claimed_by)
        .bind(cols.claim_expires_at)
        .execute(&mut *batch)
        .await;
        match result {
            Ok(done) => inserted += done.rows_affected(),
            Err(e) => {
                let err = insert(OP, "an outbox message with one of these ids", e);
                batch.rollback().await.map_err(|e| backend(OP, e))?;
                return Err(err);
            }
        }
    }
    batch.commit().await.map_err(|e| backend(OP, e))?;
    Ok(inserted)
}

/// Claims up to `max` undelivered, due messages without a live claim,
/// oldest first. Rows another transaction has locked (is claiming) are
/// skipped, not waited for.
pub(crate) async fn claim_outbox(
    c: &mut PgConnection,
    now: Timestamp,
    owner: &str,
    until: Timestamp,
    max: usize,
) -> Result<Vec<OutboxMessage>> {
    let found = sqlx::query(
        "WITH due AS ( \
             SELECT id FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $3 \
             AND (claim_expires_at IS NULL OR claim_expires_at <= $3) \
             ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
         UPDATE outbox AS o SET claimed_by = $1, claim_expires_at = $2 FROM due WHERE o.id = due.id \
         RETURNING o.*",
    )
    .bind(owner)
    .bind(micros(until))
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
pub(crate) async fn update_outbox(c: &mut PgConnection, m: &OutboxMessage) -> Result<()> {
    let done = sqlx::query(
        "UPDATE outbox SET attempts = $1, next_attempt_at = $2, delivered_at = $3, last_error = $4, \
         claimed_by = $5, claim_expires_at = $6 WHERE id = $7",
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
