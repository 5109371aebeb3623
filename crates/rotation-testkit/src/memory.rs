//! [`MemoryStore`]: a complete [`StateStore`] kept in memory, with the
//! semantics of a SQL store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use rotation_core::audit::{AuditEvent, AuditHead};
use rotation_core::authority::{Authority, SigningKey};
use rotation_core::chain::RecordKind;
use rotation_core::chain::TrustRecord;
use rotation_core::error::{Error, Reason, Result};
use rotation_core::ids::{AgentId, AuthorityId, KeyId, KeyringName, RotationId, Target, ValueId};
use rotation_core::keyring::{KeyVersion, Keyring, Reseal, SealedValue};
use rotation_core::policy::Policy;
use rotation_core::ports::{AuditQuery, OutboxMessage, RecordQuery, Snapshot, StateStore, StoreTx};
use rotation_core::run::Run;
use rotation_core::schedule::{Schedule, ScheduleState};
use rotation_core::secret::{Secret, SecretVersion};
use rotation_core::time::Timestamp;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

/// The whole state. Every table sits behind an `Arc`, so a transaction's
/// copy is cheap and a table is only copied when the transaction first
/// writes to it (`Arc::make_mut`).
#[derive(Clone, Default)]
struct State {
    meta: Arc<BTreeMap<String, Vec<u8>>>,
    authorities: Arc<BTreeMap<AuthorityId, Authority>>,
    keys: Arc<BTreeMap<KeyId, SigningKey>>,
    /// Ordered by `(agent_id, id)`, the keyset-paging order.
    records: Arc<BTreeMap<(AgentId, Uuid), TrustRecord>>,
    /// Record id -> agent (record ids are unique across agents).
    record_agents: Arc<HashMap<Uuid, AgentId>>,
    runs: Arc<BTreeMap<RotationId, Run>>,
    schedules: Arc<BTreeMap<RotationId, Schedule>>,
    audit: Arc<BTreeMap<i64, AuditEvent>>,
    head: Option<AuditHead>,
    keyrings: Arc<BTreeMap<KeyringName, Keyring>>,
    versions: Arc<BTreeMap<(KeyringName, u32), KeyVersion>>,
    /// Ordered by `(keyring, id)`, the keyset-paging order.
    values: Arc<BTreeMap<(KeyringName, ValueId), SealedValue>>,
    policies: Arc<BTreeMap<String, Policy>>,
    secrets: Arc<BTreeMap<String, Secret>>,
    secret_versions: Arc<BTreeMap<(String, u32), SecretVersion>>,
    outbox: Arc<BTreeMap<Uuid, OutboxMessage>>,
}

