//! [`StateStore`] for [`PgStore`]: reads on the pool, writes through
//! [`PgTx`].

use async_trait::async_trait;
use rotation_core::audit::{AuditEvent, AuditHead};
use rotation_core::authority::{Authority, SigningKey};
use rotation_core::chain::TrustRecord;
use rotation_core::ids::{AuthorityId, KeyId, RotationId, Target};
use rotation_core::ports::{AuditQuery, RecordQuery, StateStore, StoreTx};
use rotation_core::run::Run;
use rotation_core::schedule::Schedule;
use rotation_core::{Error, Result};
use sqlx::Row;

use crate::connect::{PgStore, WRITER_LOCK};
use crate::error::{backend, is_lock_timeout};
use crate::tx::PgTx;
use crate::{keyrings, queries, rows, secrets};
use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::keyring::{KeyVersion, Keyring, SealedValue};
use rotation_core::policy::Policy;
use rotation_core::ports::OutboxMessage;
use rotation_core::secret::{Secret, SecretVersion};

#[async_trait]
impl StateStore for PgStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        let timeout = self.write_lock_timeout;
        let busy = || {
            Error::backend(format!(
                "PostgreSQL store: another write transaction has held the store for more than {:.1}s",
                timeout.as_secs_f64()
            ))
        };
        // Writers of this process queue here first, so waiting ones hold no
        // pooled connection.
        let writer = tokio::time::timeout(timeout, self.writer.clone().lock_owned())
            .await
            .map_err(|_| busy())?;
        // Begin with a bound on lock waits, then take the write lock. A
        // failure drops `tx`, which rolls back before the connection is reused.
        let mut tx = self
            .pool
            .begin_with(sqlx::AssertSqlSafe(self.begin_sql.clone()))
            .await
            .map_err(|e| backend("beginning a write transaction", e))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITER_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_lock_timeout(&e) {
                    busy()
                } else {
                    backend("taking the write lock", e)
                }
            })?;
        Ok(Box::new(PgTx::new(tx, writer)))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading metadata", e))?;
        row.map(|r| {
            r.try_get::<Vec<u8>, _>("value")
                .map_err(|e| crate::error::tampered("meta", key, "value", e))
        })
        .transpose()
    }

    async fn get_authority(&self, id: &AuthorityId) -> Result<Option<Authority>> {
        queries::get_authority(&self.pool, id).await
    }

    async fn list_authorities(&self) -> Result<Vec<Authority>> {
        let found = sqlx::query("SELECT * FROM authorities ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing authorities", e))?;
        rows::all(&found, rows::authority)
    }

    async fn get_key(&self, key_id: &KeyId) -> Result<Option<SigningKey>> {
        queries::get_key(&self.pool, key_id).await
    }

    async fn list_keys(&self, authority: &AuthorityId) -> Result<Vec<SigningKey>> {
        let found = sqlx::query("SELECT * FROM signing_keys WHERE authority_id = $1 ORDER BY created_at, key_id")
            .bind(authority.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing signing keys", e))?;
        rows::all(&found, rows::signing_key)
    }

    async fn list_records(&self, query: &RecordQuery) -> Result<Vec<TrustRecord>> {
        queries::list_records(&self.pool, query).await
    }

    async fn count_records_of(&self, authority: &AuthorityId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trust_records WHERE authority_id = $1")
            .bind(authority.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("counting trust records", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn count_agents_resigned_by(&self, rotation: RotationId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT agent_id) FROM trust_records WHERE resigned_by = $1")
            .bind(rotation.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("counting re-signed agents", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn get_run(&self, id: RotationId) -> Result<Option<Run>> {
        queries::get_run(&self.pool, id).await
    }

    async fn list_runs(&self, target: Option<&Target>, limit: usize) -> Result<Vec<Run>> {
        let q = match target {
            None => sqlx::query("SELECT * FROM runs ORDER BY started_at DESC, rotation_id DESC LIMIT $1")
                .bind(rows::limit(limit)),
            Some(t) => {
                sqlx::query("SELECT * FROM runs WHERE target = $1 ORDER BY started_at DESC, rotation_id DESC LIMIT $2")
                    .bind(t.to_string())
                    .bind(rows::limit(limit))
            }
        };
        let found = q.fetch_all(&self.pool).await.map_err(|e| backend("listing runs", e))?;
        rows::all(&found, rows::run)
    }

    async fn list_active_runs(&self) -> Result<Vec<Run>> {
        let found = sqlx::query(
            "SELECT * FROM runs WHERE state NOT IN ('completed', 'rolled_back', 'failed') \
             ORDER BY started_at, rotation_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("listing active runs", e))?;
        rows::all(&found, rows::run)
    }

    async fn list_schedules(&self, target: Option<&Target>, only_pending: bool) -> Result<Vec<Schedule>> {
        queries::list_schedules(&self.pool, target, only_pending).await
    }

    async fn list_audit(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditEvent>> {
        queries::list_audit(&self.pool, after_seq, limit).await
    }

    async fn list_audit_newest(&self, limit: usize) -> Result<Vec<AuditEvent>> {
        let found = sqlx::query("SELECT * FROM audit_events ORDER BY seq DESC LIMIT $1")
            .bind(rows::limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing audit events", e))?;
        rows::all(&found, rows::audit_event)
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        queries::audit_head(&self.pool, false).await
    }
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let found = sqlx::query(
            "SELECT * FROM audit_events WHERE ($1::bigint IS NULL OR seq < $1) AND ($2::text IS NULL OR target = $2) \
             AND ($3::text IS NULL OR event = $3) AND ($4::text IS NULL OR rotation_id = $4) \
             AND ($5::text IS NULL OR actor = $5) AND ($6::bigint IS NULL OR at >= $6) \
             AND ($7::bigint IS NULL OR at < $7) ORDER BY seq DESC LIMIT $8",
        )
        .bind(q.before_seq)
        .bind(q.target.as_deref())
        .bind(q.event.as_deref())
        .bind(q.rotation_id.map(|r| r.to_string()))
        .bind(q.actor.as_deref())
        .bind(q.since.map(rows::micros))
        .bind(q.until.map(rows::micros))
        .bind(rows::limit(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("listing audit events", e))?;
        rows::all(&found, rows::audit_event)
    }

    async fn list_audit_for_target(&self, target: &str, limit: usize) -> Result<Vec<AuditEvent>> {
        keyrings::list_audit_for_target(&self.pool, target, limit).await
    }

    async fn get_keyring(&self, name: &KeyringName) -> Result<Option<Keyring>> {
        keyrings::get_keyring(&self.pool, name).await
    }

    async fn list_keyrings(&self) -> Result<Vec<Keyring>> {
        keyrings::list_keyrings(&self.pool).await
    }

    async fn list_key_versions(&self, keyring: &KeyringName) -> Result<Vec<KeyVersion>> {
        keyrings::list_key_versions(&self.pool, keyring).await
    }

    async fn get_value(&self, keyring: &KeyringName, id: &ValueId) -> Result<Option<SealedValue>> {
        keyrings::get_value(&self.pool, keyring, id).await
    }

    async fn list_values(
        &self,
        keyring: &KeyringName,
        below_version: Option<u32>,
        after: Option<&ValueId>,
        limit: usize,
    ) -> Result<Vec<SealedValue>> {
        keyrings::list_values(&self.pool, keyring, below_version, after, limit).await
    }

    async fn count_values_by_version(&self, keyring: &KeyringName) -> Result<Vec<(u32, u64)>> {
        keyrings::count_values_by_version(&self.pool, keyring).await
    }

    async fn get_policy(&self, name: &str) -> Result<Option<Policy>> {
        keyrings::get_policy(&self.pool, name).await
    }

    async fn list_policies(&self) -> Result<Vec<Policy>> {
        keyrings::list_policies(&self.pool).await
    }

    async fn get_secret(&self, path: &str) -> Result<Option<Secret>> {
        secrets::get_secret(&self.pool, path).await
    }

    async fn list_secrets(&self) -> Result<Vec<Secret>> {
        secrets::list_secrets(&self.pool).await
    }

    async fn list_secret_versions(&self, path: &str) -> Result<Vec<SecretVersion>> {
        secrets::list_secret_versions(&self.pool, path).await
    }

    async fn list_outbox(&self, only_pending: bool, limit: usize) -> Result<Vec<OutboxMessage>> {
        secrets::list_outbox(&self.pool, only_pending, limit).await
    }

    async fn snapshot(&self) -> Result<rotation_core::ports::Snapshot> {
        crate::snapshot::snapshot(&self.pool).await
    }
}
