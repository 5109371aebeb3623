//! The `StateStore` conformance suite: the behaviour every store adapter
//! must have, checked the same way for each of them.
//!
//! An adapter's tests call [`state_store_suite`] with a function that
//! creates a fresh, empty store:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conforms() {
//!     rotation_testkit::conformance::state_store_suite(|| async {
//!         std::sync::Arc::new(MyStore::open_temporary().await) as std::sync::Arc<dyn StateStore>
//!     })
//!     .await;
//! }
//! ```
//!
//! The suite only uses the public port. It inserts rows in reference order
//! (authorities, keys, runs and schedules before the rows pointing at
//! them), so stores that enforce foreign keys pass too, and it drops a
//! transaction after an operation expected to fail instead of reusing it
//! (some databases abort the whole transaction on a constraint error).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use rotation_core::audit::AuditHead;
use rotation_core::authority::{KeyState, SigningKey};
use rotation_core::chain::{RecordKind, TrustRecord, resigned_body};
use rotation_core::error::{Reason, Result};
use rotation_core::ids::{RotationId, Target};
use rotation_core::ports::{RecordQuery, StateStore};
use rotation_core::run::{Run, RunState};
use rotation_core::schedule::{Schedule, ScheduleState};
use rotation_core::time::Timestamp;

pub use crate::fixtures;
use crate::fixtures::{
    agent_id, at, audit_event, authority, authority_id, fake_hash, key, key_id, now_micros, record, record_of_kind,
    run, schedule, t0, target,
};

/// How long the suite waits for any single store operation before it
/// reports a hang (e.g. a read blocked by an open write transaction).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the first of two concurrent write transactions stays open.
const HOLD: Duration = Duration::from_millis(100);

/// Runs every conformance case, each on a fresh store from `new_store`,
/// and panics with a message naming the case and the operation on the
/// first failure.
///
/// Must be awaited on a Tokio runtime (the concurrency case spawns a task
/// and sleeps); a current-thread runtime (`#[tokio::test]`) is enough.
pub async fn state_store_suite<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn StateStore>>,
{
    meta(new_store().await).await;
    authorities(new_store().await).await;
    keys(new_store().await).await;
    records(new_store().await).await;
    record_paging(new_store().await).await;
    resign(new_store().await).await;
    runs(new_store().await).await;
    schedules(new_store().await).await;
    audit(new_store().await).await;
    rollback_on_drop(new_store().await).await;
    uncommitted_writes_are_invisible(new_store().await).await;
    write_transactions_serialise(new_store().await).await;
    timestamps_round_trip(new_store().await).await;
    keyrings::one_genesis_per_agent(new_store().await).await;
    keyrings::keyrings_and_versions(new_store().await).await;
    keyrings::values(new_store().await).await;
    keyrings::policies_and_target_audit(new_store().await).await;
    keyrings::snapshot_restore_and_clear(new_store().await, new_store().await).await;
    secrets::secrets_and_versions(new_store().await).await;
    secrets::outbox(new_store().await).await;
    secrets::schedule_retry_fields(new_store().await).await;
    secrets::snapshot_restore_and_clear(new_store().await, new_store().await).await;
    audit_query::audit_query(new_store().await).await;
}

mod audit_query;
mod custody;
mod keyrings;
mod secret_backend;
mod secrets;

pub use custody::{Verify, custody_suite};
pub use secret_backend::secret_backend_suite;

/// Unwraps store results with a message naming the failed operation.
trait Must<T> {
    /// The value, or a panic naming `what` and the error.
    fn must(self, what: &str) -> T;
}

impl<T> Must<T> for Result<T> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        match self {
            Ok(value) => value,
            Err(e) => panic!(
                "StateStore conformance: {what}: unexpected error ({}): {}",
                e.reason, e.message
            ),
        }
    }
}

/// Checks that `result` is an error with `reason`.
#[track_caller]
fn expect_reason<T: Debug>(result: Result<T>, reason: Reason, what: &str) {
    match result {
        Ok(value) => panic!("StateStore conformance: {what}: expected a {reason} error, got Ok({value:?})"),
        Err(e) if e.reason == reason => {}
        Err(e) => panic!(
            "StateStore conformance: {what}: expected a {reason} error, got {}: {}",
            e.reason, e.message
        ),
    }
}

/// Awaits `future`, panicking if it takes longer than [`OPERATION_TIMEOUT`].
async fn within<T>(future: impl Future<Output = T>, what: &str) -> T {
    match tokio::time::timeout(OPERATION_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("StateStore conformance: {what}: no answer within {OPERATION_TIMEOUT:?} (deadlock?)"),
    }
}

fn key_ids(keys: &[&str]) -> Vec<rotation_core::ids::KeyId> {
    keys.iter().map(|k| key_id(k)).collect()
}

fn sorted_records(mut records: Vec<TrustRecord>) -> Vec<TrustRecord> {
    records.sort_by(|a, b| (&a.agent_id, a.id).cmp(&(&b.agent_id, b.id)));
    records
}

fn all_records() -> RecordQuery {
    RecordQuery {
        limit: usize::MAX,
        ..RecordQuery::default()
    }
}

/// Inserts and commits authorities with their keys, in reference order.
async fn seed(store: &dyn StateStore, authorities: &[(&str, Vec<SigningKey>)], what: &str) {
    let mut tx = store.begin().await.must(what);
    for (id, keys) in authorities {
        let current = keys
            .first()
            .map(|k| k.key_id.to_string())
            .unwrap_or_else(|| format!("{id}.k1"));
        tx.insert_authority(&authority(id, &current)).await.must(what);
        for k in keys {
            tx.insert_key(k).await.must(what);
        }
    }
    tx.commit().await.must(what);
}

async fn insert_records(store: &dyn StateStore, records: &[TrustRecord], what: &str) {
    let mut tx = store.begin().await.must(what);
    tx.insert_records(records).await.must(what);
    tx.commit().await.must(what);
}

async fn insert_runs(store: &dyn StateStore, runs: &[&Run], what: &str) {
    let mut tx = store.begin().await.must(what);
    for r in runs {
        tx.insert_run(r).await.must(what);
    }
    tx.commit().await.must(what);
}

// ---------------------------------------------------------------- cases

