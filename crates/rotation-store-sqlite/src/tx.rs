//! [`StoreTx`] on one `BEGIN IMMEDIATE` SQLite transaction.

use async_trait::async_trait;
use rotation_core::audit::{AuditEvent, AuditHead};
use rotation_core::authority::{Authority, SigningKey};
use rotation_core::chain::TrustRecord;
use rotation_core::ids::{AuthorityId, KeyId, RotationId, Target};
use rotation_core::ports::StoreTx;
use rotation_core::run::Run;
use rotation_core::schedule::Schedule;
use rotation_core::time::Timestamp;
use rotation_core::{Error, Reason, Result};
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr, Sqlite, Transaction};
use tokio::sync::OwnedMutexGuard;

use crate::binds::{bind_authority, bind_key, bind_run, bind_schedule, insert_records_sql, json_text};
use crate::error::{backend, insert, is_unique_violation, is_unique_violation_on, missing};
use crate::queries::{self, placeholders};
use crate::rows::{self, micros};
use crate::{keyrings, secrets};
use rotation_core::ids::KeyringName;
use rotation_core::keyring::{KeyVersion, Keyring, Reseal, SealedValue};
use rotation_core::policy::Policy;
use rotation_core::ports::OutboxMessage;
use rotation_core::secret::{Secret, SecretVersion};

/// Rows per multi-row `INSERT` of trust records (10 parameters each).
const INSERT_CHUNK: usize = 100;

/// A write transaction of a [`crate::SqliteStore`]. Dropping it rolls back.
pub(crate) struct SqliteTx {
    // Declared first so it is dropped (rolled back) before the writer lock is released.
    tx: Transaction<'static, Sqlite>,
    _writer: OwnedMutexGuard<()>,
}

impl SqliteTx {
    /// Wraps an open transaction and the process-wide writer lock it holds.
    pub(crate) fn new(tx: Transaction<'static, Sqlite>, writer: OwnedMutexGuard<()>) -> Self {
        SqliteTx { tx, _writer: writer }
    }
}

/// The error for a run that would be a second non-terminal run of its target.
/// The error names the run in the way (as the memory store does).
fn concurrent(run: &Run, active: Option<Run>) -> Error {
    let blocking = active.map(|a| a.rotation_id).unwrap_or(run.rotation_id);
    let mut err = Error::new(
        Reason::ConcurrentRotation,
        format!("another rotation of {} is in progress (run {blocking})", run.target),
    )
    .with_rotation(blocking);
    if let Target::Authority(id) = &run.target {
        err = err.with_authority(id);
    }
    err
}

