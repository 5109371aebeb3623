//! [`FaultyStore`]: a store wrapper that crashes at a chosen commit.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use rotation_core::audit::{AuditEvent, AuditHead};
use rotation_core::authority::{Authority, SigningKey};
use rotation_core::chain::TrustRecord;
use rotation_core::error::{Error, Result};
use rotation_core::ids::{AuthorityId, KeyId, RotationId, Target};
use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::keyring::{KeyVersion, Keyring, Reseal, SealedValue};
use rotation_core::policy::Policy;
use rotation_core::ports::Snapshot;
use rotation_core::ports::{AuditQuery, OutboxMessage, RecordQuery, StateStore, StoreTx};
use rotation_core::run::Run;
use rotation_core::schedule::Schedule;
use rotation_core::secret::{Secret, SecretVersion};
use rotation_core::time::Timestamp;

/// Counters shared by a [`FaultyStore`] and its transactions.
struct Faults {
    fail_at_commit: Option<usize>,
    /// `commit()` calls so far, failed ones included.
    attempts: AtomicUsize,
    /// Commits that reached the inner store successfully.
    commits: AtomicUsize,
    crashed: AtomicBool,
}

impl Faults {
    fn check(&self) -> Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            Err(Error::backend("injected fault: the store has crashed"))
        } else {
            Ok(())
        }
    }
}

/// Wraps a [`StateStore`] and simulates a crash: the `fail_at_commit`-th
/// call of [`StoreTx::commit`] (1-based, counted over all transactions of
/// this wrapper) fails with [`Reason::BackendUnavailable`] *without*
/// committing (the inner transaction is dropped, so it rolls back), and from
/// then on every method of the store and of any open transaction fails the
/// same way.
///
/// The inner store keeps exactly what was committed before the crash, so a
/// fresh engine on it must be able to finish or roll back the interrupted
/// work. With `fail_at_commit = None` the wrapper only counts commits.
///
/// [`Reason::BackendUnavailable`]: rotation_core::Reason::BackendUnavailable
pub struct FaultyStore {
    inner: Arc<dyn StateStore>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// Wraps `inner`; the `fail_at_commit`-th commit (1-based) crashes the
    /// store, or none with `None`.
    pub fn new(inner: Arc<dyn StateStore>, fail_at_commit: Option<usize>) -> Self {
        FaultyStore {
            inner,
            faults: Arc::new(Faults {
                fail_at_commit,
                attempts: AtomicUsize::new(0),
                commits: AtomicUsize::new(0),
                crashed: AtomicBool::new(false),
            }),
        }
    }

    /// Commits that succeeded so far.
    pub fn commits(&self) -> usize {
        self.faults.commits.load(Ordering::SeqCst)
    }

    /// Whether the injected fault has happened.
    pub fn crashed(&self) -> bool {
        self.faults.crashed.load(Ordering::SeqCst)
    }