async fn meta(store: Arc<dyn StateStore>) {
    assert_eq!(
        store.get_meta("kek.salt").await.must("meta: get missing"),
        None,
        "meta: a missing key must read as None"
    );
    let mut tx = store.begin().await.must("meta: begin");
    tx.put_meta("kek.salt", &[0, 1, 2, 255]).await.must("meta: put");
    tx.put_meta("empty", &[]).await.must("meta: put empty value");
    tx.commit().await.must("meta: commit");
    assert_eq!(
        store.get_meta("kek.salt").await.must("meta: get"),
        Some(vec![0, 1, 2, 255]),
        "meta: value must round-trip"
    );
    assert_eq!(
        store.get_meta("empty").await.must("meta: get empty"),
        Some(Vec::new()),
        "meta: an empty value must read as Some(empty), not None"
    );

    let mut tx = store.begin().await.must("meta: begin overwrite");
    tx.put_meta("kek.salt", b"new value").await.must("meta: overwrite");
    tx.commit().await.must("meta: commit overwrite");
    assert_eq!(
        store.get_meta("kek.salt").await.must("meta: get overwritten"),
        Some(b"new value".to_vec()),
        "meta: put_meta must overwrite an existing value"
    );
}

async fn authorities(store: Arc<dyn StateStore>) {
    let b = authority("org-b", "org-b.k1");
    let mut a = authority("org-a", "org-a.k1");
    a.last_rotated_at = None;

    let mut tx = store.begin().await.must("authorities: begin");
    tx.insert_authority(&b).await.must("authorities: insert org-b");
    tx.insert_authority(&a).await.must("authorities: insert org-a");
    assert_eq!(
        tx.get_authority(&b.id).await.must("authorities: tx get"),
        Some(b.clone()),
        "authorities: a transaction must read its own insert"
    );
    assert_eq!(
        tx.get_authority(&authority_id("org-missing"))
            .await
            .must("authorities: tx get missing"),
        None,
        "authorities: a missing authority must read as None in a transaction"
    );
    tx.commit().await.must("authorities: commit");

    assert_eq!(
        store.get_authority(&a.id).await.must("authorities: get"),
        Some(a.clone()),
        "authorities: authority must round-trip (last_rotated_at None)"
    );
    assert_eq!(
        store.get_authority(&b.id).await.must("authorities: get"),
        Some(b.clone()),
        "authorities: authority must round-trip"
    );
    assert_eq!(
        store
            .get_authority(&authority_id("org-missing"))
            .await
            .must("authorities: get missing"),
        None,
        "authorities: a missing authority must read as None"
    );
    assert_eq!(
        store.list_authorities().await.must("authorities: list"),
        vec![a.clone(), b.clone()],
        "authorities: list_authorities must return all, ordered by id"
    );

    let mut b2 = b.clone();
    b2.name = "Renamed".into();
    b2.current_key_id = key_id("org-b.k2");
    b2.rotation_period_days = 30;
    b2.grace_period_hours = 0;
    b2.last_rotated_at = Some(at(3600));
    b2.prepublish_hours = 48;
    let mut tx = store.begin().await.must("authorities: begin update");
    tx.update_authority(&b2).await.must("authorities: update");
    tx.commit().await.must("authorities: commit update");
    assert_eq!(
        store.get_authority(&b.id).await.must("authorities: get updated"),
        Some(b2.clone()),
        "authorities: update_authority must replace every field"
    );

    let mut tx = store.begin().await.must("authorities: begin duplicate");
    expect_reason(
        tx.insert_authority(&b).await,
        Reason::AlreadyExists,
        "authorities: inserting an existing id",
    );
    drop(tx);

    let mut tx = store.begin().await.must("authorities: begin update missing");
    expect_reason(
        tx.update_authority(&authority("org-missing", "org-missing.k1")).await,
        Reason::NotFound,
        "authorities: updating a missing authority",
    );
    drop(tx);

    assert_eq!(
        store.list_authorities().await.must("authorities: list after failures"),
        vec![a, b2],
        "authorities: failed operations must change nothing"
    );
}

async fn keys(store: Arc<dyn StateStore>) {
    let k1 = key("org-a", "org-a.k1", KeyState::Active, t0());
    let k2 = key("org-a", "org-a.k2", KeyState::Pending, at(3600));
    let creator = run(target("org-a"), RunState::Completed, at(-7200));
    let mut k3 = key("org-a", "org-a.k3", KeyState::Revoked, at(-3600));
    k3.rotated_at = Some(at(-1800));
    k3.grace_until = Some(at(-900));
    k3.revoked_at = Some(at(-600));
    k3.revocation_reason = Some("compromised: ünïcødé reason".into());
    k3.created_by = Some(creator.rotation_id);
    let kb = key("org-b", "org-b.k1", KeyState::Active, t0());

    seed(
        &*store,
        &[("org-a", vec![]), ("org-b", vec![])],
        "keys: seed authorities",
    )
    .await;
    insert_runs(&*store, &[&creator], "keys: seed run").await;
    let mut tx = store.begin().await.must("keys: begin");
    for k in [&k1, &k2, &k3, &kb] {
        tx.insert_key(k).await.must("keys: insert");
    }
    assert_eq!(
        tx.get_key(&k3.key_id).await.must("keys: tx get"),
        Some(k3.clone()),
        "keys: a transaction must read its own insert"
    );
    tx.commit().await.must("keys: commit");

    for k in [&k1, &k2, &k3, &kb] {
        assert_eq!(
            store.get_key(&k.key_id).await.must("keys: get"),
            Some(k.clone()),
            "keys: key {} must round-trip",
            k.key_id
        );
    }
    let stored = store.get_key(&k3.key_id).await.must("keys: get").expect("key exists");
    assert_eq!(
        stored.custody, k3.custody,
        "keys: the CustodyRef (name and handle bytes) must round-trip"
    );
    assert_eq!(
        store.get_key(&key_id("org-a.missing")).await.must("keys: get missing"),
        None,
        "keys: a missing key must read as None"
    );
    assert_eq!(
        store.list_keys(&authority_id("org-a")).await.must("keys: list"),
        vec![k3.clone(), k1.clone(), k2.clone()],
        "keys: list_keys must return the authority's keys, oldest first"
    );
    assert_eq!(
        store.list_keys(&authority_id("org-b")).await.must("keys: list org-b"),
        vec![kb.clone()],
        "keys: list_keys must return only the authority's keys"
    );
    assert!(
        store
            .list_keys(&authority_id("org-missing"))
            .await
            .must("keys: list missing")
            .is_empty(),
        "keys: list_keys of an unknown authority must be empty"
    );

    let mut k2b = k2.clone();
    k2b.state = KeyState::Active;
    k2b.activated_at = Some(at(4000));
    k2b.custody.handle = vec![42; 300];
    k2b.custody.custody = "vault-transit".into();
    let mut tx = store.begin().await.must("keys: begin update");
    tx.update_key(&k2b).await.must("keys: update");
    tx.commit().await.must("keys: commit update");
    assert_eq!(
        store.get_key(&k2.key_id).await.must("keys: get updated"),
        Some(k2b.clone()),
        "keys: update_key must replace every field"
    );

    let mut tx = store.begin().await.must("keys: begin duplicate");
    expect_reason(
        tx.insert_key(&k1).await,
        Reason::AlreadyExists,
        "keys: inserting an existing id",
    );
    drop(tx);
    let mut tx = store.begin().await.must("keys: begin update missing");
    expect_reason(
        tx.update_key(&key("org-a", "org-a.missing", KeyState::Active, t0()))
            .await,
        Reason::NotFound,
        "keys: updating a missing key",
    );
    drop(tx);

    let mut tx = store.begin().await.must("keys: begin delete");
    tx.delete_key(&k2.key_id).await.must("keys: delete");
    assert_eq!(
        tx.get_key(&k2.key_id).await.must("keys: tx get deleted"),
        None,
        "keys: a transaction must not see a key it deleted"
    );
    tx.delete_key(&key_id("org-a.missing"))
        .await
        .must("keys: deleting a missing key must not be an error");
    tx.commit().await.must("keys: commit delete");
    assert_eq!(
        store.get_key(&k2.key_id).await.must("keys: get deleted"),
        None,
        "keys: a deleted key must be gone"
    );
    assert_eq!(
        store
            .list_keys(&authority_id("org-a"))
            .await
            .must("keys: list after delete"),
        vec![k3, k1],
        "keys: list_keys after delete"
    );
}