impl SqliteTx {
    /// Maps a failed insert or update of `run`.
    async fn run_error(&mut self, op: &str, run: &Run, err: sqlx::Error) -> Error {
        if is_unique_violation_on(&err, "runs.target") {
            // The statement failed, the transaction is still usable.
            let active = queries::active_run(&mut *self.tx, &run.target).await.ok().flatten();
            concurrent(run, active)
        } else if is_unique_violation(&err) {
            Error::new(
                Reason::AlreadyExists,
                format!("rotation {} already exists", run.rotation_id),
            )
            .with_rotation(run.rotation_id)
        } else {
            backend(op, err).with_rotation(run.rotation_id)
        }
    }
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        let SqliteTx { tx, _writer } = *self;
        tx.commit().await.map_err(|e| backend("committing", e))
    }

    async fn delete_meta(&mut self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = ?")
            .bind(key)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| backend("deleting metadata", e))?;
        Ok(())
    }

    async fn clear_all(&mut self) -> Result<()> {
        crate::snapshot::clear_all(&mut self.tx).await
    }

    async fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| backend("writing metadata", e))?;
        Ok(())
    }

    async fn get_authority(&mut self, id: &AuthorityId) -> Result<Option<Authority>> {
        queries::get_authority(&mut *self.tx, id).await
    }

    async fn insert_authority(&mut self, a: &Authority) -> Result<()> {
        bind_authority(
            sqlx::query(
                "INSERT INTO authorities (name, rotation_period_days, grace_period_hours, current_key_id, \
                 created_at, last_rotated_at, prepublish_hours, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            a,
        )
        .execute(&mut *self.tx)
        .await
        .map_err(|e| insert("inserting an authority", &format!("authority {}", a.id), e).with_authority(&a.id))?;
        Ok(())
    }

    async fn update_authority(&mut self, a: &Authority) -> Result<()> {
        let done = bind_authority(
            sqlx::query(
                "UPDATE authorities SET name = ?, rotation_period_days = ?, grace_period_hours = ?, \
                 current_key_id = ?, created_at = ?, last_rotated_at = ?, prepublish_hours = ? WHERE id = ?",
            ),
            a,
        )
        .execute(&mut *self.tx)
        .await
        .map_err(|e| backend("updating an authority", e).with_authority(&a.id))?;
        if done.rows_affected() == 0 {
            return Err(missing(format_args!("authority {}", a.id)).with_authority(&a.id));
        }
        Ok(())
    }

    async fn get_key(&mut self, key_id: &KeyId) -> Result<Option<SigningKey>> {
        queries::get_key(&mut *self.tx, key_id).await
    }

    async fn insert_key(&mut self, k: &SigningKey) -> Result<()> {
        bind_key(
            sqlx::query(
                "INSERT INTO signing_keys (authority_id, algorithm, public_key, state, created_at, activated_at, \
                 rotated_at, grace_until, revoked_at, revocation_reason, created_by, custody, custody_handle, key_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            k,
        )
        .execute(&mut *self.tx)
        .await
        .map_err(|e| {
            insert("inserting a signing key", &format!("key {}", k.key_id), e).with_authority(&k.authority_id)
        })?;
        Ok(())
    }

    async fn update_key(&mut self, k: &SigningKey) -> Result<()> {
        let done = bind_key(
            sqlx::query(
                "UPDATE signing_keys SET authority_id = ?, algorithm = ?, public_key = ?, state = ?, created_at = ?, \
                 activated_at = ?, rotated_at = ?, grace_until = ?, revoked_at = ?, revocation_reason = ?, \
                 created_by = ?, custody = ?, custody_handle = ? WHERE key_id = ?",
            ),
            k,
        )
        .execute(&mut *self.tx)
        .await
        .map_err(|e| backend("updating a signing key", e).with_authority(&k.authority_id))?;
        if done.rows_affected() == 0 {
            return Err(missing(format_args!("key {}", k.key_id)).with_authority(&k.authority_id));
        }
        Ok(())
    }

    async fn delete_key(&mut self, key_id: &KeyId) -> Result<()> {
        sqlx::query("DELETE FROM signing_keys WHERE key_id = ?")
            .bind(key_id.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(|e| backend("deleting a signing key", e))?;
        Ok(())
    }

    async fn insert_records(&mut self, records: &[TrustRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // A savepoint makes the batch all-or-nothing even if the caller goes on.
        let mut batch = self
            .tx
            .begin()
            .await
            .map_err(|e| backend("inserting trust-chain records", e))?;
        let full_chunk = insert_records_sql(INSERT_CHUNK);
        for chunk in records.chunks(INSERT_CHUNK) {
            let sql = if chunk.len() == INSERT_CHUNK {
                full_chunk.clone()
            } else {
                insert_records_sql(chunk.len())
            };
            let mut q = sqlx::query(sql);
            for r in chunk {
                q = q
                    .bind(r.id.to_string())
                    .bind(r.agent_id.as_str())
                    .bind(r.authority_id.as_str())
                    .bind(r.kind.as_str())
                    .bind(json_text("record body", &r.body)?)
                    .bind(r.key_id.as_str())
                    .bind(r.signature.as_slice())
                    .bind(micros(r.issued_at))
                    .bind(micros(r.signed_at))
                    .bind(r.resigned_by.map(|id| id.to_string()));
            }
            q.execute(&mut *batch).await.map_err(|e| {
                insert(
                    "inserting trust-chain records",
                    "a trust-chain record with one of these ids",
                    e,
                )
            })?;
        }
        batch
            .commit()
            .await
            .map_err(|e| backend("inserting trust-chain records", e))
    }

    async fn resign_records(&mut self, expected_key: &[KeyId], records: &[TrustRecord]) -> Result<u64> {
        if expected_key.is_empty() || records.is_empty() {
            return Ok(0);
        }
        // One statement text for the whole batch: prepared once, then reused from the statement cache.
        let sql = AssertSqlSafe(format!(
            "UPDATE trust_records SET body = ?, key_id = ?, signature = ?, signed_at = ?, resigned_by = ? \
             WHERE id = ? AND key_id IN ({})",
            placeholders(expected_key.len())
        ))
        .into_sql_str();
        let mut replaced = 0;
        for r in records {
            let mut q = sqlx::query(sql.clone())
                .bind(json_text("record body", &r.body)?)
                .bind(r.key_id.as_str())
                .bind(r.signature.as_slice())
                .bind(micros(r.signed_at))
                .bind(r.resigned_by.map(|id| id.to_string()))
                .bind(r.id.to_string());
            for k in expected_key {
                q = q.bind(k.as_str());
            }
            replaced += q
                .execute(&mut *self.tx)
                .await
                .map_err(|e| backend("re-signing trust-chain records", e))?
                .rows_affected();
        }
        Ok(replaced)
    }

    async fn get_run(&mut self, id: RotationId) -> Result<Option<Run>> {
        queries::get_run(&mut *self.tx, id).await
    }

    async fn active_run(&mut self, target: &Target) -> Result<Option<Run>> {
        queries::active_run(&mut *self.tx, target).await
    }

    async fn insert_run(&mut self, run: &Run) -> Result<()> {
        let result = bind_run(
            sqlx::query(
                "INSERT INTO runs (target, state, started_at, updated_at, completed_at, lease_owner, \
                 lease_expires_at, actor, old_key_id, new_key_id, grace_period_hours, grace_period_end, \
                 chains_updated, error_reason, error_message, schedule_id, old_version, new_version, staged_custody, \
                 staged_handle, rotation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            run,
        )?
        .execute(&mut *self.tx)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(self.run_error("inserting a run", run, e).await),
        }
    }

    async fn update_run(&mut self, run: &Run) -> Result<()> {
        let result = bind_run(
            sqlx::query(
                "UPDATE runs SET target = ?, state = ?, started_at = ?, updated_at = ?, completed_at = ?, \
                 lease_owner = ?, lease_expires_at = ?, actor = ?, old_key_id = ?, new_key_id = ?, \
                 grace_period_hours = ?, grace_period_end = ?, chains_updated = ?, error_reason = ?, \
                 error_message = ?, schedule_id = ?, old_version = ?, new_version = ?, staged_custody = ?, \
                 staged_handle = ? WHERE rotation_id = ?",
            ),
            run,
        )?
        .execute(&mut *self.tx)
        .await;
        match result {
            Ok(done) if done.rows_affected() == 0 => {
                Err(missing(format_args!("rotation {}", run.rotation_id)).with_rotation(run.rotation_id))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.run_error("updating a run", run, e).await),
        }
    }

    async fn insert_schedule(&mut self, s: &Schedule) -> Result<()> {
        bind_schedule(
            sqlx::query(
                "INSERT INTO schedules (target, due_at, state, created_at, actor, claimed_by, claim_expires_at, \
                 last_error, policy, attempts, offset_seconds, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            s,
        )
        .execute(&mut *self.tx)
        .await
        .map_err(|e| insert("inserting a schedule", &format!("schedule {}", s.id), e))?;
        Ok(())
    }

    async fn update_schedule(&mut self, s: &Schedule) -> Result<()> {
        let done = bind_schedule(
            sqlx::query(
                "UPDATE schedules SET target = ?, due_at = ?, state = ?, created_at = ?, actor = ?, claimed_by = ?, \
                 claim_expires_at = ?, last_error = ?, policy = ?, attempts = ?, offset_seconds = ? WHERE id = ?",
            ),
            s,
        )
        .execute(&mut *self.tx)
        .await
        .map_err(|e| backend("updating a schedule", e))?;
        if done.rows_affected() == 0 {
            return Err(missing(format_args!("schedule {}", s.id)));
        }
        Ok(())
    }

    async fn claim_due_schedules(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Schedule>> {
        let found = sqlx::query(
            "UPDATE schedules SET claimed_by = ?, claim_expires_at = ? WHERE id IN ( \
             SELECT id FROM schedules WHERE state = 'scheduled' AND due_at <= ? \
             AND (claimed_by IS NULL OR claim_expires_at IS NULL OR claim_expires_at <= ?) \
             ORDER BY due_at, id LIMIT ?) \
             RETURNING *",
        )
        .bind(owner)
        .bind(micros(until))
        .bind(micros(now))
        .bind(micros(now))
        .bind(rows::limit(limit))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|e| backend("claiming due schedules", e))?;
        let mut claimed = rows::all(&found, rows::schedule)?;
        claimed.sort_by_key(|s| (s.due_at, s.id));
        Ok(claimed)
    }

    async fn audit_head(&mut self) -> Result<Option<AuditHead>> {
        queries::audit_head(&mut *self.tx).await
    }

    async fn append_audit(&mut self, ev: &AuditEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (seq, id, at, event, target, rotation_id, actor, details, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(ev.seq)
        .bind(ev.id.to_string())
        .bind(micros(ev.at))
        .bind(&ev.event)
        .bind(&ev.target)
        .bind(ev.rotation_id.map(|id| id.to_string()))
        .bind(&ev.actor)
        .bind(json_text("audit details", &ev.details)?)
        .bind(&ev.prev_hash)
        .bind(&ev.hash)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| insert("appending an audit event", &format!("audit event {}", ev.seq), e))?;
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(ev.seq)
        .bind(&ev.hash)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| backend("moving the audit head", e))?;
        Ok(())
    }

    async fn get_keyring(&mut self, name: &KeyringName) -> Result<Option<Keyring>> {
        keyrings::get_keyring(&mut *self.tx, name).await
    }

    async fn insert_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        keyrings::insert_keyring(&mut self.tx, keyring).await
    }

    async fn update_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        keyrings::update_keyring(&mut self.tx, keyring).await
    }

    async fn get_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<Option<KeyVersion>> {
        keyrings::get_key_version(&mut *self.tx, keyring, version).await
    }

    async fn insert_key_version(&mut self, version: &KeyVersion) -> Result<()> {
        keyrings::insert_key_version(&mut self.tx, version).await
    }

    async fn update_key_version(&mut self, version: &KeyVersion) -> Result<()> {
        keyrings::update_key_version(&mut self.tx, version).await
    }

    async fn delete_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<()> {
        keyrings::delete_key_version(&mut self.tx, keyring, version).await
    }

    async fn add_usage(&mut self, keyring: &KeyringName, version: u32, count: u64) -> Result<()> {
        keyrings::add_usage(&mut self.tx, keyring, version, count).await
    }

    async fn count_values_at(&mut self, keyring: &KeyringName, version: u32) -> Result<u64> {
        keyrings::count_values_at(&mut self.tx, keyring, version).await
    }

    async fn put_values(&mut self, values: &[SealedValue]) -> Result<()> {
        keyrings::put_values(&mut self.tx, values).await
    }

    async fn reseal_values(
        &mut self,
        keyring: &KeyringName,
        to_version: u32,
        values: &[Reseal],
        at: Timestamp,
    ) -> Result<u64> {
        keyrings::reseal_values(&mut self.tx, keyring, to_version, values, at).await
    }

    async fn put_policy(&mut self, policy: &Policy) -> Result<()> {
        keyrings::put_policy(&mut self.tx, policy).await
    }

    async fn delete_policy(&mut self, name: &str) -> Result<()> {
        keyrings::delete_policy(&mut self.tx, name).await
    }

    async fn get_secret(&mut self, path: &str) -> Result<Option<Secret>> {
        secrets::get_secret(&mut *self.tx, path).await
    }

    async fn put_secret(&mut self, secret: &Secret) -> Result<()> {
        secrets::put_secret(&mut self.tx, secret).await
    }

    async fn list_secret_versions(&mut self, path: &str) -> Result<Vec<SecretVersion>> {
        secrets::list_secret_versions(&mut *self.tx, path).await
    }

    async fn put_secret_version(&mut self, version: &SecretVersion) -> Result<()> {
        secrets::put_secret_version(&mut self.tx, version).await
    }

    async fn enqueue_outbox(&mut self, messages: &[OutboxMessage]) -> Result<u64> {
        secrets::enqueue_outbox(&mut self.tx, messages).await
    }

    async fn claim_outbox(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        secrets::claim_outbox(&mut self.tx, now, owner, until, limit).await
    }

    async fn update_outbox(&mut self, message: &OutboxMessage) -> Result<()> {
        secrets::update_outbox(&mut self.tx, message).await
    }
}
