//! Conformance cases for keyrings, key versions, sealed values, policies,
//! target-filtered audit reads and the one-genesis-per-agent rule.

use std::sync::Arc;

use rotation_core::audit::AuditEvent;
use rotation_core::authority::KeyState;
use rotation_core::chain::RecordKind;
use rotation_core::error::Reason;
use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::keyring::{KeyVersion, Keyring, Reseal, SealedValue, VersionState};
use rotation_core::policy::{Policy, Trigger};
use rotation_core::ports::StateStore;

use super::{Must, expect_reason, seed};
use crate::fixtures::{at, audit_event, custody_ref, key, record_of_kind, t0};

fn ring(name: &str) -> KeyringName {
    KeyringName::parse(name).expect("valid keyring name")
}

fn vid(id: &str) -> ValueId {
    ValueId::parse(id).expect("valid value id")
}

fn version(keyring: &str, v: u32, state: VersionState) -> KeyVersion {
    KeyVersion {
        keyring: ring(keyring),
        version: v,
        state,
        created_at: at(i64::from(v)),
        activated_at: Some(at(i64::from(v) + 1)),
        rotated_at: None,
        retired_at: None,
        usage_count: 0,
        created_by: None,
        wrapped: custody_ref(&format!("{keyring}-v{v}")),
    }
}

fn value(keyring: &str, id: &str, v: u32, byte: u8) -> SealedValue {
    SealedValue {
        keyring: ring(keyring),
        id: vid(id),
        key_version: v,
        sealed: vec![1, 0, 0, 0, v as u8, byte, byte],
        created_at: t0(),
        updated_at: t0(),
    }
}

pub(super) async fn one_genesis_per_agent(store: Arc<dyn StateStore>) {
    seed(
        &*store,
        &[("org-a", vec![key("org-a", "org-a.k1", KeyState::Active, t0())])],
        "genesis: seed",
    )
    .await;
    let first = record_of_kind("agent-1", "org-a", "org-a.k1", RecordKind::Genesis);
    let mut tx = store.begin().await.must("genesis: begin");
    tx.insert_records(std::slice::from_ref(&first))
        .await
        .must("genesis: first");
    tx.commit().await.must("genesis: commit");
    let second = record_of_kind("agent-1", "org-a", "org-a.k1", RecordKind::Genesis);
    let mut tx = store.begin().await.must("genesis: begin");
    expect_reason(
        tx.insert_records(&[second]).await,
        Reason::AlreadyExists,
        "genesis: second for one agent",
    );
    drop(tx);
    let other = record_of_kind("agent-2", "org-a", "org-a.k1", RecordKind::Genesis);
    let mut tx = store.begin().await.must("genesis: begin");
    tx.insert_records(&[other]).await.must("genesis: another agent");
    tx.commit().await.must("genesis: commit");
}

