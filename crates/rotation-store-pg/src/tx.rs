//! [`StoreTx`] on one PostgreSQL transaction holding the store's write lock.

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
use sqlx::{Connection, Postgres, Transaction};
use tokio::sync::OwnedMutexGuard;

use crate::binds::{Query, bind_authority, bind_key, bind_run, bind_schedule, json_text};
use crate::error::{
    ONE_ACTIVE_RUN, backend, insert, is_aborted_transaction, is_unique_violation, is_unique_violation_of, missing,
};
use crate::rows::{self, micros};
use crate::{keyrings, queries, secrets};
use rotation_core::ids::KeyringName;
use rotation_core::keyring::{KeyVersion, Keyring, Reseal, SealedValue};
use rotation_core::policy::Policy;
use rotation_core::ports::OutboxMessage;
use rotation_core::secret::{Secret, SecretVersion};

/// Rows per `UNNEST` statement of a bulk write (one array per column).
pub(crate) const BULK_CHUNK: usize = 10_000;

/// A write transaction of a [`crate::PgStore`]. Dropping it rolls back
/// (and so releases the write lock).
pub(crate) struct PgTx {
    // Declared first so it is dropped (rolled back) before the writer lock is released.
    tx: Transaction<'static, Postgres>,
    _writer: OwnedMutexGuard<()>,
}

impl PgTx {
    /// Wraps an open transaction holding the write lock, and the
    /// process-wide writer lock it queued on.
    pub(crate) fn new(tx: Transaction<'static, Postgres>, writer: OwnedMutexGuard<()>) -> Self {
        PgTx { tx, _writer: writer }
    }
}

/// The error for a run that would be a second non-terminal run of its target.
fn concurrent(run: &Run, active: Option<Run>) -> Error {
    let other = active.map(|a| format!(" (run {})", a.rotation_id)).unwrap_or_default();
    let mut err = Error::new(
        Reason::ConcurrentRotation,
        format!("another rotation of {} is in progress{other}", run.target),
    )
    .with_rotation(run.rotation_id);
    if let Target::Authority(id) = &run.target {
        err = err.with_authority(id);
    }
    err
}

impl PgTx {
    /// Runs `query` on a savepoint, so a failed statement (a constraint
    /// violation) leaves the transaction usable, as in the SQLite store.
    async fn on_savepoint(&mut self, op: &str, query: Query<'_>) -> Result<std::result::Result<u64, sqlx::Error>> {
        let mut savepoint = self.tx.begin().await.map_err(|e| backend(op, e))?;
        match query.execute(&mut *savepoint).await {
            Ok(done) => {
                savepoint.commit().await.map_err(|e| backend(op, e))?;
                Ok(Ok(done.rows_affected()))
            }
            Err(err) => {
                savepoint.rollback().await.map_err(|e| backend(op, e))?;
                Ok(Err(err))
            }
        }
    }