async fn records(store: Arc<dyn StateStore>) {
    let a1 = key("org-a", "org-a.k1", KeyState::Active, t0());
    let a2 = key("org-a", "org-a.k2", KeyState::Grace, at(-3600));
    let b1 = key("org-b", "org-b.k1", KeyState::Active, t0());
    seed(
        &*store,
        &[("org-a", vec![a1, a2]), ("org-b", vec![b1])],
        "records: seed authorities",
    )
    .await;

    let mut delegation = record_of_kind("agent-1", "org-a", "org-a.k1", RecordKind::Delegation);
    delegation.body["extra"] = serde_json::json!({"nested": [1, "two", null, true, {"x": -3}], "empty": {}});
    let first_batch = vec![
        record_of_kind("agent-3", "org-b", "org-b.k1", RecordKind::Capability),
        record("agent-1", "org-a", "org-a.k1"),
        record("agent-2", "org-a", "org-a.k2"),
        delegation,
    ];
    let second_batch = vec![
        record_of_kind("agent-1", "org-a", "org-a.k1", RecordKind::Capability),
        record("agent-3", "org-a", "org-a.k1"),
        record_of_kind("agent-2", "org-a", "org-a.k2", RecordKind::Capability),
    ];
    insert_records(&*store, &first_batch, "records: insert").await;
    insert_records(&*store, &second_batch, "records: insert second batch").await;
    let everything = sorted_records(first_batch.iter().chain(&second_batch).cloned().collect());

    let list = |query: RecordQuery| {
        let store = Arc::clone(&store);
        async move { store.list_records(&query).await.must("records: list") }
    };
    let filter = |f: &dyn Fn(&TrustRecord) -> bool| everything.iter().filter(|r| f(r)).cloned().collect::<Vec<_>>();

    assert_eq!(
        list(all_records()).await,
        everything,
        "records: every record must round-trip (body, signature, ...), ordered by (agent_id, id)"
    );
    assert_eq!(
        list(RecordQuery {
            agent: Some(agent_id("agent-1")),
            ..all_records()
        })
        .await,
        filter(&|r| r.agent_id.as_str() == "agent-1"),
        "records: filter by agent"
    );
    assert_eq!(
        list(RecordQuery {
            authority: Some(authority_id("org-a")),
            ..all_records()
        })
        .await,
        filter(&|r| r.authority_id.as_str() == "org-a"),
        "records: filter by authority"
    );
    assert_eq!(
        list(RecordQuery {
            authority: Some(authority_id("org-a")),
            key_ids: Some(key_ids(&["org-a.k2"])),
            ..all_records()
        })
        .await,
        filter(&|r| r.key_id.as_str() == "org-a.k2"),
        "records: filter by authority and key ids"
    );
    assert_eq!(
        list(RecordQuery {
            key_ids: Some(key_ids(&["org-a.k1", "org-b.k1"])),
            ..all_records()
        })
        .await,
        filter(&|r| r.key_id.as_str() != "org-a.k2"),
        "records: filter by several key ids"
    );
    assert_eq!(
        list(RecordQuery {
            key_ids: Some(Vec::new()),
            ..all_records()
        })
        .await,
        Vec::new(),
        "records: an empty key id list must match nothing"
    );
    assert_eq!(
        list(RecordQuery {
            agent: Some(agent_id("agent-3")),
            authority: Some(authority_id("org-a")),
            key_ids: Some(key_ids(&["org-a.k1"])),
            ..all_records()
        })
        .await,
        filter(&|r| r.agent_id.as_str() == "agent-3" && r.authority_id.as_str() == "org-a"),
        "records: combined filters"
    );
    assert_eq!(
        list(RecordQuery {
            limit: 2,
            ..all_records()
        })
        .await,
        everything[..2].to_vec(),
        "records: limit"
    );

    let mut tx = store.begin().await.must("records: begin duplicate");
    expect_reason(
        tx.insert_records(&first_batch[1..2]).await,
        Reason::AlreadyExists,
        "records: inserting an existing id",
    );
    drop(tx);
    let fresh = record("agent-9", "org-a", "org-a.k1");
    let mut tx = store.begin().await.must("records: begin duplicate in batch");
    expect_reason(
        tx.insert_records(&[fresh.clone(), second_batch[0].clone()]).await,
        Reason::AlreadyExists,
        "records: inserting a batch containing an existing id",
    );
    drop(tx);
    assert_eq!(
        list(all_records()).await,
        everything,
        "records: a failed (and dropped) insert must leave the records unchanged"
    );
}