impl State {
    fn list_secret_versions(&self, path: &str) -> Vec<SecretVersion> {
        self.secret_versions
            .range((path.to_owned(), 0)..=(path.to_owned(), u32::MAX))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn list_outbox(&self, only_pending: bool) -> Vec<OutboxMessage> {
        let mut all: Vec<OutboxMessage> = self
            .outbox
            .values()
            .filter(|m| !only_pending || m.delivered_at.is_none())
            .cloned()
            .collect();
        all.sort_by_key(|m| (m.created_at, m.id));
        all
    }

    fn get_authority(&self, id: &AuthorityId) -> Option<Authority> {
        self.authorities.get(id).cloned()
    }

    fn get_key(&self, key_id: &KeyId) -> Option<SigningKey> {
        self.keys.get(key_id).cloned()
    }

    fn list_keys(&self, authority: &AuthorityId) -> Vec<SigningKey> {
        let mut keys: Vec<SigningKey> = self
            .keys
            .values()
            .filter(|k| &k.authority_id == authority)
            .cloned()
            .collect();
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.key_id.cmp(&b.key_id)));
        keys
    }

    fn list_records(&self, query: &RecordQuery) -> Vec<TrustRecord> {
        let lower = match &query.after {
            Some((agent, id)) => Bound::Excluded((agent.clone(), *id)),
            None => Bound::Unbounded,
        };
        self.records
            .range((lower, Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| query.agent.as_ref().is_none_or(|a| &r.agent_id == a))
            .filter(|r| query.authority.as_ref().is_none_or(|a| &r.authority_id == a))
            .filter(|r| query.key_ids.as_ref().is_none_or(|keys| keys.contains(&r.key_id)))
            .take(query.limit)
            .cloned()
            .collect()
    }

    fn count_agents_resigned_by(&self, rotation: RotationId) -> u64 {
        let agents: BTreeSet<&AgentId> = self
            .records
            .values()
            .filter(|r| r.resigned_by == Some(rotation))
            .map(|r| &r.agent_id)
            .collect();
        agents.len() as u64
    }

    fn get_run(&self, id: RotationId) -> Option<Run> {
        self.runs.get(&id).cloned()
    }

    fn active_run(&self, target: &Target) -> Option<Run> {
        self.runs
            .values()
            .find(|r| &r.target == target && !r.state.is_terminal())
            .cloned()
    }

    fn list_runs(&self, target: Option<&Target>, limit: usize) -> Vec<Run> {
        let mut runs: Vec<&Run> = self
            .runs
            .values()
            .filter(|r| target.is_none_or(|t| &r.target == t))
            .collect();
        runs.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.rotation_id.cmp(&a.rotation_id))
        });
        runs.into_iter().take(limit).cloned().collect()
    }

    fn list_active_runs(&self) -> Vec<Run> {
        let mut runs: Vec<&Run> = self.runs.values().filter(|r| !r.state.is_terminal()).collect();
        runs.sort_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then_with(|| a.rotation_id.cmp(&b.rotation_id))
        });
        runs.into_iter().cloned().collect()
    }

    fn list_schedules(&self, target: Option<&Target>, only_pending: bool) -> Vec<Schedule> {
        let mut schedules: Vec<&Schedule> = self
            .schedules
            .values()
            .filter(|s| target.is_none_or(|t| &s.target == t))
            .filter(|s| !only_pending || s.state == ScheduleState::Scheduled)
            .collect();
        schedules.sort_by(|a, b| a.due_at.cmp(&b.due_at).then_with(|| a.id.cmp(&b.id)));
        schedules.into_iter().cloned().collect()
    }

    fn list_audit(&self, after_seq: i64, limit: usize) -> Vec<AuditEvent> {
        self.audit
            .range((Bound::Excluded(after_seq), Bound::Unbounded))
            .map(|(_, e)| e)
            .take(limit)
            .cloned()
            .collect()
    }

    fn list_audit_newest(&self, limit: usize) -> Vec<AuditEvent> {
        self.audit.values().rev().take(limit).cloned().collect()
    }

    fn list_key_versions(&self, keyring: &KeyringName) -> Vec<KeyVersion> {
        self.versions
            .range((keyring.clone(), 0)..=(keyring.clone(), u32::MAX))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn values_of<'a>(&'a self, keyring: &'a KeyringName) -> impl Iterator<Item = &'a SealedValue> + 'a {
        self.values
            .range((
                Bound::Included((keyring.clone(), ValueId::parse(" ").expect("the smallest valid id"))),
                Bound::Unbounded,
            ))
            .map(|(_, v)| v)
            .take_while(move |v| &v.keyring == keyring)
    }

    fn has_genesis(&self, agent: &AgentId) -> bool {
        self.records
            .range((Bound::Included((agent.clone(), Uuid::nil())), Bound::Unbounded))
            .take_while(|((a, _), _)| a == agent)
            .any(|(_, r)| r.kind == RecordKind::Genesis)
    }

    /// The error for a second non-terminal run of `run.target`, mirroring
    /// a SQL unique index on `target WHERE state is not terminal`.
    fn check_single_active(&self, run: &Run) -> Result<()> {
        if run.state.is_terminal() {
            return Ok(());
        }
        let other = self
            .runs
            .values()
            .find(|r| r.target == run.target && r.rotation_id != run.rotation_id && !r.state.is_terminal());
        match other {
            None => Ok(()),
            Some(other) => {
                let mut err = Error::new(
                    Reason::ConcurrentRotation,
                    format!("another rotation of {} is in progress", run.target),
                )
                .with_rotation(other.rotation_id);
                if let Target::Authority(id) = &run.target {
                    err = err.with_authority(id);
                }
                Err(err)
            }
        }
    }
}