pub(super) async fn keyrings_and_versions(store: Arc<dyn StateStore>) {
    let what = "keyrings";
    let k = Keyring {
        name: ring("payments"),
        current_version: 1,
        created_at: t0(),
        rotated_at: None,
    };
    let mut tx = store.begin().await.must(what);
    tx.insert_keyring(&k).await.must("keyrings: insert");
    tx.insert_key_version(&version("payments", 1, VersionState::Current))
        .await
        .must("versions: insert v1");
    tx.insert_key_version(&version("payments", 2, VersionState::Pending))
        .await
        .must("versions: insert v2");
    tx.commit().await.must(what);

    // Each expected failure in a transaction of its own: after a failed
    // call a transaction is dropped, never reused (PostgreSQL aborts it).
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.insert_keyring(&k).await,
        Reason::AlreadyExists,
        "keyrings: duplicate",
    );
    drop(tx);
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.insert_key_version(&version("payments", 2, VersionState::Pending))
            .await,
        Reason::AlreadyExists,
        "versions: duplicate",
    );
    drop(tx);
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.update_key_version(&version("payments", 9, VersionState::Active))
            .await,
        Reason::NotFound,
        "versions: update missing",
    );
    drop(tx);
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.add_usage(&ring("payments"), 9, 1).await,
        Reason::NotFound,
        "usage of a missing version",
    );
    drop(tx);
    let mut tx = store.begin().await.must(what);
    let mut missing = k.clone();
    missing.name = ring("nope");
    expect_reason(
        tx.update_keyring(&missing).await,
        Reason::NotFound,
        "keyrings: update missing",
    );
    drop(tx);

    assert_eq!(
        store.get_keyring(&ring("payments")).await.must(what),
        Some(k.clone()),
        "{what}: get"
    );
    assert_eq!(
        store.get_keyring(&ring("nope")).await.must(what),
        None,
        "{what}: get missing"
    );
    assert_eq!(store.list_keyrings().await.must(what), vec![k.clone()], "{what}: list");
    let listed = store.list_key_versions(&ring("payments")).await.must(what);
    assert_eq!(
        listed.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2],
        "versions ascending"
    );
    assert_eq!(
        listed[0],
        version("payments", 1, VersionState::Current),
        "versions round-trip"
    );

    let mut tx = store.begin().await.must(what);
    tx.add_usage(&ring("payments"), 1, 5).await.must("usage");
    tx.add_usage(&ring("payments"), 1, 7).await.must("usage");
    let mut v1 = version("payments", 1, VersionState::Active);
    v1.rotated_at = Some(at(100));
    tx.update_key_version(&v1).await.must("versions: update");
    tx.delete_key_version(&ring("payments"), 2)
        .await
        .must("versions: delete");
    tx.delete_key_version(&ring("payments"), 2)
        .await
        .must("versions: delete missing is fine");
    let mut k2 = k.clone();
    k2.current_version = 3;
    k2.rotated_at = Some(at(100));
    tx.update_keyring(&k2).await.must("keyrings: update");
    assert_eq!(
        tx.get_keyring(&ring("payments")).await.must(what),
        Some(k2.clone()),
        "tx sees its writes"
    );
    tx.commit().await.must(what);

    let listed = store.list_key_versions(&ring("payments")).await.must(what);
    assert_eq!(listed.len(), 1, "deleted version gone");
    assert_eq!(listed[0].usage_count, 12, "usage adds up and survives updates");
    assert_eq!(listed[0].state, VersionState::Active);
    assert_eq!(listed[0].rotated_at, Some(at(100)));
}

