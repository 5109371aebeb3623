//! Fixtures: temporary stores and domain values.

use chrono::{DateTime, TimeDelta};
use rotation_core::audit::AuditEvent;
use rotation_core::authority::{Authority, CustodyRef, KeyState, SigningKey};
use rotation_core::chain::{RecordKind, TrustRecord};
use rotation_core::ids::{AgentId, AuthorityId, KeyId, RotationId, Target};
use rotation_core::run::{Run, RunState};
use rotation_core::schedule::{Schedule, ScheduleState};
use rotation_core::time::Timestamp;
use rotation_store_sqlite::SqliteStore;
use serde_json::json;
use tempfile::TempDir;

/// A store on a fresh file; keep the directory alive as long as the store.
pub(crate) async fn temp_store() -> (TempDir, SqliteStore, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("data/rotation.db").display());
    let store = SqliteStore::connect(&url, true).await.expect("connect");
    (dir, store, url)
}

/// A fixed instant with a microsecond part, so truncation bugs show.
pub(crate) fn t(seconds: i64) -> Timestamp {
    DateTime::from_timestamp_micros(1_767_225_600_123_456).expect("valid") + TimeDelta::seconds(seconds)
}

pub(crate) fn aid(s: &str) -> AuthorityId {
    AuthorityId::parse(s).expect("authority id")
}

pub(crate) fn kid(s: &str) -> KeyId {
    KeyId::parse(s).expect("key id")
}

pub(crate) fn agent(s: &str) -> AgentId {
    AgentId::parse(s).expect("agent id")
}

pub(crate) fn authority(id: &str, key: &str) -> Authority {
    Authority {
        id: aid(id),
        name: format!("Authority {id}"),
        rotation_period_days: 90,
        grace_period_hours: 24,
        current_key_id: kid(key),
        created_at: t(0),
        last_rotated_at: Some(t(1)),
        prepublish_hours: 0,
    }
}

pub(crate) fn key(authority: &str, key: &str, created: i64) -> SigningKey {
    SigningKey {
        key_id: kid(key),
        authority_id: aid(authority),
        algorithm: "Ed25519".into(),
        public_key: vec![7; 32],
        state: KeyState::Grace,
        created_at: t(created),
        activated_at: Some(t(created + 1)),
        rotated_at: Some(t(created + 2)),
        grace_until: Some(t(created + 3)),
        revoked_at: None,
        revocation_reason: Some("because".into()),
        created_by: Some(RotationId::generate()),
        custody: CustodyRef {
            custody: "local".into(),
            handle: vec![0, 1, 2, 255],
        },
    }
}

pub(crate) fn record(agent_id: &str, authority: &str, key: &str) -> TrustRecord {
    let id = uuid::Uuid::now_v7();
    TrustRecord {
        id,
        agent_id: agent(agent_id),
        authority_id: aid(authority),
        kind: RecordKind::Capability,
        body: json!({"record_id": id.to_string(), "agent_id": agent_id, "key_id": key, "n": [1, 2.5, null]}),
        key_id: kid(key),
        signature: vec![9; 64],
        issued_at: t(10),
        signed_at: t(11),
        resigned_by: None,
    }
}

pub(crate) fn run(target: &str, state: RunState, started: i64) -> Run {
    Run {
        rotation_id: RotationId::generate(),
        target: target.parse::<Target>().expect("target"),
        state,
        started_at: t(started),
        updated_at: t(started + 1),
        completed_at: state.is_terminal().then(|| t(started + 2)),
        lease_owner: "host:1".into(),
        lease_expires_at: t(started + 60),
        actor: "alice".into(),
        old_key_id: Some(kid("old")),
        new_key_id: Some(kid("new")),
        grace_period_hours: 48,
        grace_period_end: Some(t(started + 3600)),
        chains_updated: 12,
        error_reason: Some("verification_failed".into()),
        error_message: Some("boom".into()),
        schedule_id: Some(RotationId::generate()),
        old_version: Some(3),
        new_version: Some(4),
        staged_key: Some(rotation_core::authority::CustodyRef {
            custody: "local".into(),
            handle: vec![1, 2, 3],
        }),
    }
}

pub(crate) fn schedule(target: &str, due: i64) -> Schedule {
    Schedule {
        id: RotationId::generate(),
        target: target.parse::<Target>().expect("target"),
        due_at: t(due),
        state: ScheduleState::Scheduled,
        created_at: t(0),
        actor: "bob".into(),
        claimed_by: None,
        claim_expires_at: None,
        last_error: None,
        policy: Some("monthly".into()),
        attempts: 0,
        offset_seconds: 0,
    }
}

pub(crate) fn audit_event(seq: i64) -> AuditEvent {
    AuditEvent {
        seq,
        id: uuid::Uuid::now_v7(),
        at: t(seq),
        event: "key_created".into(),
        target: "authority:org-acme".into(),
        rotation_id: (seq % 2 == 0).then(RotationId::generate),
        actor: "carol".into(),
        details: json!({"seq": seq, "nested": {"a": true}}),
        prev_hash: format!("{:064x}", seq - 1),
        hash: format!("{seq:064x}"),
    }
}