async fn record_paging(store: Arc<dyn StateStore>) {
    let a1 = key("org-a", "org-a.k1", KeyState::Active, t0());
    let b1 = key("org-b", "org-b.k1", KeyState::Active, t0());
    seed(&*store, &[("org-a", vec![a1]), ("org-b", vec![b1])], "paging: seed").await;

    // "agent-10" sorts before "agent-9": ordering is by the id's bytes.
    let agents = ["agent-9", "agent-10", "agent-2", "agent-1"];
    let mut mine = Vec::new();
    let mut all = Vec::new();
    for round in 0..6 {
        for agent in agents {
            let r = record(agent, "org-a", "org-a.k1");
            mine.push(r.clone());
            all.push(r);
            if round % 2 == 0 {
                all.push(record(agent, "org-b", "org-b.k1"));
            }
        }
    }
    // Insert in two interleaved halves so insertion order is not id order.
    let (odd, even): (Vec<_>, Vec<_>) = all.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 1);
    insert_records(
        &*store,
        &odd.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        "paging: insert",
    )
    .await;
    insert_records(
        &*store,
        &even.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        "paging: insert",
    )
    .await;
    let mine = sorted_records(mine);
    let all = sorted_records(all);
    for (authority, expected) in [
        ("org-a", mine.len()),
        ("org-b", all.len() - mine.len()),
        ("org-none", 0),
    ] {
        assert_eq!(
            store
                .count_records_of(&authority_id(authority))
                .await
                .must("paging: count_records_of"),
            expected as u64,
            "paging: count_records_of({authority}) counts the records it signed"
        );
    }

    for (page_size, authority) in [(5, Some("org-a")), (1, Some("org-a")), (7, None)] {
        let expected = if authority.is_some() { &mine } else { &all };
        let mut query = RecordQuery {
            authority: authority.map(authority_id),
            limit: page_size,
            ..RecordQuery::default()
        };
        let mut collected: Vec<TrustRecord> = Vec::new();
        loop {
            let page = store.list_records(&query).await.must("paging: list page");
            assert!(
                page.len() <= page_size,
                "paging: a page of limit {page_size} returned {} records",
                page.len()
            );
            let Some(last) = page.last() else { break };
            query.after = Some((last.agent_id.clone(), last.id));
            collected.extend(page);
            assert!(
                collected.len() <= expected.len(),
                "paging: keyset paging returned more records than exist (after is not exclusive?)"
            );
        }
        assert_eq!(
            collected.len(),
            expected.len(),
            "paging: page size {page_size}: every record exactly once"
        );
        assert_eq!(
            &collected, expected,
            "paging: page size {page_size}: records in (agent_id, id) order, each exactly once"
        );
    }

    let last = all.last().expect("records exist");
    assert!(
        store
            .list_records(&RecordQuery {
                after: Some((last.agent_id.clone(), last.id)),
                ..all_records()
            })
            .await
            .must("paging: after the last record")
            .is_empty(),
        "paging: nothing comes after the last record"
    );
    let from_agent_2: Vec<TrustRecord> = all
        .iter()
        .filter(|r| r.agent_id.as_str() >= "agent-2")
        .cloned()
        .collect();
    assert_eq!(
        store
            .list_records(&RecordQuery {
                after: Some((agent_id("agent-2"), uuid::Uuid::nil())),
                ..all_records()
            })
            .await
            .must("paging: after a position that is not a record"),
        from_agent_2,
        "paging: `after` is a position, not necessarily an existing record"
    );
}

async fn resign(store: Arc<dyn StateStore>) {
    let a1 = key("org-a", "org-a.k1", KeyState::Grace, at(-7200));
    let a2 = key("org-a", "org-a.k2", KeyState::Active, t0());
    let a3 = key("org-a", "org-a.k3", KeyState::Grace, at(-3600));
    let b1 = key("org-b", "org-b.k1", KeyState::Active, t0());
    seed(
        &*store,
        &[("org-a", vec![a2, a1, a3]), ("org-b", vec![b1])],
        "resign: seed authorities",
    )
    .await;
    let rotation = run(target("org-a"), RunState::Finishing, t0());
    insert_runs(&*store, &[&rotation], "resign: seed run").await;

    let originals = vec![
        record("agent-1", "org-a", "org-a.k1"),
        record_of_kind("agent-1", "org-a", "org-a.k1", RecordKind::Capability),
        record("agent-2", "org-a", "org-a.k1"),
        record_of_kind("agent-2", "org-a", "org-a.k3", RecordKind::Capability),
        record("agent-3", "org-b", "org-b.k1"),
    ];
    insert_records(&*store, &originals, "resign: insert").await;

    let new_key = key_id("org-a.k2");
    let signed_at = at(60);
    let resigned_version = |r: &TrustRecord| {
        let mut updated = r.clone();
        updated.body = resigned_body(r, &new_key, signed_at);
        updated.key_id = new_key.clone();
        updated.signature = vec![9; 64];
        updated.signed_at = signed_at;
        updated.resigned_by = Some(rotation.rotation_id);
        updated
    };
    let mut batch: Vec<TrustRecord> = originals
        .iter()
        .map(|r| {
            let mut r = resigned_version(r);
            // Fields other than body, key, signature, signed_at and
            // resigned_by must not be written.
            r.issued_at = at(999);
            r
        })
        .collect();
    batch.push(resigned_version(&record("agent-4", "org-a", "org-a.k1")));

    let mut tx = store.begin().await.must("resign: begin");
    let replaced = tx
        .resign_records(&key_ids(&["org-a.k1"]), &batch)
        .await
        .must("resign: resign_records");
    tx.commit().await.must("resign: commit");
    assert_eq!(
        replaced, 3,
        "resign: resign_records must count only records whose stored key is expected"
    );

    let expected: Vec<TrustRecord> = sorted_records(
        originals
            .iter()
            .map(|r| {
                if r.key_id.as_str() == "org-a.k1" {
                    resigned_version(r)
                } else {
                    r.clone()
                }
            })
            .collect(),
    );
    assert_eq!(
        store.list_records(&all_records()).await.must("resign: list"),
        expected,
        "resign: only records signed by an expected key are replaced (body, key, signature, signed_at, \
         resigned_by), other fields and records are untouched, unknown records are not inserted"
    );
    assert_eq!(
        store
            .count_agents_resigned_by(rotation.rotation_id)
            .await
            .must("resign: count agents"),
        2,
        "resign: count_agents_resigned_by counts distinct agents"
    );
    assert_eq!(
        store
            .count_agents_resigned_by(RotationId::generate())
            .await
            .must("resign: count agents of another rotation"),
        0,
        "resign: count_agents_resigned_by of a rotation that re-signed nothing"
    );

    let mut tx = store.begin().await.must("resign: begin again");
    let again = tx
        .resign_records(&key_ids(&["org-a.k1"]), &batch)
        .await
        .must("resign: resign_records again");
    let others = tx
        .resign_records(&key_ids(&["org-a.k1", "org-a.k3"]), &batch)
        .await
        .must("resign: resign_records with two expected keys");
    tx.commit().await.must("resign: commit again");
    assert_eq!(again, 0, "resign: records already re-signed are left alone");
    assert_eq!(others, 1, "resign: every key in expected_key is matched");
    assert_eq!(
        store
            .count_agents_resigned_by(rotation.rotation_id)
            .await
            .must("resign: count agents again"),
        2,
        "resign: agents are counted once"
    );
}