    /// The wrapped store (unaffected by the crash).
    pub fn inner(&self) -> &Arc<dyn StateStore> {
        &self.inner
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("fail_at_commit", &self.faults.fail_at_commit)
            .field("commits", &self.commits())
            .field("crashed", &self.crashed())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl StateStore for FaultyStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        self.faults.check()?;
        let inner = self.inner.begin().await?;
        // The crash may have happened while this call waited for the lock.
        self.faults.check()?;
        Ok(Box::new(FaultyTx {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.faults.check()?;
        self.inner.get_meta(key).await
    }

    async fn get_secret(&self, path: &str) -> Result<Option<Secret>> {
        self.faults.check()?;
        self.inner.get_secret(path).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.faults.check()?;
        self.inner.query_audit(query).await
    }

    async fn list_secrets(&self) -> Result<Vec<Secret>> {
        self.faults.check()?;
        self.inner.list_secrets().await
    }

    async fn list_secret_versions(&self, path: &str) -> Result<Vec<SecretVersion>> {
        self.faults.check()?;
        self.inner.list_secret_versions(path).await
    }

    async fn list_outbox(&self, only_pending: bool, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.faults.check()?;
        self.inner.list_outbox(only_pending, limit).await
    }

    async fn get_authority(&self, id: &AuthorityId) -> Result<Option<Authority>> {
        self.faults.check()?;
        self.inner.get_authority(id).await
    }

    async fn list_authorities(&self) -> Result<Vec<Authority>> {
        self.faults.check()?;
        self.inner.list_authorities().await
    }

    async fn get_key(&self, key_id: &KeyId) -> Result<Option<SigningKey>> {
        self.faults.check()?;
        self.inner.get_key(key_id).await
    }

    async fn list_keys(&self, authority: &AuthorityId) -> Result<Vec<SigningKey>> {
        self.faults.check()?;
        self.inner.list_keys(authority).await
    }

    async fn list_records(&self, query: &RecordQuery) -> Result<Vec<TrustRecord>> {
        self.faults.check()?;
        self.inner.list_records(query).await
    }

    async fn count_records_of(&self, authority: &AuthorityId) -> Result<u64> {
        self.faults.check()?;
        self.inner.count_records_of(authority).await
    }

    async fn count_agents_resigned_by(&self, rotation: RotationId) -> Result<u64> {
        self.faults.check()?;
        self.inner.count_agents_resigned_by(rotation).await
    }

    async fn get_run(&self, id: RotationId) -> Result<Option<Run>> {
        self.faults.check()?;
        self.inner.get_run(id).await
    }

    async fn list_runs(&self, target: Option<&Target>, limit: usize) -> Result<Vec<Run>> {
        self.faults.check()?;
        self.inner.list_runs(target, limit).await
    }

    async fn list_active_runs(&self) -> Result<Vec<Run>> {
        self.faults.check()?;
        self.inner.list_active_runs().await
    }

    async fn list_schedules(&self, target: Option<&Target>, only_pending: bool) -> Result<Vec<Schedule>> {
        self.faults.check()?;
        self.inner.list_schedules(target, only_pending).await
    }

    async fn list_audit(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.faults.check()?;
        self.inner.list_audit(after_seq, limit).await
    }

    async fn list_audit_newest(&self, limit: usize) -> Result<Vec<AuditEvent>> {
        self.faults.check()?;
        self.inner.list_audit_newest(limit).await
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.faults.check()?;
        self.inner.audit_head().await
    }
    async fn list_audit_for_target(&self, target: &str, limit: usize) -> Result<Vec<AuditEvent>> {
        self.faults.check()?;
        self.inner.list_audit_for_target(target, limit).await
    }

    async fn get_keyring(&self, name: &KeyringName) -> Result<Option<Keyring>> {
        self.faults.check()?;
        self.inner.get_keyring(name).await
    }

    async fn list_keyrings(&self) -> Result<Vec<Keyring>> {
        self.faults.check()?;
        self.inner.list_keyrings().await
    }

    async fn list_key_versions(&self, keyring: &KeyringName) -> Result<Vec<KeyVersion>> {
        self.faults.check()?;
        self.inner.list_key_versions(keyring).await
    }

    async fn get_value(&self, keyring: &KeyringName, id: &ValueId) -> Result<Option<SealedValue>> {
        self.faults.check()?;
        self.inner.get_value(keyring, id).await
    }

    async fn list_values(
        &self,
        keyring: &KeyringName,
        below_version: Option<u32>,
        after: Option<&ValueId>,
        limit: usize,
    ) -> Result<Vec<SealedValue>> {
        self.faults.check()?;
        self.inner.list_values(keyring, below_version, after, limit).await
    }

    async fn count_values_by_version(&self, keyring: &KeyringName) -> Result<Vec<(u32, u64)>> {
        self.faults.check()?;
        self.inner.count_values_by_version(keyring).await
    }

    async fn get_policy(&self, name: &str) -> Result<Option<Policy>> {
        self.faults.check()?;
        self.inner.get_policy(name).await
    }

    async fn list_policies(&self) -> Result<Vec<Policy>> {
        self.faults.check()?;
        self.inner.list_policies().await
    }
    async fn snapshot(&self) -> Result<Snapshot> {
        self.faults.check()?;
        self.inner.snapshot().await
    }
}

/// A transaction of a [`FaultyStore`].
struct FaultyTx {
    inner: Box<dyn StoreTx>,
    faults: Arc<Faults>,
}

#[async_trait]
impl StoreTx for FaultyTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        let FaultyTx { inner, faults } = *self;
        faults.check()?;
        let attempt = faults.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if faults.fail_at_commit == Some(attempt) {
            faults.crashed.store(true, Ordering::SeqCst);
            drop(inner);
            return Err(Error::backend(format!("injected fault at commit {attempt}")));
        }
        inner.commit().await?;
        faults.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.faults.check()?;
        self.inner.put_meta(key, value).await
    }

    async fn get_authority(&mut self, id: &AuthorityId) -> Result<Option<Authority>> {
        self.faults.check()?;
        self.inner.get_authority(id).await
    }

    async fn insert_authority(&mut self, authority: &Authority) -> Result<()> {
        self.faults.check()?;
        self.inner.insert_authority(authority).await
    }

    async fn update_authority(&mut self, authority: &Authority) -> Result<()> {
        self.faults.check()?;
        self.inner.update_authority(authority).await
    }

    async fn get_key(&mut self, key_id: &KeyId) -> Result<Option<SigningKey>> {
        self.faults.check()?;
        self.inner.get_key(key_id).await
    }

    async fn insert_key(&mut self, key: &SigningKey) -> Result<()> {
        self.faults.check()?;
        self.inner.insert_key(key).await
    }

    async fn update_key(&mut self, key: &SigningKey) -> Result<()> {
        self.faults.check()?;
        self.inner.update_key(key).await
    }

    async fn delete_key(&mut self, key_id: &KeyId) -> Result<()> {
        self.faults.check()?;
        self.inner.delete_key(key_id).await
    }

    async fn insert_records(&mut self, records: &[TrustRecord]) -> Result<()> {
        self.faults.check()?;
        self.inner.insert_records(records).await
    }

    async fn resign_records(&mut self, expected_key: &[KeyId], records: &[TrustRecord]) -> Result<u64> {
        self.faults.check()?;
        self.inner.resign_records(expected_key, records).await
    }

    async fn get_run(&mut self, id: RotationId) -> Result<Option<Run>> {
        self.faults.check()?;
        self.inner.get_run(id).await
    }

    async fn active_run(&mut self, target: &Target) -> Result<Option<Run>> {
        self.faults.check()?;
        self.inner.active_run(target).await
    }

    async fn insert_run(&mut self, run: &Run) -> Result<()> {
        self.faults.check()?;
        self.inner.insert_run(run).await
    }

    async fn update_run(&mut self, run: &Run) -> Result<()> {
        self.faults.check()?;
        self.inner.update_run(run).await
    }

    async fn insert_schedule(&mut self, schedule: &Schedule) -> Result<()> {
        self.faults.check()?;
        self.inner.insert_schedule(schedule).await
    }

    async fn update_schedule(&mut self, schedule: &Schedule) -> Result<()> {
        self.faults.check()?;
        self.inner.update_schedule(schedule).await
    }

    async fn claim_due_schedules(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Schedule>> {
        self.faults.check()?;
        self.inner.claim_due_schedules(now, owner, until, limit).await
    }

    async fn audit_head(&mut self) -> Result<Option<AuditHead>> {
        self.faults.check()?;
        self.inner.audit_head().await
    }

    async fn append_audit(&mut self, event: &AuditEvent) -> Result<()> {
        self.faults.check()?;
        self.inner.append_audit(event).await
    }
    async fn get_keyring(&mut self, name: &KeyringName) -> Result<Option<Keyring>> {
        self.faults.check()?;
        self.inner.get_keyring(name).await
    }

    async fn insert_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        self.faults.check()?;
        self.inner.insert_keyring(keyring).await
    }

    async fn update_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        self.faults.check()?;
        self.inner.update_keyring(keyring).await
    }