fn already_exists(what: impl fmt::Display) -> Error {
    Error::new(Reason::AlreadyExists, format!("{what} already exists"))
}

fn not_found(what: impl fmt::Display) -> Error {
    Error::not_found(format!("{what} not found"))
}

/// Committed state plus the lock that serialises write transactions.
struct Shared {
    committed: RwLock<State>,
    writer: Arc<Mutex<()>>,
}

impl Shared {
    fn snapshot(&self) -> State {
        self.committed.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A complete in-memory [`StateStore`] for tests, with the semantics of a
/// SQL store:
///
/// - [`StateStore::begin`] waits for the store's write lock, so write
///   transactions are serialised; the transaction works on its own copy of
///   the state, [`StoreTx::commit`] swaps the copy in, and dropping the
///   transaction discards it.
/// - Reads on the store see committed state only.
/// - Constraints: at most one non-terminal run per target
///   ([`Reason::ConcurrentRotation`], on insert and update), unique ids
///   ([`Reason::AlreadyExists`]), updates of missing rows
///   ([`Reason::NotFound`]), unique audit sequence numbers. Like a store
///   without foreign keys, references between rows are not checked.
///
/// A failed operation leaves the transaction usable and unchanged by that
/// operation.
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                committed: RwLock::new(State::default()),
                writer: Arc::new(Mutex::new(())),
            }),
        }
    }

    /// An empty store as `Arc<dyn StateStore>`, ready to hand to an engine.
    pub fn new_shared() -> Arc<dyn StateStore> {
        Arc::new(MemoryStore::new())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.snapshot();
        f.debug_struct("MemoryStore")
            .field("authorities", &state.authorities.len())
            .field("keys", &state.keys.len())
            .field("records", &state.records.len())
            .field("runs", &state.runs.len())
            .field("schedules", &state.schedules.len())
            .field("audit_events", &state.audit.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        let guard = Arc::clone(&self.shared.writer).lock_owned().await;
        // Copy only once the lock is held, so the copy includes every
        // transaction committed before this one.
        let state = self.shared.snapshot();
        Ok(Box::new(MemoryTx {
            shared: Arc::clone(&self.shared),
            state,
            _guard: guard,
        }))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.shared.snapshot().meta.get(key).cloned())
    }

    async fn get_authority(&self, id: &AuthorityId) -> Result<Option<Authority>> {
        Ok(self.shared.snapshot().get_authority(id))
    }

    async fn list_authorities(&self) -> Result<Vec<Authority>> {
        Ok(self.shared.snapshot().authorities.values().cloned().collect())
    }

    async fn get_key(&self, key_id: &KeyId) -> Result<Option<SigningKey>> {
        Ok(self.shared.snapshot().get_key(key_id))
    }

    async fn list_keys(&self, authority: &AuthorityId) -> Result<Vec<SigningKey>> {
        Ok(self.shared.snapshot().list_keys(authority))
    }

    async fn list_records(&self, query: &RecordQuery) -> Result<Vec<TrustRecord>> {
        Ok(self.shared.snapshot().list_records(query))
    }

    async fn count_records_of(&self, authority: &AuthorityId) -> Result<u64> {
        let snapshot = self.shared.snapshot();
        Ok(snapshot
            .records
            .values()
            .filter(|r| &r.authority_id == authority)
            .count() as u64)
    }

    async fn count_agents_resigned_by(&self, rotation: RotationId) -> Result<u64> {
        Ok(self.shared.snapshot().count_agents_resigned_by(rotation))
    }

    async fn get_run(&self, id: RotationId) -> Result<Option<Run>> {
        Ok(self.shared.snapshot().get_run(id))
    }

    async fn list_runs(&self, target: Option<&Target>, limit: usize) -> Result<Vec<Run>> {
        Ok(self.shared.snapshot().list_runs(target, limit))
    }

    async fn list_active_runs(&self) -> Result<Vec<Run>> {
        Ok(self.shared.snapshot().list_active_runs())
    }

    async fn list_schedules(&self, target: Option<&Target>, only_pending: bool) -> Result<Vec<Schedule>> {
        Ok(self.shared.snapshot().list_schedules(target, only_pending))
    }

    async fn list_audit(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditEvent>> {
        Ok(self.shared.snapshot().list_audit(after_seq, limit))
    }

    async fn list_audit_newest(&self, limit: usize) -> Result<Vec<AuditEvent>> {
        Ok(self.shared.snapshot().list_audit_newest(limit))
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let state = self.shared.snapshot();
        Ok(state
            .audit
            .values()
            .rev()
            .filter(|e| q.before_seq.is_none_or(|b| e.seq < b))
            .filter(|e| q.target.as_ref().is_none_or(|t| &e.target == t))
            .filter(|e| q.event.as_ref().is_none_or(|t| &e.event == t))
            .filter(|e| q.actor.as_ref().is_none_or(|t| &e.actor == t))
            .filter(|e| q.rotation_id.is_none_or(|r| e.rotation_id == Some(r)))
            .filter(|e| q.since.is_none_or(|t| e.at >= t))
            .filter(|e| q.until.is_none_or(|t| e.at < t))
            .take(q.limit)
            .cloned()
            .collect())
    }

    async fn list_audit_for_target(&self, target: &str, limit: usize) -> Result<Vec<AuditEvent>> {
        let state = self.shared.snapshot();
        Ok(state
            .audit
            .values()
            .rev()
            .filter(|e| e.target == target)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn get_keyring(&self, name: &KeyringName) -> Result<Option<Keyring>> {
        Ok(self.shared.snapshot().keyrings.get(name).cloned())
    }

    async fn list_keyrings(&self) -> Result<Vec<Keyring>> {
        Ok(self.shared.snapshot().keyrings.values().cloned().collect())
    }

    async fn list_key_versions(&self, keyring: &KeyringName) -> Result<Vec<KeyVersion>> {
        Ok(self.shared.snapshot().list_key_versions(keyring))
    }

    async fn get_value(&self, keyring: &KeyringName, id: &ValueId) -> Result<Option<SealedValue>> {
        Ok(self
            .shared
            .snapshot()
            .values
            .get(&(keyring.clone(), id.clone()))
            .cloned())
    }

    async fn list_values(
        &self,
        keyring: &KeyringName,
        below_version: Option<u32>,
        after: Option<&ValueId>,
        limit: usize,
    ) -> Result<Vec<SealedValue>> {
        let state = self.shared.snapshot();
        Ok(state
            .values_of(keyring)
            .filter(|v| after.is_none_or(|a| &v.id > a))
            .filter(|v| below_version.is_none_or(|b| v.key_version < b))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn count_values_by_version(&self, keyring: &KeyringName) -> Result<Vec<(u32, u64)>> {
        let state = self.shared.snapshot();
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        for v in state.values_of(keyring) {
            *counts.entry(v.key_version).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    async fn get_policy(&self, name: &str) -> Result<Option<Policy>> {
        Ok(self.shared.snapshot().policies.get(name).cloned())
    }

    async fn list_policies(&self) -> Result<Vec<Policy>> {
        Ok(self.shared.snapshot().policies.values().cloned().collect())
    }

    async fn get_secret(&self, path: &str) -> Result<Option<Secret>> {
        Ok(self.shared.snapshot().secrets.get(path).cloned())
    }

    async fn list_secrets(&self) -> Result<Vec<Secret>> {
        Ok(self.shared.snapshot().secrets.values().cloned().collect())
    }

    async fn list_secret_versions(&self, path: &str) -> Result<Vec<SecretVersion>> {
        Ok(self.shared.snapshot().list_secret_versions(path))
    }

    async fn list_outbox(&self, only_pending: bool, limit: usize) -> Result<Vec<OutboxMessage>> {
        let mut all = self.shared.snapshot().list_outbox(only_pending);
        all.truncate(limit);
        Ok(all)
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        use base64::Engine as _;
        let s = self.shared.snapshot();
        Ok(Snapshot {
            meta: s
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)))
                .collect(),
            authorities: s.authorities.values().cloned().collect(),
            keys: s.keys.values().cloned().collect(),
            records: s.records.values().cloned().collect(),
            runs: s.runs.values().cloned().collect(),
            schedules: s.schedules.values().cloned().collect(),
            audit: s.audit.values().cloned().collect(),
            audit_head: s.head.clone(),
            keyrings: s.keyrings.values().cloned().collect(),
            versions: s.versions.values().cloned().collect(),
            values: s.values.values().cloned().collect(),
            policies: s.policies.values().cloned().collect(),
            secrets: s.secrets.values().cloned().collect(),
            secret_versions: s.secret_versions.values().cloned().collect(),
            outbox: s.list_outbox(false),
        })
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        Ok(self.shared.snapshot().head)
    }
}

/// A write transaction of a [`MemoryStore`]: its own copy of the state and
/// the store's write lock.
struct MemoryTx {
    shared: Arc<Shared>,
    state: State,
    _guard: OwnedMutexGuard<()>,
}

#[async_trait]
impl StoreTx for MemoryTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        let MemoryTx { shared, state, _guard } = *self;
        *shared.committed.write().unwrap_or_else(PoisonError::into_inner) = state;
        // `_guard` is released here, after the new state is visible.
        Ok(())
    }

    async fn delete_meta(&mut self, key: &str) -> Result<()> {
        Arc::make_mut(&mut self.state.meta).remove(key);
        Ok(())
    }

    async fn clear_all(&mut self) -> Result<()> {
        self.state = State::default();
        Ok(())
    }

    async fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        Arc::make_mut(&mut self.state.meta).insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    async fn get_authority(&mut self, id: &AuthorityId) -> Result<Option<Authority>> {
        Ok(self.state.get_authority(id))
    }

    async fn insert_authority(&mut self, authority: &Authority) -> Result<()> {
        if self.state.authorities.contains_key(&authority.id) {
            return Err(already_exists(format_args!("authority {}", authority.id)).with_authority(&authority.id));
        }
        Arc::make_mut(&mut self.state.authorities).insert(authority.id.clone(), authority.clone());
        Ok(())
    }

    async fn update_authority(&mut self, authority: &Authority) -> Result<()> {
        match Arc::make_mut(&mut self.state.authorities).get_mut(&authority.id) {
            Some(row) => {
                *row = authority.clone();
                Ok(())
            }
            None => Err(not_found(format_args!("authority {}", authority.id)).with_authority(&authority.id)),
        }
    }

    async fn get_key(&mut self, key_id: &KeyId) -> Result<Option<SigningKey>> {
        Ok(self.state.get_key(key_id))
    }

    async fn insert_key(&mut self, key: &SigningKey) -> Result<()> {
        if self.state.keys.contains_key(&key.key_id) {
            return Err(already_exists(format_args!("key {}", key.key_id)).with_authority(&key.authority_id));
        }
        Arc::make_mut(&mut self.state.keys).insert(key.key_id.clone(), key.clone());
        Ok(())
    }

    async fn update_key(&mut self, key: &SigningKey) -> Result<()> {
        match Arc::make_mut(&mut self.state.keys).get_mut(&key.key_id) {
            Some(row) => {
                *row = key.clone();
                Ok(())
            }
            None => Err(not_found(format_args!("key {}", key.key_id)).with_authority(&key.authority_id)),
        }
    }

    async fn delete_key(&mut self, key_id: &KeyId) -> Result<()> {
        if self.state.keys.contains_key(key_id) {
            Arc::make_mut(&mut self.state.keys).remove(key_id);
        }
        Ok(())
    }

    async fn insert_records(&mut self, records: &[TrustRecord]) -> Result<()> {
        // Check the whole batch first so a failed call changes nothing.
        let mut batch = BTreeSet::new();
        let mut geneses = BTreeSet::new();
        for record in records {
            if self.state.record_agents.contains_key(&record.id) || !batch.insert(record.id) {
                return Err(already_exists(format_args!("trust record {}", record.id)));
            }
            if record.kind == RecordKind::Genesis
                && (self.state.has_genesis(&record.agent_id) || !geneses.insert(record.agent_id.clone()))
            {
                return Err(already_exists(format_args!(
                    "genesis record of agent {}",
                    record.agent_id
                )));
            }
        }
        let table = Arc::make_mut(&mut self.state.records);
        let index = Arc::make_mut(&mut self.state.record_agents);
        for record in records {
            table.insert((record.agent_id.clone(), record.id), record.clone());
            index.insert(record.id, record.agent_id.clone());
        }
        Ok(())
    }

    async fn resign_records(&mut self, expected_key: &[KeyId], records: &[TrustRecord]) -> Result<u64> {
        let mut replaced = 0;
        for record in records {
            let Some(agent) = self.state.record_agents.get(&record.id).cloned() else {
                continue;
            };
            let position = (agent, record.id);
            let matches = self
                .state
                .records
                .get(&position)
                .is_some_and(|stored| expected_key.contains(&stored.key_id));
            if !matches {
                continue;
            }
            if let Some(stored) = Arc::make_mut(&mut self.state.records).get_mut(&position) {
                stored.body = record.body.clone();
                stored.key_id = record.key_id.clone();
                stored.signature = record.signature.clone();
                stored.signed_at = record.signed_at;
                stored.resigned_by = record.resigned_by;
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    async fn get_run(&mut self, id: RotationId) -> Result<Option<Run>> {
        Ok(self.state.get_run(id))
    }

    async fn active_run(&mut self, target: &Target) -> Result<Option<Run>> {
        Ok(self.state.active_run(target))
    }

    async fn insert_run(&mut self, run: &Run) -> Result<()> {
        if self.state.runs.contains_key(&run.rotation_id) {
            return Err(already_exists(format_args!("rotation {}", run.rotation_id)).with_rotation(run.rotation_id));
        }
        self.state.check_single_active(run)?;
        Arc::make_mut(&mut self.state.runs).insert(run.rotation_id, run.clone());
        Ok(())
    }

    async fn update_run(&mut self, run: &Run) -> Result<()> {
        if !self.state.runs.contains_key(&run.rotation_id) {
            return Err(not_found(format_args!("rotation {}", run.rotation_id)).with_rotation(run.rotation_id));
        }
        self.state.check_single_active(run)?;
        Arc::make_mut(&mut self.state.runs).insert(run.rotation_id, run.clone());
        Ok(())
    }

    async fn insert_schedule(&mut self, schedule: &Schedule) -> Result<()> {
        if self.state.schedules.contains_key(&schedule.id) {
            return Err(already_exists(format_args!("schedule {}", schedule.id)));
        }
        Arc::make_mut(&mut self.state.schedules).insert(schedule.id, schedule.clone());
        Ok(())
    }

    async fn update_schedule(&mut self, schedule: &Schedule) -> Result<()> {
        match Arc::make_mut(&mut self.state.schedules).get_mut(&schedule.id) {
            Some(row) => {
                *row = schedule.clone();
                Ok(())
            }
            None => Err(not_found(format_args!("schedule {}", schedule.id))),
        }
    }

    async fn claim_due_schedules(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Schedule>> {
        let mut due: Vec<(Timestamp, RotationId)> = self
            .state
            .schedules
            .values()
            .filter(|s| s.state == ScheduleState::Scheduled && s.due_at <= now)
            .filter(|s| s.claimed_by.is_none() || s.claim_expires_at.is_none_or(|expires| expires <= now))
            .map(|s| (s.due_at, s.id))
            .collect();
        due.sort();
        due.truncate(limit);
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let table = Arc::make_mut(&mut self.state.schedules);
        let mut claimed = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(schedule) = table.get_mut(&id) {
                schedule.claimed_by = Some(owner.to_owned());
                schedule.claim_expires_at = Some(until);
                claimed.push(schedule.clone());
            }
        }
        Ok(claimed)
    }

    async fn get_keyring(&mut self, name: &KeyringName) -> Result<Option<Keyring>> {
        Ok(self.state.keyrings.get(name).cloned())
    }

    async fn insert_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        if self.state.keyrings.contains_key(&keyring.name) {
            return Err(already_exists(format_args!("keyring {}", keyring.name)));
        }
        Arc::make_mut(&mut self.state.keyrings).insert(keyring.name.clone(), keyring.clone());
        Ok(())
    }

    async fn update_keyring(&mut self, keyring: &Keyring) -> Result<()> {
        match Arc::make_mut(&mut self.state.keyrings).get_mut(&keyring.name) {
            Some(row) => {
                *row = keyring.clone();
                Ok(())
            }
            None => Err(not_found(format_args!("keyring {}", keyring.name))),
        }
    }

    async fn get_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<Option<KeyVersion>> {
        Ok(self.state.versions.get(&(keyring.clone(), version)).cloned())
    }

    async fn insert_key_version(&mut self, version: &KeyVersion) -> Result<()> {
        let key = (version.keyring.clone(), version.version);
        if self.state.versions.contains_key(&key) {
            return Err(already_exists(format_args!(
                "version {} of keyring {}",
                version.version, version.keyring
            )));
        }
        Arc::make_mut(&mut self.state.versions).insert(key, version.clone());
        Ok(())
    }

    async fn update_key_version(&mut self, version: &KeyVersion) -> Result<()> {
        let key = (version.keyring.clone(), version.version);
        match Arc::make_mut(&mut self.state.versions).get_mut(&key) {
            Some(row) => {
                let usage = row.usage_count;
                *row = version.clone();
                row.usage_count = usage;
                Ok(())
            }
            None => Err(not_found(format_args!(
                "version {} of keyring {}",
                version.version, version.keyring
            ))),
        }
    }

    async fn delete_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<()> {
        Arc::make_mut(&mut self.state.versions).remove(&(keyring.clone(), version));
        Ok(())
    }

    async fn add_usage(&mut self, keyring: &KeyringName, version: u32, count: u64) -> Result<()> {
        match Arc::make_mut(&mut self.state.versions).get_mut(&(keyring.clone(), version)) {
            Some(row) => {
                row.usage_count = row.usage_count.saturating_add(count);
                Ok(())
            }
            None => Err(not_found(format_args!("version {version} of keyring {keyring}"))),
        }
    }

    async fn count_values_at(&mut self, keyring: &KeyringName, version: u32) -> Result<u64> {
        Ok(self
            .state
            .values_of(keyring)
            .filter(|v| v.key_version == version)
            .count() as u64)
    }

    async fn put_values(&mut self, values: &[SealedValue]) -> Result<()> {
        let table = Arc::make_mut(&mut self.state.values);
        for v in values {
            let key = (v.keyring.clone(), v.id.clone());
            let created_at = table.get(&key).map(|old| old.created_at);
            let mut row = v.clone();
            if let Some(created_at) = created_at {
                row.created_at = created_at;
            }
            table.insert(key, row);
        }
        Ok(())
    }

    async fn reseal_values(
        &mut self,
        keyring: &KeyringName,
        to_version: u32,
        values: &[Reseal],
        at: Timestamp,
    ) -> Result<u64> {
        let table = Arc::make_mut(&mut self.state.values);
        let mut replaced = 0;
        for r in values {
            if let Some(row) = table.get_mut(&(keyring.clone(), r.id.clone()))
                && row.key_version == r.from_version
            {
                row.sealed = r.sealed.clone();
                row.key_version = to_version;
                row.updated_at = at;
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    async fn put_policy(&mut self, policy: &Policy) -> Result<()> {
        Arc::make_mut(&mut self.state.policies).insert(policy.name.clone(), policy.clone());
        Ok(())
    }

    async fn delete_policy(&mut self, name: &str) -> Result<()> {
        match Arc::make_mut(&mut self.state.policies).remove(name) {
            Some(_) => Ok(()),
            None => Err(not_found(format_args!("policy {name}"))),
        }
    }

    async fn get_secret(&mut self, path: &str) -> Result<Option<Secret>> {
        Ok(self.state.secrets.get(path).cloned())
    }

    async fn put_secret(&mut self, secret: &Secret) -> Result<()> {
        Arc::make_mut(&mut self.state.secrets).insert(secret.path.clone(), secret.clone());
        Ok(())
    }

    async fn list_secret_versions(&mut self, path: &str) -> Result<Vec<SecretVersion>> {
        Ok(self.state.list_secret_versions(path))
    }

    async fn put_secret_version(&mut self, version: &SecretVersion) -> Result<()> {
        Arc::make_mut(&mut self.state.secret_versions).insert((version.path.clone(), version.version), version.clone());
        Ok(())
    }

    async fn enqueue_outbox(&mut self, messages: &[OutboxMessage]) -> Result<u64> {
        let mut inserted = 0;
        for m in messages {
            if self.state.outbox.contains_key(&m.id) {
                return Err(already_exists(format!("outbox message {}", m.id)));
            }
            if let Some(key) = &m.dedup_key
                && self.state.outbox.values().any(|o| o.dedup_key.as_ref() == Some(key))
            {
                continue;
            }
            Arc::make_mut(&mut self.state.outbox).insert(m.id, m.clone());
            inserted += 1;
        }
        Ok(inserted)
    }

    async fn claim_outbox(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        let mut due: Vec<OutboxMessage> = self
            .state
            .list_outbox(true)
            .into_iter()
            .filter(|m| m.next_attempt_at <= now && m.claim_expires_at.is_none_or(|e| e <= now))
            .collect();
        due.truncate(limit);
        let table = Arc::make_mut(&mut self.state.outbox);
        for m in &mut due {
            m.claimed_by = Some(owner.to_owned());
            m.claim_expires_at = Some(until);
            table.insert(m.id, m.clone());
        }
        Ok(due)
    }

    async fn update_outbox(&mut self, message: &OutboxMessage) -> Result<()> {
        match Arc::make_mut(&mut self.state.outbox).get_mut(&message.id) {
            Some(m) => {
                m.attempts = message.attempts;
                m.next_attempt_at = message.next_attempt_at;
                m.delivered_at = message.delivered_at;
                m.last_error.clone_from(&message.last_error);
                m.claimed_by.clone_from(&message.claimed_by);
                m.claim_expires_at = message.claim_expires_at;
                Ok(())
            }
            None => Err(not_found(format!("outbox message {}", message.id))),
        }
    }

    async fn audit_head(&mut self) -> Result<Option<AuditHead>> {
        Ok(self.state.head.clone())
    }

    async fn append_audit(&mut self, event: &AuditEvent) -> Result<()> {
        if self.state.audit.contains_key(&event.seq) {
            return Err(already_exists(format_args!("audit event {}", event.seq)));
        }
        Arc::make_mut(&mut self.state.audit).insert(event.seq, event.clone());
        self.state.head = Some(AuditHead {
            seq: event.seq,
            hash: event.hash.clone(),
        });
        Ok(())
    }
}