async fn runs(store: Arc<dyn StateStore>) {
    let ta = target("org-a");
    let tb = Target::Keyring(rotation_core::ids::KeyringName::parse("payments").unwrap());
    let tc = Target::Secret("db/prod".into());
    let td = Target::Secret("other".into());
    seed(
        &*store,
        &[("org-a", vec![key("org-a", "org-a.k1", KeyState::Active, at(-86_400))])],
        "runs: seed authority",
    )
    .await;
    let origin = schedule(ta.clone(), at(-60));
    let mut tx = store.begin().await.must("runs: begin schedule");
    tx.insert_schedule(&origin).await.must("runs: insert schedule");
    tx.commit().await.must("runs: commit schedule");

    let mut r1 = run(ta.clone(), RunState::Creating, t0());
    r1.old_key_id = Some(key_id("org-a.k1"));
    r1.new_key_id = Some(key_id("org-a.k2"));
    r1.grace_period_hours = 48;
    r1.grace_period_end = Some(at(48 * 3600));
    r1.chains_updated = 7;
    r1.error_reason = Some("backend_unavailable".into());
    r1.error_message = Some("custody timed out".into());
    r1.schedule_id = Some(origin.id);

    let mut tx = store.begin().await.must("runs: begin");
    tx.insert_run(&r1).await.must("runs: insert");
    assert_eq!(
        tx.get_run(r1.rotation_id).await.must("runs: tx get"),
        Some(r1.clone()),
        "runs: a transaction must read its own insert"
    );
    assert_eq!(
        tx.active_run(&ta).await.must("runs: active_run"),
        Some(r1.clone()),
        "runs: active_run must return the target's non-terminal run"
    );
    assert_eq!(
        tx.active_run(&tb).await.must("runs: active_run other"),
        None,
        "runs: active_run of a target without runs"
    );
    tx.commit().await.must("runs: commit");
    assert_eq!(
        store.get_run(r1.rotation_id).await.must("runs: get"),
        Some(r1.clone()),
        "runs: a run must round-trip"
    );
    assert_eq!(
        store.get_run(RotationId::generate()).await.must("runs: get missing"),
        None,
        "runs: a missing run must read as None"
    );

    let mut tx = store.begin().await.must("runs: begin concurrent");
    expect_reason(
        tx.insert_run(&run(ta.clone(), RunState::Pending, at(10))).await,
        Reason::ConcurrentRotation,
        "runs: a second non-terminal run of the same target",
    );
    drop(tx);
    let mut tx = store.begin().await.must("runs: begin concurrent in one tx");
    tx.insert_run(&run(td.clone(), RunState::Pending, at(10)))
        .await
        .must("runs: insert");
    expect_reason(
        tx.insert_run(&run(td.clone(), RunState::Verifying, at(11))).await,
        Reason::ConcurrentRotation,
        "runs: a second non-terminal run of a target inserted in the same transaction",
    );
    drop(tx);

    let rb = run(tb.clone(), RunState::Pending, at(20));
    let rt = run(tc.clone(), RunState::Completed, at(20));
    insert_runs(&*store, &[&rb, &rt], "runs: insert runs of other targets").await;

    let mut r1_done = r1.clone();
    r1_done.state = RunState::Completed;
    r1_done.completed_at = Some(at(5));
    r1_done.updated_at = at(5);
    r1_done.error_reason = None;
    r1_done.error_message = None;
    let mut tx = store.begin().await.must("runs: begin update");
    tx.update_run(&r1_done).await.must("runs: update");
    assert_eq!(
        tx.active_run(&ta).await.must("runs: active_run after completion"),
        None,
        "runs: a terminal run is not active"
    );
    tx.commit().await.must("runs: commit update");
    assert_eq!(
        store.get_run(r1.rotation_id).await.must("runs: get updated"),
        Some(r1_done.clone()),
        "runs: update_run must replace every field"
    );

    let r3 = run(ta.clone(), RunState::Pending, at(30));
    let r0 = run(ta.clone(), RunState::Failed, at(-100));
    let rolled = run(ta.clone(), RunState::RolledBack, at(-50));
    insert_runs(
        &*store,
        &[&r3, &r0, &rolled],
        "runs: a new run once the previous one is terminal, and terminal runs beside it",
    )
    .await;

    let mut tx = store.begin().await.must("runs: begin duplicate");
    let mut duplicate = run(td.clone(), RunState::Completed, at(40));
    duplicate.rotation_id = r1.rotation_id;
    expect_reason(
        tx.insert_run(&duplicate).await,
        Reason::AlreadyExists,
        "runs: inserting an existing rotation id",
    );
    drop(tx);
    let mut tx = store.begin().await.must("runs: begin update missing");
    expect_reason(
        tx.update_run(&run(td.clone(), RunState::Completed, at(40))).await,
        Reason::NotFound,
        "runs: updating a missing run",
    );
    drop(tx);

    // Newest first; equal start times by rotation id, descending.
    let mut tie = [rb.clone(), rt.clone()];
    tie.sort_by_key(|r| std::cmp::Reverse(r.rotation_id));
    let newest_first = vec![
        r3.clone(),
        tie[0].clone(),
        tie[1].clone(),
        r1_done.clone(),
        rolled.clone(),
        r0.clone(),
    ];
    assert_eq!(
        store.list_runs(None, 100).await.must("runs: list"),
        newest_first,
        "runs: list_runs must return every run, newest first (ties: rotation id descending)"
    );
    assert_eq!(
        store.list_runs(None, 2).await.must("runs: list limited"),
        newest_first[..2].to_vec(),
        "runs: list_runs must respect the limit"
    );
    assert_eq!(
        store.list_runs(Some(&ta), 100).await.must("runs: list by target"),
        vec![r3.clone(), r1_done.clone(), rolled, r0],
        "runs: list_runs with a target filter"
    );
    assert_eq!(
        store.list_runs(Some(&ta), 1).await.must("runs: list by target limited"),
        vec![r3.clone()],
        "runs: list_runs with a target filter and a limit"
    );
    assert!(
        store
            .list_runs(Some(&td), 100)
            .await
            .must("runs: list empty target")
            .is_empty(),
        "runs: list_runs of a target without runs"
    );

    let mut active = store.list_active_runs().await.must("runs: list active");
    active.sort_by_key(|r| r.rotation_id);
    let mut expected = vec![rb, r3];
    expected.sort_by_key(|r| r.rotation_id);
    assert_eq!(
        active, expected,
        "runs: list_active_runs returns every non-terminal run"
    );
}

