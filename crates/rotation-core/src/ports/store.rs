//! The persistence port: [`StateStore`] and its write transaction [`StoreTx`].

use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditHead};
use crate::authority::{Authority, SigningKey};
use crate::chain::TrustRecord;
use crate::error::Result;
use crate::ids::{AgentId, AuthorityId, KeyId, KeyringName, RotationId, Target, ValueId};
use crate::keyring::{KeyVersion, Keyring, Reseal, SealedValue};
use crate::policy::Policy;
use crate::ports::Notification;
use crate::run::Run;
use crate::schedule::Schedule;
use crate::secret::{Secret, SecretVersion};
use crate::time::Timestamp;

/// Which trust-chain records to list. Results are ordered by
/// `(agent_id, id)`; `after` continues after that position (keyset paging).
#[derive(Debug, Clone)]
pub struct RecordQuery {
    /// Only this agent's records.
    pub agent: Option<AgentId>,
    /// Only records signed by this authority.
    pub authority: Option<AuthorityId>,
    /// Only records signed by one of these keys.
    pub key_ids: Option<Vec<KeyId>>,
    /// Continue after this `(agent_id, id)`.
    pub after: Option<(AgentId, uuid::Uuid)>,
    /// At most this many records (`usize::MAX`, the default, for all).
    pub limit: usize,
}

impl Default for RecordQuery {
    fn default() -> Self {
        RecordQuery {
            agent: None,
            authority: None,
            key_ids: None,
            after: None,
            limit: usize::MAX,
        }
    }
}

/// Which audit events to list, newest first. Every filter is optional;
/// `before_seq` continues a listing below that position (cursor paging).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this target (`kind:name`).
    pub target: Option<String>,
    /// Only this event type.
    pub event: Option<String>,
    /// Only events of this rotation.
    pub rotation_id: Option<RotationId>,
    /// Only events by this actor.
    pub actor: Option<String>,
    /// Only events at or after this instant.
    pub since: Option<Timestamp>,
    /// Only events before this instant.
    pub until: Option<Timestamp>,
    /// Only events with `seq` below this (the cursor of the previous page).
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// A notification waiting for delivery: the outbox. Events are enqueued
/// in the transaction that records the change they report, and delivered
/// afterwards with retries, so a receiver that is down loses nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutboxMessage {
    /// Id.
    pub id: uuid::Uuid,
    /// At most one message per key is ever enqueued (e.g. one "expiring in
    /// 7 days" notice per certificate version); `None` never deduplicates.
    pub dedup_key: Option<String>,
    /// Where to deliver: a webhook URL, `mailto:ADDRESS` or `log`.
    pub recipient: String,
    /// The event.
    pub notification: Notification,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not delivered before this instant (backoff).
    pub next_attempt_at: Timestamp,
    /// When it was delivered; `None` while pending.
    pub delivered_at: Option<Timestamp>,
    /// Error of the last failed attempt (never carries secret material).
    pub last_error: Option<String>,
    /// Process delivering it.
    pub claimed_by: Option<String>,
    /// Until when the claim holds.
    pub claim_expires_at: Option<Timestamp>,
}

/// Everything a store holds, for encrypted backups and restores. Sealed
/// material stays sealed (private keys and data keys under the KEK, values
/// under their data keys).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Metadata (e.g. the KEK parameters), with values base64url.
    pub meta: Vec<(String, String)>,
    /// Authorities.
    pub authorities: Vec<Authority>,
    /// Signing keys.
    pub keys: Vec<SigningKey>,
    /// Trust-chain records.
    pub records: Vec<TrustRecord>,
    /// Runs.
    pub runs: Vec<Run>,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Audit events, ascending.
    pub audit: Vec<AuditEvent>,
    /// Audit head.
    pub audit_head: Option<AuditHead>,
    /// Keyrings.
    pub keyrings: Vec<Keyring>,
    /// Key versions.
    pub versions: Vec<KeyVersion>,
    /// Sealed values.
    pub values: Vec<SealedValue>,
    /// Policies.
    pub policies: Vec<Policy>,
    /// Secrets' metadata.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Secret versions kept by the store's own secret backend (labels and attributes).
    #[serde(default)]
    pub secret_versions: Vec<SecretVersion>,
    /// Outbox messages.
    #[serde(default)]
    pub outbox: Vec<OutboxMessage>,
}

