//! Trust-chain records: batch insert, filtered keyset listing, re-signing.

use std::time::Instant;

use rotation_core::Reason;
use rotation_core::ids::RotationId;
use rotation_core::ports::{RecordQuery, StateStore};
use serde_json::json;

use crate::support::{agent, aid, kid, record, t, temp_store};

#[tokio::test]
async fn records_insert_list_and_page() {
    let (_dir, store, _url) = temp_store().await;
    // 250 records cross the multi-row insert chunk size.
    let mut all = Vec::new();
    for i in 0..250 {
        let authority = if i % 2 == 0 { "org-a" } else { "org-b" };
        let key = if i % 3 == 0 { "k1" } else { "k2" };
        all.push(record(&format!("agent-{:02}", i % 17), authority, key));
    }
    let mut tx = store.begin().await.unwrap();
    tx.insert_records(&all).await.unwrap();
    tx.insert_records(&[]).await.unwrap();
    tx.commit().await.unwrap();
    all.sort_by_key(|r| (r.agent_id.clone(), r.id));

    let everything = store
        .list_records(&RecordQuery {
            limit: usize::MAX,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(everything, all);

    let q = RecordQuery {
        agent: Some(agent("agent-03")),
        limit: usize::MAX,
        ..RecordQuery::default()
    };
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.agent_id.as_str() == "agent-03")
        .cloned()
        .collect();
    assert_eq!(store.list_records(&q).await.unwrap(), want);

    let q = RecordQuery {
        authority: Some(aid("org-b")),
        key_ids: Some(vec![kid("k1"), kid("k9")]),
        limit: 1000,
        ..RecordQuery::default()
    };
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.authority_id.as_str() == "org-b" && r.key_id.as_str() == "k1")
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(store.list_records(&q).await.unwrap(), want);

    let q = RecordQuery {
        key_ids: Some(vec![]),
        limit: 10,
        ..RecordQuery::default()
    };
    assert!(store.list_records(&q).await.unwrap().is_empty());

    // Keyset paging visits every record once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_records(&RecordQuery {
                after: after.clone(),
                limit: 33,
                ..RecordQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.agent_id.clone(), last.id));
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn duplicate_record_fails_the_whole_batch() {
    let (_dir, store, _url) = temp_store().await;
    let first = record("agent-1", "org-a", "k1");
    let mut tx = store.begin().await.unwrap();
    tx.insert_records(std::slice::from_ref(&first)).await.unwrap();
    let mut batch: Vec<_> = (0..150).map(|_| record("agent-2", "org-a", "k1")).collect();
    batch.push(first.clone());
    let err = tx.insert_records(&batch).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    // The failed batch left nothing behind, even though the transaction goes on.
    tx.commit().await.unwrap();
    let stored = store
        .list_records(&RecordQuery {
            limit: usize::MAX,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stored, vec![first]);
}

#[tokio::test]
async fn resign_checks_the_expected_key_and_counts_agents() {
    let (_dir, store, _url) = temp_store().await;
    let recs = vec![
        record("agent-1", "org-a", "k1"),
        record("agent-1", "org-a", "k2"),
        record("agent-2", "org-a", "k1"),
        record("agent-3", "org-a", "k3"),
    ];
    let mut tx = store.begin().await.unwrap();
    tx.insert_records(&recs).await.unwrap();
    tx.commit().await.unwrap();

    let rotation = RotationId::generate();
    let resigned: Vec<_> = recs
        .iter()
        .map(|r| {
            let mut n = r.clone();
            n.key_id = kid("k-new");
            n.body = json!({"key_id": "k-new", "record_id": r.id.to_string()});
            n.signature = vec![1; 64];
            n.signed_at = t(500);
            n.resigned_by = Some(rotation);
            n
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.resign_records(&[], &resigned).await.unwrap(), 0);
    let n = tx.resign_records(&[kid("k1"), kid("k2")], &resigned).await.unwrap();
    assert_eq!(n, 3, "agent-3's record is signed by k3 and left alone");
    // A second pass finds them re-signed already.
    assert_eq!(tx.resign_records(&[kid("k1"), kid("k2")], &resigned).await.unwrap(), 0);
    tx.commit().await.unwrap();

    assert_eq!(store.count_agents_resigned_by(rotation).await.unwrap(), 2);
    assert_eq!(store.count_agents_resigned_by(RotationId::generate()).await.unwrap(), 0);
    let stored = store
        .list_records(&RecordQuery {
            limit: usize::MAX,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stored[..3], resigned[..3]);
    assert_eq!(stored[3], recs[3]);
}

/// 10,000 records inserted and re-signed, each in one transaction.
#[tokio::test]
async fn resign_ten_thousand_records() {
    let (_dir, store, _url) = temp_store().await;
    let recs: Vec<_> = (0..10_000)
        .map(|i| record(&format!("agent-{i}"), "org-a", "k1"))
        .collect();
    let start = Instant::now();
    let mut tx = store.begin().await.unwrap();
    tx.insert_records(&recs).await.unwrap();
    tx.commit().await.unwrap();
    let inserted = start.elapsed();

    let rotation = RotationId::generate();
    let resigned: Vec<_> = recs
        .iter()
        .map(|r| {
            let mut n = r.clone();
            n.key_id = kid("k2");
            n.resigned_by = Some(rotation);
            n
        })
        .collect();
    let start = Instant::now();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.resign_records(&[kid("k1")], &resigned).await.unwrap(), 10_000);
    tx.commit().await.unwrap();
    let resigned_in = start.elapsed();
    assert_eq!(store.count_agents_resigned_by(rotation).await.unwrap(), 10_000);
    eprintln!("10k records: insert {inserted:?}, re-sign {resigned_in:?}");
}