async fn schedules(store: Arc<dyn StateStore>) {
    let ta = target("org-a");
    let tb = target("org-b");
    let s1 = schedule(ta.clone(), at(-7200));
    let s2 = schedule(tb.clone(), at(-3600));
    let s3 = schedule(ta.clone(), at(3600));
    let mut s4 = schedule(ta.clone(), at(-10_800));
    s4.state = ScheduleState::Done;
    let mut s5 = schedule(tb.clone(), at(-1800));
    s5.claimed_by = Some("other".into());
    s5.claim_expires_at = Some(at(600));
    let mut s6 = schedule(ta.clone(), at(-2400));
    s6.claimed_by = Some("other".into());
    s6.claim_expires_at = Some(at(-60));
    s6.last_error = Some("previous attempt failed".into());

    let mut tx = store.begin().await.must("schedules: begin");
    for s in [&s1, &s2, &s3, &s4, &s5, &s6] {
        tx.insert_schedule(s).await.must("schedules: insert");
    }
    tx.commit().await.must("schedules: commit");

    assert_eq!(
        store.list_schedules(None, false).await.must("schedules: list"),
        vec![s4.clone(), s1.clone(), s2.clone(), s6.clone(), s5.clone(), s3.clone()],
        "schedules: list_schedules must return every schedule, soonest first, round-tripped"
    );
    assert_eq!(
        store.list_schedules(None, true).await.must("schedules: list pending"),
        vec![s1.clone(), s2.clone(), s6.clone(), s5.clone(), s3.clone()],
        "schedules: only_pending must return only `scheduled` entries"
    );
    assert_eq!(
        store
            .list_schedules(Some(&ta), false)
            .await
            .must("schedules: list by target"),
        vec![s4.clone(), s1.clone(), s6.clone(), s3.clone()],
        "schedules: target filter"
    );
    assert_eq!(
        store
            .list_schedules(Some(&tb), true)
            .await
            .must("schedules: list pending by target"),
        vec![s2.clone(), s5.clone()],
        "schedules: target filter with only_pending"
    );

    let claim = |now: Timestamp, owner: &'static str, until: Timestamp, limit: usize| {
        let store = Arc::clone(&store);
        async move {
            let mut tx = store.begin().await.must("schedules: begin claim");
            let claimed = tx
                .claim_due_schedules(now, owner, until, limit)
                .await
                .must("schedules: claim_due_schedules");
            tx.commit().await.must("schedules: commit claim");
            claimed
        }
    };
    let claimed_as = |s: &Schedule, owner: &str, until: Timestamp| {
        let mut s = s.clone();
        s.claimed_by = Some(owner.to_owned());
        s.claim_expires_at = Some(until);
        s
    };

    assert_eq!(
        claim(t0(), "me", at(300), 2).await,
        vec![claimed_as(&s1, "me", at(300)), claimed_as(&s2, "me", at(300))],
        "schedules: claim_due_schedules claims due, unclaimed `scheduled` entries, soonest first, up to the limit"
    );
    assert_eq!(
        claim(t0(), "me", at(300), 10).await,
        vec![claimed_as(&s6, "me", at(300))],
        "schedules: an expired claim is re-claimed; a live claim (by anyone), a future or a done schedule is not"
    );
    assert!(
        claim(t0(), "me", at(300), 10).await.is_empty(),
        "schedules: nothing is left to claim"
    );
    assert_eq!(
        store
            .list_schedules(Some(&tb), false)
            .await
            .must("schedules: list claimed"),
        vec![claimed_as(&s2, "me", at(300)), s5.clone()],
        "schedules: claims must be stored; another owner's live claim is untouched"
    );
    assert_eq!(
        claim(at(700), "late", at(1000), 10).await,
        vec![
            claimed_as(&s1, "late", at(1000)),
            claimed_as(&s2, "late", at(1000)),
            claimed_as(&s6, "late", at(1000)),
            claimed_as(&s5, "late", at(1000)),
        ],
        "schedules: once every claim expired, all due schedules are claimed again"
    );

    let mut s1_done = claimed_as(&s1, "late", at(1000));
    s1_done.state = ScheduleState::Done;
    s1_done.claimed_by = None;
    s1_done.claim_expires_at = None;
    s1_done.last_error = Some("finished after a retry".into());
    let mut tx = store.begin().await.must("schedules: begin update");
    tx.update_schedule(&s1_done).await.must("schedules: update");
    tx.commit().await.must("schedules: commit update");
    let stored = store
        .list_schedules(Some(&ta), false)
        .await
        .must("schedules: list updated");
    assert!(
        stored.contains(&s1_done),
        "schedules: update_schedule must replace every field (got {stored:?})"
    );
    assert!(
        claim(at(2000), "later", at(2300), 10)
            .await
            .iter()
            .all(|s| s.id != s1.id),
        "schedules: a done schedule is never claimed"
    );

    let mut tx = store.begin().await.must("schedules: begin update missing");
    expect_reason(
        tx.update_schedule(&schedule(ta.clone(), t0())).await,
        Reason::NotFound,
        "schedules: updating a missing schedule",
    );
    drop(tx);
}