impl Snapshot {
    /// Inserts every row of the snapshot through `tx` (into an empty store),
    /// keeping the audit chain and its head exactly as they were.
    pub async fn restore_into(&self, tx: &mut dyn StoreTx) -> Result<()> {
        use base64::Engine as _;
        for (key, value) in &self.meta {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| crate::Error::tampered(format!("snapshot meta {key} is not base64url")))?;
            tx.put_meta(key, &bytes).await?;
        }
        for a in &self.authorities {
            tx.insert_authority(a).await?;
        }
        for k in &self.keys {
            tx.insert_key(k).await?;
        }
        for chunk in self.records.chunks(5000) {
            tx.insert_records(chunk).await?;
        }
        for r in &self.runs {
            tx.insert_run(r).await?;
        }
        for s in &self.schedules {
            tx.insert_schedule(s).await?;
        }
        for e in &self.audit {
            tx.append_audit(e).await?;
        }
        for k in &self.keyrings {
            tx.insert_keyring(k).await?;
        }
        for v in &self.versions {
            tx.insert_key_version(v).await?;
        }
        for chunk in self.values.chunks(5000) {
            tx.put_values(chunk).await?;
        }
        for p in &self.policies {
            tx.put_policy(p).await?;
        }
        for secret in &self.secrets {
            tx.put_secret(secret).await?;
        }
        for v in &self.secret_versions {
            tx.put_secret_version(v).await?;
        }
        for chunk in self.outbox.chunks(1000) {
            tx.enqueue_outbox(chunk).await?;
            for m in chunk {
                tx.update_outbox(m).await?;
            }
        }
        Ok(())
    }
}

/// Persistent state: authorities, keys, trust chains, runs (the journal),
/// schedules, the audit log and store metadata.
///
/// Reads here see committed data. Every change goes through a
/// [`StoreTx`], so a state change and the audit events recording it
/// commit together or not at all.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Starts a write transaction. Write transactions on one store are
    /// serialised; a dropped transaction rolls back.
    async fn begin(&self) -> Result<Box<dyn StoreTx>>;

    /// Reads a metadata value (e.g. the KEK salt and check value).
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// One authority.
    async fn get_authority(&self, id: &AuthorityId) -> Result<Option<Authority>>;
    /// All authorities, ordered by id.
    async fn list_authorities(&self) -> Result<Vec<Authority>>;

    /// One key.
    async fn get_key(&self, key_id: &KeyId) -> Result<Option<SigningKey>>;
    /// An authority's keys, oldest first.
    async fn list_keys(&self, authority: &AuthorityId) -> Result<Vec<SigningKey>>;

    /// Trust-chain records matching `query`, ordered by `(agent_id, id)`.
    async fn list_records(&self, query: &RecordQuery) -> Result<Vec<TrustRecord>>;
    /// Number of trust-chain records `authority` signed (counted by the
    /// store, without reading the records).
    async fn count_records_of(&self, authority: &AuthorityId) -> Result<u64>;
    /// Number of distinct agents whose records `rotation` re-signed.
    async fn count_agents_resigned_by(&self, rotation: RotationId) -> Result<u64>;

    /// One run.
    async fn get_run(&self, id: RotationId) -> Result<Option<Run>>;
    /// Runs, newest first, optionally for one target.
    async fn list_runs(&self, target: Option<&Target>, limit: usize) -> Result<Vec<Run>>;
    /// Every non-terminal run (to find runs whose lease expired).
    async fn list_active_runs(&self) -> Result<Vec<Run>>;

    /// Schedules, soonest first, optionally for one target; with
    /// `only_pending`, only those still `scheduled`.
    async fn list_schedules(&self, target: Option<&Target>, only_pending: bool) -> Result<Vec<Schedule>>;

    /// Audit events with `seq > after_seq`, ascending, at most `limit`.
    async fn list_audit(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditEvent>>;
    /// The newest events, newest first.
    async fn list_audit_newest(&self, limit: usize) -> Result<Vec<AuditEvent>>;
    /// The stored head of the audit chain.
    async fn audit_head(&self) -> Result<Option<AuditHead>>;
    /// The newest events of one target (`kind:name`), newest first.
    async fn list_audit_for_target(&self, target: &str, limit: usize) -> Result<Vec<AuditEvent>>;
    /// Events matching `query`, newest first.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    /// One keyring.
    async fn get_keyring(&self, name: &KeyringName) -> Result<Option<Keyring>>;
    /// All keyrings, ordered by name.
    async fn list_keyrings(&self) -> Result<Vec<Keyring>>;
    /// A keyring's versions, ascending.
    async fn list_key_versions(&self, keyring: &KeyringName) -> Result<Vec<KeyVersion>>;

    /// One stored value.
    async fn get_value(&self, keyring: &KeyringName, id: &ValueId) -> Result<Option<SealedValue>>;
    /// A keyring's values ordered by id, after `after` (exclusive), at most `limit`;
    /// with `below_version`, only values sealed under an older version.
    async fn list_values(
        &self,
        keyring: &KeyringName,
        below_version: Option<u32>,
        after: Option<&ValueId>,
        limit: usize,
    ) -> Result<Vec<SealedValue>>;
    /// How many values each version of a keyring seals, ascending by version.
    async fn count_values_by_version(&self, keyring: &KeyringName) -> Result<Vec<(u32, u64)>>;

    /// One policy.
    async fn get_policy(&self, name: &str) -> Result<Option<Policy>>;
    /// All policies, ordered by name.
    async fn list_policies(&self) -> Result<Vec<Policy>>;

    /// One secret's metadata.
    async fn get_secret(&self, path: &str) -> Result<Option<Secret>>;
    /// All secrets, ordered by path.
    async fn list_secrets(&self) -> Result<Vec<Secret>>;
    /// Versions of a secret kept by the store's own backend, ascending.
    async fn list_secret_versions(&self, path: &str) -> Result<Vec<SecretVersion>>;

    /// Outbox messages ordered by `(created_at, id)`, at most `limit`;
    /// with `only_pending`, only undelivered ones.
    async fn list_outbox(&self, only_pending: bool, limit: usize) -> Result<Vec<OutboxMessage>>;

    /// A consistent copy of everything (read inside one transaction).
    async fn snapshot(&self) -> Result<Snapshot>;
}