pub(super) async fn values(store: Arc<dyn StateStore>) {
    let what = "values";
    let mut tx = store.begin().await.must(what);
    let ids: Vec<String> = (0..25).map(|i| format!("db/value-{i:03}")).collect();
    let batch: Vec<SealedValue> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| value("payments", id, if i % 5 == 0 { 2 } else { 1 }, i as u8))
        .collect();
    tx.put_values(&batch).await.must("values: put");
    tx.put_values(&[value("other", "db/value-000", 1, 9)])
        .await
        .must("values: other keyring");
    tx.commit().await.must(what);

    let got = store
        .get_value(&ring("payments"), &vid("db/value-003"))
        .await
        .must(what);
    assert_eq!(got, Some(batch[3].clone()), "{what}: round trip");
    assert_eq!(store.get_value(&ring("payments"), &vid("nope")).await.must(what), None);

    // Keyset paging in id order, within one keyring.
    let mut seen = Vec::new();
    let mut after: Option<ValueId> = None;
    loop {
        let page = store
            .list_values(&ring("payments"), None, after.as_ref(), 7)
            .await
            .must(what);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = Some(page.last().expect("non-empty").id.clone());
        seen.extend(page.into_iter().map(|v| v.id.to_string()));
    }
    assert_eq!(seen, ids, "{what}: every value once, in id order");
    let old = store
        .list_values(&ring("payments"), Some(2), None, 100)
        .await
        .must(what);
    assert_eq!(old.len(), 20, "{what}: below_version filters");
    assert!(old.iter().all(|v| v.key_version < 2));
    assert_eq!(
        store.count_values_by_version(&ring("payments")).await.must(what),
        vec![(1, 20), (2, 5)],
        "{what}: distribution"
    );

    // Replacing keeps created_at; reseal is conditional on the version.
    let mut tx = store.begin().await.must(what);
    let mut replaced = value("payments", "db/value-001", 1, 77);
    replaced.created_at = at(500);
    replaced.updated_at = at(500);
    tx.put_values(&[replaced]).await.must("values: replace");
    let reseals = vec![
        Reseal {
            id: vid("db/value-001"),
            from_version: 1,
            sealed: vec![9; 30],
        },
        Reseal {
            id: vid("db/value-002"),
            from_version: 1,
            sealed: vec![8; 30],
        },
        Reseal {
            id: vid("db/value-005"),
            from_version: 1,
            sealed: vec![7; 30],
        }, // is on v2: skipped
        Reseal {
            id: vid("db/missing"),
            from_version: 1,
            sealed: vec![6; 30],
        },
    ];
    let n = tx
        .reseal_values(&ring("payments"), 3, &reseals, at(600))
        .await
        .must("values: reseal");
    assert_eq!(
        n, 2,
        "{what}: only values still on their expected version are re-sealed"
    );
    assert_eq!(tx.count_values_at(&ring("payments"), 3).await.must(what), 2);
    tx.commit().await.must(what);
    let v1 = store
        .get_value(&ring("payments"), &vid("db/value-001"))
        .await
        .must(what)
        .expect("exists");
    assert_eq!(v1.key_version, 3);
    assert_eq!(v1.sealed, vec![9; 30]);
    assert_eq!(v1.created_at, t0(), "{what}: created_at kept on replace");
    assert_eq!(v1.updated_at, at(600));
    let v5 = store
        .get_value(&ring("payments"), &vid("db/value-005"))
        .await
        .must(what)
        .expect("exists");
    assert_eq!(v5.key_version, 2, "{what}: a value on another version is left alone");
    assert_eq!(
        store
            .list_values(&ring("other"), None, None, 100)
            .await
            .must(what)
            .len(),
        1,
        "{what}: keyrings are separate"
    );

    // An id stored before format characters were refused (U+200B) reads back.
    let legacy_id = ValueId::from_stored("legacy\u{200b}id").expect("a stored id");
    let legacy = SealedValue {
        id: legacy_id.clone(),
        ..value("other", "db/value-999", 1, 5)
    };
    let mut tx = store.begin().await.must(what);
    tx.put_values(std::slice::from_ref(&legacy))
        .await
        .must("values: legacy id");
    tx.commit().await.must(what);
    let listed = store
        .list_values(&ring("other"), None, None, 100)
        .await
        .must("values: list with a legacy id");
    assert!(listed.contains(&legacy), "{what}: a legacy id is listed");
    assert_eq!(
        store.get_value(&ring("other"), &legacy_id).await.must(what),
        Some(legacy),
        "{what}: a legacy id reads back"
    );
}