async fn audit(store: Arc<dyn StateStore>) {
    assert_eq!(
        store.audit_head().await.must("audit: head"),
        None,
        "audit: no head initially"
    );
    assert!(
        store.list_audit(0, 100).await.must("audit: list").is_empty(),
        "audit: empty log initially"
    );

    let events: Vec<_> = (1..=5)
        .map(|seq| {
            let mut e = audit_event(seq, at(seq));
            if seq % 2 == 0 {
                e.rotation_id = Some(RotationId::generate());
            }
            e
        })
        .collect();
    let mut tx = store.begin().await.must("audit: begin");
    assert_eq!(
        tx.audit_head().await.must("audit: tx head"),
        None,
        "audit: no head initially"
    );
    for e in &events {
        tx.append_audit(e).await.must("audit: append");
        assert_eq!(
            tx.audit_head().await.must("audit: tx head"),
            Some(AuditHead {
                seq: e.seq,
                hash: e.hash.clone()
            }),
            "audit: append_audit must move the head in the transaction"
        );
    }
    tx.commit().await.must("audit: commit");

    assert_eq!(
        store.list_audit(0, 100).await.must("audit: list"),
        events,
        "audit: every event must round-trip, ascending"
    );
    assert_eq!(
        store.list_audit(2, 2).await.must("audit: list page"),
        events[2..4].to_vec(),
        "audit: list_audit(after_seq, limit) returns seq > after_seq, at most limit"
    );
    assert!(
        store.list_audit(5, 10).await.must("audit: list after end").is_empty(),
        "audit: nothing after the last event"
    );
    assert_eq!(
        store.list_audit_newest(3).await.must("audit: newest"),
        vec![events[4].clone(), events[3].clone(), events[2].clone()],
        "audit: list_audit_newest returns the newest events, newest first"
    );
    assert_eq!(
        store.list_audit_newest(100).await.must("audit: newest all"),
        events.iter().rev().cloned().collect::<Vec<_>>(),
        "audit: list_audit_newest with a large limit"
    );
    assert_eq!(
        store.audit_head().await.must("audit: head"),
        Some(AuditHead {
            seq: 5,
            hash: fake_hash(5)
        }),
        "audit: the head is the last appended event"
    );

    let sixth = audit_event(6, at(6));
    let mut tx = store.begin().await.must("audit: begin second");
    assert_eq!(
        tx.audit_head().await.must("audit: tx head"),
        Some(AuditHead {
            seq: 5,
            hash: fake_hash(5)
        }),
        "audit: a transaction sees the committed head"
    );
    tx.append_audit(&sixth).await.must("audit: append sixth");
    tx.commit().await.must("audit: commit second");
    assert_eq!(
        store.audit_head().await.must("audit: head"),
        Some(AuditHead {
            seq: 6,
            hash: fake_hash(6)
        }),
        "audit: the head moves with each commit"
    );
    assert_eq!(
        store.list_audit(5, 100).await.must("audit: list new"),
        vec![sixth],
        "audit: appended event listed"
    );
}

async fn rollback_on_drop(store: Arc<dyn StateStore>) {
    let (authority_row, _) = crate::fixtures::seed_authority(&*store, "org-kept").await;

    let r = run(target("org-a"), RunState::Pending, t0());
    let s = schedule(target("org-a"), at(60));
    let mut tx = store.begin().await.must("rollback: begin");
    tx.put_meta("dropped", b"x").await.must("rollback: put_meta");
    tx.insert_authority(&authority("org-a", "org-a.k1"))
        .await
        .must("rollback: insert authority");
    tx.insert_key(&key("org-a", "org-a.k1", KeyState::Active, t0()))
        .await
        .must("rollback: insert key");
    tx.insert_records(&[record("agent-1", "org-a", "org-a.k1")])
        .await
        .must("rollback: insert records");
    tx.insert_run(&r).await.must("rollback: insert run");
    tx.insert_schedule(&s).await.must("rollback: insert schedule");
    tx.append_audit(&audit_event(1, t0()))
        .await
        .must("rollback: append audit");
    let mut renamed = authority_row.clone();
    renamed.name = "renamed in a dropped transaction".into();
    tx.update_authority(&renamed).await.must("rollback: update authority");
    drop(tx);

    let what = "rollback: a dropped transaction must leave nothing behind";
    assert_eq!(store.get_meta("dropped").await.must(what), None, "{what} (meta)");
    assert_eq!(
        store.get_authority(&authority_id("org-a")).await.must(what),
        None,
        "{what} (authority)"
    );
    assert_eq!(
        store.get_authority(&authority_row.id).await.must(what),
        Some(authority_row.clone()),
        "{what} (updated authority)"
    );
    assert_eq!(
        store.get_key(&key_id("org-a.k1")).await.must(what),
        None,
        "{what} (key)"
    );
    assert!(
        store.list_records(&all_records()).await.must(what).is_empty(),
        "{what} (records)"
    );
    assert_eq!(store.get_run(r.rotation_id).await.must(what), None, "{what} (run)");
    assert!(
        store.list_schedules(None, false).await.must(what).is_empty(),
        "{what} (schedule)"
    );
    assert!(store.list_audit(0, 10).await.must(what).is_empty(), "{what} (audit)");
    assert_eq!(store.audit_head().await.must(what), None, "{what} (audit head)");

    let mut tx = within(store.begin(), "rollback: begin after a dropped transaction")
        .await
        .must("rollback: begin after a dropped transaction");
    assert_eq!(
        tx.get_run(r.rotation_id).await.must(what),
        None,
        "{what} (run, seen from a later transaction)"
    );
    assert_eq!(
        tx.audit_head().await.must(what),
        None,
        "{what} (head, seen from a later transaction)"
    );
    tx.insert_run(&r)
        .await
        .must("rollback: the dropped run must not block a new one");
    tx.commit().await.must("rollback: commit");
}