/// A write transaction. Reads inside it see its own writes. Nothing is
/// visible to others until [`StoreTx::commit`]; dropping it rolls back.
/// After a failed call, drop the transaction: whether it stays usable is
/// store specific (PostgreSQL aborts it).
#[async_trait]
pub trait StoreTx: Send {
    /// Commits every change made in this transaction atomically.
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Writes a metadata value.
    async fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()>;
    /// Deletes a metadata value; missing is not an error.
    async fn delete_meta(&mut self, key: &str) -> Result<()>;
    /// Deletes everything (restore with `--force`).
    async fn clear_all(&mut self) -> Result<()>;

    /// One authority.
    async fn get_authority(&mut self, id: &AuthorityId) -> Result<Option<Authority>>;
    /// Inserts an authority; `already_exists` if the id is taken.
    async fn insert_authority(&mut self, authority: &Authority) -> Result<()>;
    /// Replaces an authority's row; `not_found` if missing.
    async fn update_authority(&mut self, authority: &Authority) -> Result<()>;

    /// One key.
    async fn get_key(&mut self, key_id: &KeyId) -> Result<Option<SigningKey>>;
    /// Inserts a key; `already_exists` if the id is taken.
    async fn insert_key(&mut self, key: &SigningKey) -> Result<()>;
    /// Replaces a key's row; `not_found` if missing.
    async fn update_key(&mut self, key: &SigningKey) -> Result<()>;
    /// Deletes a key that was never promoted (rollback). Deleting a missing key is not an error.
    async fn delete_key(&mut self, key_id: &KeyId) -> Result<()>;

    /// Inserts records; `already_exists` if an id is taken.
    async fn insert_records(&mut self, records: &[TrustRecord]) -> Result<()>;
    /// Replaces body, key, signature, `signed_at` and `resigned_by` of each
    /// record whose stored `key_id` is still one of `expected_keys`; returns how many
    /// were replaced (a record re-signed by someone else is left alone).
    async fn resign_records(&mut self, expected_keys: &[KeyId], records: &[TrustRecord]) -> Result<u64>;

    /// One run.
    async fn get_run(&mut self, id: RotationId) -> Result<Option<Run>>;
    /// The non-terminal run of a target, if any.
    async fn active_run(&mut self, target: &Target) -> Result<Option<Run>>;
    /// Inserts a run; `concurrent_rotation` if the target already has a
    /// non-terminal run (enforced by the store, not by the caller), and
    /// `already_exists` if the rotation id is taken.
    async fn insert_run(&mut self, run: &Run) -> Result<()>;
    /// Replaces a run's row; `not_found` if missing, `concurrent_rotation`
    /// if it would make a second non-terminal run for the target.
    async fn update_run(&mut self, run: &Run) -> Result<()>;

