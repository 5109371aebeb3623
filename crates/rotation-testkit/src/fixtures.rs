//! Builders of domain values for tests: valid, deterministic where it
//! matters, and at store precision (whole microseconds).
//!
//! Ids are given as strings and parsed here; an invalid id panics, which in
//! a test is the right outcome. Every builder returns a plain struct whose
//! public fields tests adjust as needed.

use chrono::{TimeDelta, TimeZone, Utc};
use rotation_core::audit::{AuditEvent, GENESIS_HASH};
use rotation_core::authority::{
    Authority, CustodyRef, DEFAULT_GRACE_PERIOD_HOURS, DEFAULT_ROTATION_PERIOD_DAYS, KeyState, SigningKey,
};
use rotation_core::chain::{RecordDraft, RecordKind, TrustRecord, new_body};
use rotation_core::ids::{AgentId, AuthorityId, KeyId, RotationId, Target};
use rotation_core::ports::StateStore;
use rotation_core::run::{Run, RunState};
use rotation_core::schedule::{Schedule, ScheduleState};
use rotation_core::time::{Timestamp, truncate};

/// Name of the custody in every [`CustodyRef`] built here.
pub const TEST_CUSTODY: &str = "test";
/// Lease owner of runs built here.
pub const TEST_OWNER: &str = "test-owner";
/// Actor of runs, schedules and audit events built here.
pub const TEST_ACTOR: &str = "test";

/// A fixed instant with a non-zero microsecond part
/// (2030-01-02T03:04:05.123456Z): the default time of every fixture.
pub fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).single().expect("valid date") + TimeDelta::microseconds(123_456)
}

/// [`t0`] moved by `seconds` (negative: earlier).
pub fn at(seconds: i64) -> Timestamp {
    t0() + TimeDelta::seconds(seconds)
}

/// The current system time truncated to whole microseconds.
pub fn now_micros() -> Timestamp {
    truncate(Utc::now())
}

/// Parses an authority id.
pub fn authority_id(id: &str) -> AuthorityId {
    AuthorityId::parse(id).expect("valid authority id")
}

/// Parses a key id.
pub fn key_id(id: &str) -> KeyId {
    KeyId::parse(id).expect("valid key id")
}

/// Parses an agent id.
pub fn agent_id(id: &str) -> AgentId {
    AgentId::parse(id).expect("valid agent id")
}

/// The target `authority:<id>`.
pub fn target(authority: &str) -> Target {
    Target::Authority(authority_id(authority))
}

/// An authority `id` whose current key is `key`, created (and last rotated) at [`t0`].
pub fn authority(id: &str, key: &str) -> Authority {
    Authority {
        id: authority_id(id),
        name: format!("Authority {id}"),
        rotation_period_days: DEFAULT_ROTATION_PERIOD_DAYS,
        grace_period_hours: DEFAULT_GRACE_PERIOD_HOURS,
        current_key_id: key_id(key),
        created_at: t0(),
        last_rotated_at: Some(t0()),
        prepublish_hours: 0,
    }
}

/// The custody handle tests store for `key`: custody [`TEST_CUSTODY`] and
/// handle bytes covering every byte value class (0, 255, the id).
pub fn custody_ref(key: &str) -> CustodyRef {
    let mut handle = vec![0u8, 255, 1, 128];
    handle.extend_from_slice(key.as_bytes());
    CustodyRef {
        custody: TEST_CUSTODY.to_owned(),
        handle,
    }
}

/// A key `key` of `authority` in `state`, created at `created_at`. An
/// `Active` key is activated at creation; the public key is 32 bytes
/// derived from the id (not a real Ed25519 key).
pub fn key(authority: &str, key: &str, state: KeyState, created_at: Timestamp) -> SigningKey {
    let mut public_key = [0u8; 32];
    for (i, b) in key.bytes().enumerate() {
        public_key[i % 32] ^= b.wrapping_add(i as u8);
    }
    SigningKey {
        key_id: key_id(key),
        authority_id: authority_id(authority),
        algorithm: "Ed25519".to_owned(),
        public_key: public_key.to_vec(),
        state,
        created_at,
        activated_at: (state != KeyState::Pending).then_some(created_at),
        rotated_at: None,
        grace_until: None,
        revoked_at: None,
        revocation_reason: None,
        created_by: None,
        custody: custody_ref(key),
    }
}

