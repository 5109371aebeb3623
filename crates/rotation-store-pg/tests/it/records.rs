//! Bulk writes: batches larger than one `UNNEST` statement, atomicity of a
//! failed batch, and re-signing in one set-based statement per chunk.

use rotation_core::Reason;
use rotation_core::authority::KeyState;
use rotation_core::ids::RotationId;
use rotation_core::ports::{RecordQuery, StateStore};
use rotation_testkit::fixtures::{at, audit_event, key, key_id, record, seed_authority};

use crate::support::TestDb;

const MANY: usize = 25_000;

#[tokio::test]
async fn large_batches_insert_and_resign_across_chunks() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let (authority, k1) = seed_authority(&store, "org-a").await;
    let k2 = key("org-a", "org-a.k2", KeyState::Active, at(10));
    let mut tx = store.begin().await.unwrap();
    tx.insert_key(&k2).await.unwrap();
    tx.commit().await.unwrap();

    let records: Vec<_> = (0..MANY)
        .map(|i| {
            record(
                &format!("agent-{:05}", i / 4),
                authority.id.as_str(),
                k1.key_id.as_str(),
            )
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    tx.insert_records(&records).await.unwrap();
    tx.commit().await.unwrap();
    let stored = store.list_records(&RecordQuery::default()).await.unwrap();
    assert_eq!(stored.len(), MANY);

    let rotation = RotationId::generate();
    let resigned: Vec<_> = stored
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.key_id = k2.key_id.clone();
            r.body["key_id"] = serde_json::json!(k2.key_id.as_str());
            r.signature = vec![1; 64];
            r.signed_at = at(20);
            r.resigned_by = Some(rotation);
            r
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    let n = tx
        .resign_records(std::slice::from_ref(&k1.key_id), &resigned)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, MANY as u64);
    assert_eq!(store.list_records(&RecordQuery::default()).await.unwrap(), resigned);
    assert_eq!(
        store.count_agents_resigned_by(rotation).await.unwrap(),
        MANY.div_ceil(4) as u64
    );

    let mut tx = store.begin().await.unwrap();
    let again = tx.resign_records(&[key_id("org-a.k1")], &resigned).await.unwrap();
    assert_eq!(again, 0, "records no longer under an expected key are left alone");
}

#[tokio::test]
async fn a_failed_batch_inserts_nothing_and_leaves_the_transaction_usable() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let (authority, k1) = seed_authority(&store, "org-a").await;
    let existing = record("agent-1", authority.id.as_str(), k1.key_id.as_str());
    let mut tx = store.begin().await.unwrap();
    tx.insert_records(std::slice::from_ref(&existing)).await.unwrap();
    tx.commit().await.unwrap();

    // A duplicate in the last chunk of a multi-chunk batch.
    let mut batch: Vec<_> = (0..MANY)
        .map(|i| record(&format!("agent-{i:05}"), authority.id.as_str(), k1.key_id.as_str()))
        .collect();
    batch.push(existing.clone());
    let mut tx = store.begin().await.unwrap();
    let err = tx.insert_records(&batch).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    // As in the SQLite store, the transaction goes on without the batch.
    tx.put_meta("after", b"1")
        .await
        .expect("the transaction is still usable");
    tx.commit().await.unwrap();
    assert_eq!(
        store.list_records(&RecordQuery::default()).await.unwrap(),
        vec![existing],
        "no record of the failed batch was kept"
    );
    assert_eq!(store.get_meta("after").await.unwrap(), Some(b"1".to_vec()));
}

#[tokio::test]
async fn constraint_errors_leave_the_transaction_usable() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let (authority, k1) = seed_authority(&store, "org-a").await;
    let mut tx = store.begin().await.unwrap();
    let err = tx.insert_authority(&authority).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    let err = tx.insert_key(&k1).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    tx.put_meta("after", b"1").await.expect("still usable");
    tx.commit().await.expect("commits the rest");
    assert_eq!(store.get_meta("after").await.unwrap(), Some(b"1".to_vec()));
}

#[tokio::test]
async fn committing_a_transaction_aborted_by_a_failed_statement_is_an_error() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let first = audit_event(1, at(1));
    let mut tx = store.begin().await.unwrap();
    tx.append_audit(&first).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.put_meta("lost", b"1").await.unwrap();
    let err = tx.append_audit(&first).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    // PostgreSQL has aborted the transaction: committing must not pretend.
    let err = tx.commit().await.expect_err("an aborted transaction does not commit");
    assert_eq!(err.reason, Reason::BackendUnavailable, "{err}");
    assert!(err.message.contains("nothing was committed"), "{err}");
    assert_eq!(store.get_meta("lost").await.unwrap(), None);
}