    /// Inserts a schedule; `already_exists` if the id is taken.
    async fn insert_schedule(&mut self, schedule: &Schedule) -> Result<()>;
    /// Replaces a schedule's row; `not_found` if missing.
    async fn update_schedule(&mut self, schedule: &Schedule) -> Result<()>;
    /// Claims up to `limit` schedules that are `scheduled`, due at `now` and
    /// not claimed by a live claim (a claim expiring at or before `now`, or
    /// without an expiry, is free): sets `claimed_by = owner` and
    /// `claim_expires_at = until`, and returns them, soonest first.
    async fn claim_due_schedules(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Schedule>>;

    /// One keyring.
    async fn get_keyring(&mut self, name: &KeyringName) -> Result<Option<Keyring>>;
    /// Inserts a keyring; `already_exists` if the name is taken.
    async fn insert_keyring(&mut self, keyring: &Keyring) -> Result<()>;
    /// Replaces a keyring's row; `not_found` if missing.
    async fn update_keyring(&mut self, keyring: &Keyring) -> Result<()>;
    /// One key version.
    async fn get_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<Option<KeyVersion>>;
    /// Inserts a key version; `already_exists` if taken.
    async fn insert_key_version(&mut self, version: &KeyVersion) -> Result<()>;
    /// Replaces a key version's row (usage count excepted); `not_found` if missing.
    async fn update_key_version(&mut self, version: &KeyVersion) -> Result<()>;
    /// Deletes a key version never promoted (rollback); missing is not an error.
    async fn delete_key_version(&mut self, keyring: &KeyringName, version: u32) -> Result<()>;
    /// Adds `count` to a version's usage count.
    async fn add_usage(&mut self, keyring: &KeyringName, version: u32, count: u64) -> Result<()>;
    /// How many values of the keyring are sealed under `version`.
    async fn count_values_at(&mut self, keyring: &KeyringName, version: u32) -> Result<u64>;

    /// Inserts or replaces values (keyed by keyring and id).
    async fn put_values(&mut self, values: &[SealedValue]) -> Result<()>;
    /// Replaces the sealed bytes of each value still under `from_version`,
    /// setting `key_version = to_version`; returns how many were replaced
    /// (a value rewritten meanwhile is left alone).
    async fn reseal_values(
        &mut self,
        keyring: &KeyringName,
        to_version: u32,
        values: &[Reseal],
        at: Timestamp,
    ) -> Result<u64>;

    /// Inserts or replaces a policy.
    async fn put_policy(&mut self, policy: &Policy) -> Result<()>;
    /// Deletes a policy; `not_found` if missing.
    async fn delete_policy(&mut self, name: &str) -> Result<()>;

    /// One secret's metadata.
    async fn get_secret(&mut self, path: &str) -> Result<Option<Secret>>;
    /// Inserts or replaces a secret's metadata (keyed by path).
    async fn put_secret(&mut self, secret: &Secret) -> Result<()>;
    /// Versions of a secret kept by the store's own backend, ascending.
    async fn list_secret_versions(&mut self, path: &str) -> Result<Vec<SecretVersion>>;
    /// Inserts or replaces one secret version's labels and attributes
    /// (keyed by path and version). The store checks nothing about labels;
    /// the backend keeps them unique.
    async fn put_secret_version(&mut self, version: &SecretVersion) -> Result<()>;

    /// Enqueues messages; one whose `dedup_key` is already in the outbox
    /// is skipped. Returns how many were inserted. `already_exists` for a taken id.
    async fn enqueue_outbox(&mut self, messages: &[OutboxMessage]) -> Result<u64>;
    /// Claims up to `limit` undelivered messages with `next_attempt_at <= now`
    /// and no live claim (expiring after `now`): sets `claimed_by = owner`,
    /// `claim_expires_at = until`; returns them oldest first.
    async fn claim_outbox(
        &mut self,
        now: Timestamp,
        owner: &str,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>>;
    /// Replaces a message's delivery fields (attempts, next attempt,
    /// delivered, last error, claim); `not_found` if missing.
    async fn update_outbox(&mut self, message: &OutboxMessage) -> Result<()>;

    /// The current head of the audit chain, locked for this transaction.
    async fn audit_head(&mut self) -> Result<Option<AuditHead>>;
    /// Appends one event (already chained by [`crate::audit::append`]) and
    /// moves the head to it. Its `seq` must be the head's plus one
    /// (`already_exists` for a taken sequence number).
    async fn append_audit(&mut self, event: &AuditEvent) -> Result<()>;
}