/// A genesis record of `agent`, signed by `authority` with `key` at [`t0`],
/// with a fresh UUID v7 id, a consistent body and a fake 64-byte signature.
pub fn record(agent: &str, authority: &str, key: &str) -> TrustRecord {
    record_of_kind(agent, authority, key, RecordKind::Capability)
}

/// Like [`record`], of any kind (capability `read`, or a delegation of
/// `read` to `delegate-agent`).
pub fn record_of_kind(agent: &str, authority: &str, key: &str, kind: RecordKind) -> TrustRecord {
    let id = uuid::Uuid::now_v7();
    let (agent, authority, key) = (agent_id(agent), authority_id(authority), key_id(key));
    let draft = RecordDraft {
        kind,
        capabilities: match kind {
            RecordKind::Genesis => Vec::new(),
            _ => vec!["read".to_owned()],
        },
        delegate_to: (kind == RecordKind::Delegation).then(|| agent_id("delegate-agent")),
    };
    let body = new_body(id, &agent, &authority, &key, &draft, t0());
    TrustRecord {
        id,
        agent_id: agent,
        authority_id: authority,
        kind,
        body,
        key_id: key,
        signature: (0..64u8).collect(),
        issued_at: t0(),
        signed_at: t0(),
        resigned_by: None,
    }
}

/// A run of `target` in `state`, started at `started_at`, with a fresh
/// rotation id, its lease held by [`TEST_OWNER`] for 60 seconds; terminal
/// runs are completed at `started_at`.
pub fn run(target: Target, state: RunState, started_at: Timestamp) -> Run {
    Run {
        rotation_id: RotationId::generate(),
        target,
        state,
        started_at,
        updated_at: started_at,
        completed_at: state.is_terminal().then_some(started_at),
        lease_owner: TEST_OWNER.to_owned(),
        lease_expires_at: started_at + TimeDelta::seconds(60),
        actor: TEST_ACTOR.to_owned(),
        old_key_id: None,
        new_key_id: None,
        grace_period_hours: DEFAULT_GRACE_PERIOD_HOURS,
        grace_period_end: None,
        chains_updated: 0,
        error_reason: None,
        error_message: None,
        schedule_id: None,
        old_version: None,
        new_version: None,
        staged_key: None,
    }
}

/// A pending, unclaimed schedule of `target` due at `due_at`, created at
/// [`t0`] minus one day, with a fresh id.
pub fn schedule(target: Target, due_at: Timestamp) -> Schedule {
    Schedule {
        id: RotationId::generate(),
        target,
        due_at,
        state: ScheduleState::Scheduled,
        created_at: t0() - TimeDelta::days(1),
        actor: TEST_ACTOR.to_owned(),
        claimed_by: None,
        claim_expires_at: None,
        last_error: None,
        policy: None,
        attempts: 0,
        offset_seconds: 0,
    }
}

/// A stand-in hash for audit event `seq`: 64 hex digits, distinct per
/// `seq`; seq 0 is [`GENESIS_HASH`]. Stores do not compute hashes.
pub fn fake_hash(seq: i64) -> String {
    if seq == 0 {
        GENESIS_HASH.to_owned()
    } else {
        format!("{:0>64}", format!("{:x}f", seq))
    }
}

/// Audit event `seq` at `at`, chained with [`fake_hash`] (`prev_hash` is
/// the fake hash of `seq - 1`), with JSON details naming the sequence.
pub fn audit_event(seq: i64, at: Timestamp) -> AuditEvent {
    AuditEvent {
        seq,
        id: uuid::Uuid::now_v7(),
        at,
        event: "test_event".to_owned(),
        target: "authority:org-test".to_owned(),
        rotation_id: None,
        actor: TEST_ACTOR.to_owned(),
        details: serde_json::json!({"seq": seq, "nested": {"list": [1, 2, 3], "text": "ünïcødé"}}),
        prev_hash: fake_hash(seq - 1),
        hash: fake_hash(seq),
    }
}

/// Inserts and commits authority `id` with its active key `<id>.k1`
/// (both built at [`t0`]); returns them.
pub async fn seed_authority(store: &dyn StateStore, id: &str) -> (Authority, SigningKey) {
    let key_name = format!("{id}.k1");
    let authority = authority(id, &key_name);
    let key = key(id, &key_name, KeyState::Active, t0());
    let mut tx = store.begin().await.expect("begin");
    tx.insert_authority(&authority).await.expect("insert authority");
    tx.insert_key(&key).await.expect("insert key");
    tx.commit().await.expect("commit");
    (authority, key)
}