    /// Maps a failed insert or update of `run`.
    async fn run_error(&mut self, op: &str, run: &Run, err: sqlx::Error) -> Error {
        if is_unique_violation_of(&err, ONE_ACTIVE_RUN) {
            // The statement ran on a savepoint: the transaction is still usable.
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

/// The columns of a batch of trust records, one array per column, for `UNNEST`.
#[derive(Default)]
struct RecordColumns {
    id: Vec<String>,
    agent_id: Vec<String>,
    authority_id: Vec<String>,
    kind: Vec<String>,
    body: Vec<String>,
    key_id: Vec<String>,
    signature: Vec<Vec<u8>>,
    issued_at: Vec<i64>,
    signed_at: Vec<i64>,
    resigned_by: Vec<Option<String>>,
}

impl RecordColumns {
    fn of(records: &[TrustRecord]) -> Result<Self> {
        let mut c = RecordColumns::default();
        for r in records {
            c.id.push(r.id.to_string());
            c.agent_id.push(r.agent_id.as_str().to_owned());
            c.authority_id.push(r.authority_id.as_str().to_owned());
            c.kind.push(r.kind.as_str().to_owned());
            c.body.push(json_text("record body", &r.body)?);
            c.key_id.push(r.key_id.as_str().to_owned());
            c.signature.push(r.signature.clone());
            c.issued_at.push(micros(r.issued_at));
            c.signed_at.push(micros(r.signed_at));
            c.resigned_by.push(r.resigned_by.map(|id| id.to_string()));
        }
        Ok(c)
    }
}

#[async_trait]
impl StoreTx for PgTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        let PgTx { mut tx, _writer } = *self;
        // PostgreSQL answers COMMIT of a transaction an earlier statement
        // aborted with a silent ROLLBACK: ask first, and refuse to report
        // success for writes that were dropped.
        if let Err(e) = sqlx::query("SELECT 1").execute(&mut *tx).await {
            if is_aborted_transaction(&e) {
                return Err(Error::backend(
                    "PostgreSQL store: the transaction was aborted by an earlier failed statement; \
                     nothing was committed",
                ));
            }
            return Err(backend("committing", e));
        }
        tx.commit().await.map_err(|e| backend("committing", e))
    }

    async fn delete_meta(&mut self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = $1")
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
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
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
        const OP: &str = "inserting an authority";
        let query = bind_authority(
            sqlx::query(
                "INSERT INTO authorities (name, rotation_period_days, grace_period_hours, current_key_id, \
                 created_at, last_rotated_at, prepublish_hours, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            ),
            a,
        );
        match self.on_savepoint(OP, query).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(insert(OP, &format!("authority {}", a.id), e).with_authority(&a.id)),
        }
    }

    async fn update_authority(&mut self, a: &Authority) -> Result<()> {
        let done = bind_authority(
            sqlx::query(
                "UPDATE authorities SET name = $1, rotation_period_days = $2, grace_period_hours = $3, \
                 current_key_id = $4, created_at = $5, last_rotated_at = $6, prepublish_hours = $7 WHERE id = $8",
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
        const OP: &str = "inserting a signing key";
        let query = bind_key(
            sqlx::query(
                "INSERT INTO signing_keys (authority_id, algorithm, public_key, state, created_at, activated_at, \
                 rotated_at, grace_until, revoked_at, revocation_reason, created_by, custody, custody_handle, key_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            ),
            k,
        );
        match self.on_savepoint(OP, query).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(insert(OP, &format!("key {}", k.key_id), e).with_authority(&k.authority_id)),
        }
    }

    async fn update_key(&mut self, k: &SigningKey) -> Result<()> {
        let done = bind_key(
            sqlx::query(
                "UPDATE signing_keys SET authority_id = $1, algorithm = $2, public_key = $3, state = $4, \
                 created_at = $5, activated_at = $6, rotated_at = $7, grace_until = $8, revoked_at = $9, \
                 revocation_reason = $10, created_by = $11, custody = $12, custody_handle = $13 WHERE key_id = $14",
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
        sqlx::query("DELETE FROM signing_keys WHERE key_id = $1")
            .bind(key_id.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(|e| backend("deleting a signing key", e))?;
        Ok(())
    }

    async fn insert_records(&mut self, records: &[TrustRecord]) -> Result<()> {
        const OP: &str = "inserting trust-chain records";
        if records.is_empty() {
            return Ok(());
        }
        // A savepoint makes the batch all-or-nothing and keeps the
        // transaction usable if it fails, as in the SQLite store.
        let mut batch = self.tx.begin().await.map_err(|e| backend(OP, e))?;
        for chunk in records.chunks(BULK_CHUNK) {
            let c = RecordColumns::of(chunk)?;
            let result = sqlx::query(
                "INSERT INTO trust_records (id, agent_id, authority_id, kind, body, key_id, signature, issued_at, \
                 signed_at, resigned_by) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::bytea[], $8::int8[], $9::int8[], $10::text[])",
            )
            .bind(c.id)
            .bind(c.agent_id)
            .bind(c.authority_id)
            .bind(c.kind)
            .bind(c.body)
            .bind(c.key_id)
            .bind(c.signature)
            .bind(c.issued_at)
            .bind(c.signed_at)
            .bind(c.resigned_by)
            .execute(&mut *batch)
            .await;
            if let Err(e) = result {
                let err = insert(OP, "a trust-chain record with one of these ids", e);
                batch.rollback().await.map_err(|e| backend(OP, e))?;
                return Err(err);
            }
        }
        batch.commit().await.map_err(|e| backend(OP, e))
    }

    async fn resign_records(&mut self, expected_keys: &[KeyId], records: &[TrustRecord]) -> Result<u64> {
        if expected_keys.is_empty() || records.is_empty() {
            return Ok(0);
        }
        let expected: Vec<String> = expected_keys.iter().map(|k| k.as_str().to_owned()).collect();
        let mut replaced = 0;
        for chunk in records.chunks(BULK_CHUNK) {
            let c = RecordColumns::of(chunk)?;
            replaced += sqlx::query(
                "UPDATE trust_records AS t SET body = u.body, key_id = u.key_id, signature = u.signature, \
                 signed_at = u.signed_at, resigned_by = u.resigned_by \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int8[], $6::text[]) \
                 AS u(id, body, key_id, signature, signed_at, resigned_by) \
                 WHERE t.id = u.id AND t.key_id = ANY($7::text[])",
            )
            .bind(c.id)
            .bind(c.body)
            .bind(c.key_id)
            .bind(c.signature)
            .bind(c.signed_at)
            .bind(c.resigned_by)
            .bind(expected.clone())
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
        const OP: &str = "inserting a run";
        let query = bind_run(
            sqlx::query(
                "INSERT INTO runs (target, state, started_at, updated_at, completed_at, lease_owner, \
                 lease_expires_at, actor, old_key_id, new_key_id, grace_period_hours, grace_period_end, \
                 chains_updated, error_reason, error_message, schedule_id, old_version, new_version, staged_custody, \
                 staged_handle, rotation_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
            ),
            run,
        )?;
        match self.on_savepoint(OP, query).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(self.run_error(OP, run, e).await),
        }
    }

    async fn update_run(&mut self, run: &Run) -> Result<()> {
        const OP: &str = "updating a run";
        let query = bind_run(
            sqlx::query(
                "UPDATE runs SET target = $1, state = $2, started_at = $3, updated_at = $4, completed_at = $5, \
                 lease_owner = $6, lease_expires_at = $7, actor = $8, old_key_id = $9, new_key_id = $10, \
                 grace_period_hours = $11, grace_period_end = $12, chains_updated = $13, error_reason = $14, \
                 error_message = $15, schedule_id = $16, old_version = $17, new_version = $18, staged_custody = $19, \
                 staged_handle = $20 WHERE rotation_id = $21",
            ),
            run,
        )?;
        match self.on_savepoint(OP, query).await? {
            Ok(0) => Err(missing(format_args!("rotation {}", run.rotation_id)).with_rotation(run.rotation_id)),
            Ok(_) => Ok(()),
            Err(e) => Err(self.run_error(OP, run, e).await),
        }
    }

    async fn insert_schedule(&mut self, s: &Schedule) -> Result<()> {
        const OP: &str = "inserting a schedule";
        let query = bind_schedule(
            sqlx::query(
                "INSERT INTO schedules (target, due_at, state, created_at, actor, claimed_by, claim_expires_at, \
                 last_error, policy, attempts, offset_seconds, id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            ),
            s,
        );
        match self.on_savepoint(OP, query).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(insert(OP, &format!("schedule {}", s.id), e)),
        }
    }

    async fn update_schedule(&mut self, s: &Schedule) -> Result<()> {
        let done = bind_schedule(
            sqlx::query(
                "UPDATE schedules SET target = $1, due_at = $2, state = $3, created_at = $4, actor = $5, \
                 claimed_by = $6, claim_expires_at = $7, last_error = $8, policy = $9, attempts = $10, \
                 offset_seconds = $11 WHERE id = $12",
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
        // Rows another transaction has locked (is claiming) are skipped, not
        // waited for: concurrent claimers get disjoint sets.
        let found = sqlx::query(
            "WITH due AS ( \
                 SELECT id FROM schedules WHERE state = 'scheduled' AND due_at <= $3 \
                 AND (claimed_by IS NULL OR claim_expires_at IS NULL OR claim_expires_at <= $3) \
                 ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE schedules AS s SET claimed_by = $1, claim_expires_at = $2 FROM due WHERE s.id = due.id \
             RETURNING s.*",
        )
        .bind(owner)
        .bind(micros(until))
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
        // Locks the head row until commit: appenders in other transactions
        // queue here, so the hash chain stays linear.
        queries::audit_head(&mut *self.tx, true).await
    }

    async fn append_audit(&mut self, ev: &AuditEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (seq, id, at, event, target, rotation_id, actor, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        let moved = sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(ev.seq)
            .bind(&ev.hash)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| backend("moving the audit head", e))?;
        if moved.rows_affected() == 0 {
            return Err(crate::error::tampered(
                "audit_head",
                "1",
                "seq",
                "the head row is missing",
            ));
        }
        Ok(())
    }
    async fn get_keyring(&mut self, name: &KeyringName) -> Result<Option<Keyring>> {
        keyrings::get_keyring(&mut *self.tx, name).await
    }

    async fn insert_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        const OP: &str = "inserting a keyring";
        match self.on_savepoint(OP, keyrings::insert_keyring(keyring)).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(insert(OP, &format!("keyring {}", keyring.name), e)),
        }
    }

    async fn update_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        keyrings::update_keyring(&mut self.tx, keyring).await
    }

    async fn get_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<Option<KeyVersion>> {
        keyrings::get_key_version(&mut *self.tx, keyring, version).await
    }

    async fn insert_key_version(&mut self, version: &KeyVersion) -> Result<()> {
        const OP: &str = "inserting a key version";
        match self.on_savepoint(OP, keyrings::insert_key_version(version)?).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(insert(
                OP,
                &format!("version {} of keyring {}", version.version, version.keyring),
                e,
            )),
        }
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