async fn uncommitted_writes_are_invisible(store: Arc<dyn StateStore>) {
    let a = authority("org-a", "org-a.k1");
    let r = run(target("org-a"), RunState::Pending, t0());
    let mut tx = store.begin().await.must("isolation: begin");
    tx.insert_authority(&a).await.must("isolation: insert authority");
    tx.put_meta("m", b"v").await.must("isolation: put_meta");
    tx.insert_run(&r).await.must("isolation: insert run");
    tx.append_audit(&audit_event(1, t0()))
        .await
        .must("isolation: append audit");

    let what = "isolation: store reads must not see an open transaction's writes";
    let read = |future| within(future, "isolation: store read while a write transaction is open");
    assert_eq!(
        read(store.get_authority(&a.id)).await.must(what),
        None,
        "{what} (authority)"
    );
    assert!(
        within(store.list_authorities(), what).await.must(what).is_empty(),
        "{what} (authorities)"
    );
    assert_eq!(
        within(store.get_meta("m"), what).await.must(what),
        None,
        "{what} (meta)"
    );
    assert_eq!(
        within(store.get_run(r.rotation_id), what).await.must(what),
        None,
        "{what} (run)"
    );
    assert!(
        within(store.list_active_runs(), what).await.must(what).is_empty(),
        "{what} (active runs)"
    );
    assert_eq!(
        within(store.audit_head(), what).await.must(what),
        None,
        "{what} (audit head)"
    );

    tx.commit().await.must("isolation: commit");
    let what = "isolation: committed writes must be visible";
    assert_eq!(
        store.get_authority(&a.id).await.must(what),
        Some(a),
        "{what} (authority)"
    );
    assert_eq!(
        store.get_meta("m").await.must(what),
        Some(b"v".to_vec()),
        "{what} (meta)"
    );
    assert_eq!(store.get_run(r.rotation_id).await.must(what), Some(r), "{what} (run)");
    assert_eq!(
        store.audit_head().await.must(what).map(|h| h.seq),
        Some(1),
        "{what} (audit head)"
    );
}

async fn write_transactions_serialise(store: Arc<dyn StateStore>) {
    let first = authority("org-first", "org-first.k1");
    let second = authority("org-second", "org-second.k1");
    let (began, has_begun) = tokio::sync::oneshot::channel();
    let holder = {
        let store = Arc::clone(&store);
        let first = first.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.must("serialise: first begin");
            tx.insert_authority(&first).await.must("serialise: first insert");
            began.send(()).expect("the suite waits for this signal");
            tokio::time::sleep(HOLD).await;
            tx.put_meta("first", b"1").await.must("serialise: first put_meta");
            tx.commit().await.must("serialise: first commit");
        })
    };
    has_begun.await.expect("serialise: the first transaction must begin");

    let mut tx = within(store.begin(), "serialise: second begin (waiting for the first commit)")
        .await
        .must("serialise: a second begin must wait for the first transaction, not fail");
    assert_eq!(
        tx.get_authority(&first.id).await.must("serialise: second reads"),
        Some(first.clone()),
        "serialise: a second write transaction must begin only after the first committed, and see its writes"
    );
    tx.insert_authority(&second).await.must("serialise: second insert");
    tx.commit().await.must("serialise: second commit");
    if let Err(e) = holder.await {
        std::panic::resume_unwind(e.into_panic());
    }
    assert_eq!(
        store.list_authorities().await.must("serialise: list"),
        vec![first, second],
        "serialise: both transactions' writes must be committed"
    );
    assert_eq!(
        store.get_meta("first").await.must("serialise: meta"),
        Some(b"1".to_vec()),
        "serialise: the first transaction's late write must be committed"
    );
}

async fn timestamps_round_trip(store: Arc<dyn StateStore>) {
    let now = now_micros();
    let micro = TimeDelta::microseconds(1);
    let odd = t0() + TimeDelta::microseconds(876_543);
    let far = "2099-12-31T23:59:59.999999Z"
        .parse::<Timestamp>()
        .expect("valid timestamp");

    let mut a = authority("org-a", "org-a.k1");
    a.created_at = now;
    a.last_rotated_at = Some(odd);
    let mut k1 = key("org-a", "org-a.k1", KeyState::Grace, now);
    k1.activated_at = Some(now + micro);
    k1.rotated_at = Some(odd);
    k1.grace_until = Some(far);
    k1.revoked_at = Some(now + micro + micro);
    let k2 = key("org-a", "org-a.k2", KeyState::Active, now + micro);
    let mut r = record("agent-1", "org-a", "org-a.k1");
    r.issued_at = now;
    r.signed_at = odd;
    let mut run_early = run(target("org-a"), RunState::Completed, now);
    run_early.updated_at = odd;
    run_early.completed_at = Some(far);
    run_early.lease_expires_at = now + micro;
    run_early.grace_period_end = Some(far);
    let mut run_late = run(target("org-b"), RunState::Completed, now + micro);
    // Make the id order disagree with the time order.
    if run_late.rotation_id > run_early.rotation_id {
        std::mem::swap(&mut run_late.rotation_id, &mut run_early.rotation_id);
    }
    let mut s_early = schedule(target("org-a"), now);
    s_early.created_at = odd;
    s_early.claim_expires_at = Some(far);
    s_early.claimed_by = Some("someone".into());
    let mut s_late = schedule(target("org-a"), now + micro);
    if s_late.id > s_early.id {
        std::mem::swap(&mut s_late.id, &mut s_early.id);
    }
    let event = audit_event(1, now);

    let mut tx = store.begin().await.must("timestamps: begin");
    tx.insert_authority(&a).await.must("timestamps: insert authority");
    tx.insert_key(&k2).await.must("timestamps: insert key");
    tx.insert_key(&k1).await.must("timestamps: insert key");
    tx.insert_records(std::slice::from_ref(&r))
        .await
        .must("timestamps: insert record");
    tx.insert_run(&run_early).await.must("timestamps: insert run");
    tx.insert_run(&run_late).await.must("timestamps: insert run");
    tx.insert_schedule(&s_late).await.must("timestamps: insert schedule");
    tx.insert_schedule(&s_early).await.must("timestamps: insert schedule");
    tx.append_audit(&event).await.must("timestamps: append audit");
    tx.commit().await.must("timestamps: commit");

    let what = "timestamps must round-trip exactly (microseconds)";
    assert_eq!(
        store.get_authority(&a.id).await.must(what),
        Some(a),
        "authority: {what}"
    );
    assert_eq!(
        store.list_keys(&authority_id("org-a")).await.must(what),
        vec![k1, k2],
        "keys: {what}, and order by created_at at microsecond resolution"
    );
    assert_eq!(
        store.list_records(&all_records()).await.must(what),
        vec![r],
        "records: {what}"
    );
    assert_eq!(
        store.list_runs(None, 10).await.must(what),
        vec![run_late, run_early],
        "runs: {what}, and order by started_at at microsecond resolution"
    );
    assert_eq!(
        store.list_schedules(None, false).await.must(what),
        vec![s_early, s_late],
        "schedules: {what}, and order by due_at at microsecond resolution"
    );
    assert_eq!(store.list_audit(0, 10).await.must(what), vec![event], "audit: {what}");
}