pub(super) async fn policies_and_target_audit(store: Arc<dyn StateStore>) {
    let what = "policies";
    let policy = Policy {
        name: "monthly".into(),
        trigger: Trigger::Any(vec![
            Trigger::MaxAgeDays(30),
            Trigger::Monthly {
                day: 1,
                hour: 2,
                minute: 0,
            },
        ]),
        migrate: true,
        retire_old: false,
        updated_at: t0(),
        procedure: Default::default(),
    };
    let mut tx = store.begin().await.must(what);
    tx.put_policy(&policy).await.must("policies: put");
    let mut changed = policy.clone();
    changed.retire_old = true;
    tx.put_policy(&changed).await.must("policies: replace");
    let mut events: Vec<AuditEvent> = (1..=4).map(|seq| audit_event(seq, at(seq))).collect();
    events[1].target = "keyring:payments".into();
    events[3].target = "keyring:payments".into();
    for e in &events {
        tx.append_audit(e).await.must("audit: append");
    }
    tx.commit().await.must(what);
    assert_eq!(store.get_policy("monthly").await.must(what), Some(changed.clone()));
    assert_eq!(store.list_policies().await.must(what), vec![changed]);
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.delete_policy("nope").await,
        Reason::NotFound,
        "policies: delete missing",
    );
    drop(tx);
    let for_target = store.list_audit_for_target("keyring:payments", 10).await.must(what);
    assert_eq!(
        for_target.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 2],
        "newest first, one target"
    );
    assert_eq!(
        store
            .list_audit_for_target("keyring:payments", 1)
            .await
            .must(what)
            .len(),
        1
    );
    let mut tx = store.begin().await.must(what);
    tx.delete_policy("monthly").await.must("policies: delete");
    tx.commit().await.must(what);
    assert_eq!(store.get_policy("monthly").await.must(what), None);
}

pub(super) async fn snapshot_restore_and_clear(store: Arc<dyn StateStore>, other: Arc<dyn StateStore>) {
    let what = "snapshot";
    seed(
        &*store,
        &[("org-a", vec![key("org-a", "org-a.k1", KeyState::Active, t0())])],
        "snapshot: seed",
    )
    .await;
    let mut tx = store.begin().await.must(what);
    tx.put_meta("kek", b"params").await.must(what);
    tx.put_meta("temporary", b"x").await.must(what);
    tx.delete_meta("temporary").await.must("meta: delete");
    tx.delete_meta("never-there").await.must("meta: delete missing is fine");
    tx.insert_records(&[record_of_kind("agent-1", "org-a", "org-a.k1", RecordKind::Genesis)])
        .await
        .must(what);
    tx.insert_keyring(&Keyring {
        name: ring("k"),
        current_version: 1,
        created_at: t0(),
        rotated_at: None,
    })
    .await
    .must(what);
    let mut v = version("k", 1, VersionState::Current);
    v.usage_count = 3;
    tx.insert_key_version(&v).await.must(what);
    tx.put_values(&[value("k", "a", 1, 1), value("k", "b", 1, 2)])
        .await
        .must(what);
    for seq in 1..=3 {
        tx.append_audit(&audit_event(seq, at(seq))).await.must(what);
    }
    tx.commit().await.must(what);
    assert_eq!(
        store.get_meta("temporary").await.must(what),
        None,
        "{what}: deleted meta"
    );

    let snap = store.snapshot().await.must(what);
    assert_eq!(snap.authorities.len(), 1);
    assert_eq!(snap.keys.len(), 1);
    assert_eq!(snap.records.len(), 1);
    assert_eq!(snap.values.len(), 2);
    assert_eq!(snap.versions[0].usage_count, 3);
    assert_eq!(snap.audit.len(), 3);
    assert_eq!(snap.audit_head.as_ref().map(|h| h.seq), Some(3));
    assert_eq!(snap.meta.len(), 1);

    // Restored elsewhere, the copy is identical.
    let mut tx = other.begin().await.must(what);
    snap.restore_into(tx.as_mut()).await.must("snapshot: restore");
    tx.commit().await.must(what);
    assert_eq!(other.snapshot().await.must(what), snap, "{what}: restore round trip");

    let mut tx = store.begin().await.must(what);
    tx.clear_all().await.must("clear_all");
    tx.commit().await.must(what);
    let empty = store.snapshot().await.must(what);
    assert_eq!(
        empty,
        rotation_core::ports::Snapshot::default(),
        "{what}: clear_all empties everything"
    );
    // The audit log starts again from its genesis.
    let mut tx = store.begin().await.must(what);
    assert_eq!(tx.audit_head().await.must(what), None);
    tx.append_audit(&audit_event(1, at(1))).await.must("append after clear");
    tx.commit().await.must(what);
}