    async fn get_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<Option<KeyVersion>> {
        self.faults.check()?;
        self.inner.get_key_version(keyring, version).await
    }

    async fn insert_key_version(&mut self, version: &KeyVersion) -> Result<()> {
        self.faults.check()?;
        self.inner.insert_key_version(version).await
    }

    async fn update_key_version(&mut self, version: &KeyVersion) -> Result<()> {
        self.faults.check()?;
        self.inner.update_key_version(version).await
    }

    async fn delete_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<()> {
        self.faults.check()?;
        self.inner.delete_key_version(keyring, version).await
    }

    async fn add_usage(&mut self, keyring: &KeyringName, version: u32, count: u64) -> Result<()> {
        self.faults.check()?;
        self.inner.add_usage(keyring, version, count).await
    }

    async fn count_values_at(&mut self, keyring: &KeyringName, version: u32) -> Result<u64> {
        self.faults.check()?;
        self.inner.count_values_at(keyring, version).await
    }

    async fn put_values(&mut self, values: &[SealedValue]) -> Result<()> {
        self.faults.check()?;
        self.inner.put_values(values).await
    }

    async fn reseal_values(
        &mut self,
        keyring: &KeyringName,
        to_version: u32,
        values: &[Reseal],
        at: Timestamp,
    ) -> Result<u64> {
        self.faults.check()?;
        self.inner.reseal_values(keyring, to_version, values, at).await
    }

    async fn put_policy(&mut self, policy: &Policy) -> Result<()> {
        self.faults.check()?;
        self.inner.put_policy(policy).await
    }

    async fn get_secret(&mut self, path: &str) -> Result<Option<Secret>> {
        self.faults.check()?;
        self.inner.get_secret(path).await
    }

    async fn put_secret(&mut self, secret: &Secret) -> Result<()> {
        self.faults.check()?;
        self.inner.put_secret(secret).await
    }

    async fn list_secret_versions(&mut self, path: &str) -> Result<Vec<SecretVersion>> {
        self.faults.check()?;
        self.inner.list_secret_versions(path).await
    }

    async fn put_secret_version(&mut self, version: &SecretVersion) -> Result<()> {
        self.faults.check()?;
        self.inner.put_secret_version(version).await
    }

    async fn enqueue_outbox(&mut self, messages: &[OutboxMessage]) -> Result<u64> {
        self.faults.check()?;
        self.inner.enqueue_outbox(messages).await
    }

    async fn claim_outbox(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        self.faults.check()?;
        self.inner.claim_outbox(now, owner, until, limit).await
    }

    async fn update_outbox(&mut self, message: &OutboxMessage) -> Result<()> {
        self.faults.check()?;
        self.inner.update_outbox(message).await
    }

    async fn delete_policy(&mut self, name: &str) -> Result<()> {
        self.faults.check()?;
        self.inner.delete_policy(name).await
    }
    async fn delete_meta(&mut self, key: &str) -> Result<()> {
        self.faults.check()?;
        self.inner.delete_meta(key).await
    }

    async fn clear_all(&mut self) -> Result<()> {
        self.faults.check()?;
        self.inner.clear_all().await
    }
}
