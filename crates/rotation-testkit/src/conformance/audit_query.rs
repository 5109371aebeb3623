//! Conformance: filtered, cursor-paged audit listing.

use std::sync::Arc;

use chrono::TimeDelta;
use rotation_core::ids::RotationId;
use rotation_core::ports::{AuditQuery, StateStore};

use super::Must;
use crate::fixtures::{audit_event, t0};

/// `query_audit`: every filter, newest first, and the `before_seq` cursor.
pub(super) async fn audit_query(store: Arc<dyn StateStore>) {
    let rotation = RotationId::generate();
    let mut tx = store.begin().await.must("audit query: begin");
    for seq in 1..=12 {
        let mut e = audit_event(seq, t0() + TimeDelta::minutes(seq));
        e.target = if seq % 2 == 0 {
            "secret:a/b".into()
        } else {
            "keyring:k".into()
        };
        e.event = if seq % 3 == 0 {
            "secret_read".into()
        } else {
            "rotation_started".into()
        };
        e.actor = if seq <= 6 {
            "cli:alice".into()
        } else {
            "token:t1".into()
        };
        if seq == 4 || seq == 10 {
            e.rotation_id = Some(rotation);
        }
        tx.append_audit(&e).await.must("audit query: append");
    }
    tx.commit().await.must("audit query: commit");
    let seqs = |q: AuditQuery| {
        let store = Arc::clone(&store);
        async move {
            store
                .query_audit(&q)
                .await
                .must("audit query: query")
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<i64>>()
        }
    };
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(
        seqs(all.clone()).await,
        (1..=12).rev().collect::<Vec<_>>(),
        "audit query: newest first"
    );
    let page = AuditQuery {
        limit: 5,
        ..all.clone()
    };
    assert_eq!(seqs(page.clone()).await, vec![12, 11, 10, 9, 8], "audit query: limit");
    assert_eq!(
        seqs(AuditQuery {
            before_seq: Some(8),
            ..page
        })
        .await,
        vec![7, 6, 5, 4, 3],
        "audit query: the cursor continues below before_seq"
    );
    assert_eq!(
        seqs(AuditQuery {
            target: Some("secret:a/b".into()),
            ..all.clone()
        })
        .await,
        vec![12, 10, 8, 6, 4, 2],
        "audit query: target"
    );
    assert_eq!(
        seqs(AuditQuery {
            event: Some("secret_read".into()),
            target: Some("secret:a/b".into()),
            ..all.clone()
        })
        .await,
        vec![12, 6],
        "audit query: event and target combine"
    );
    assert_eq!(
        seqs(AuditQuery {
            rotation_id: Some(rotation),
            ..all.clone()
        })
        .await,
        vec![10, 4],
        "audit query: rotation id"
    );
    assert_eq!(
        seqs(AuditQuery {
            actor: Some("token:t1".into()),
            until: Some(t0() + TimeDelta::minutes(9)),
            ..all.clone()
        })
        .await,
        vec![8, 7],
        "audit query: actor and until (exclusive)"
    );
    assert_eq!(
        seqs(AuditQuery {
            since: Some(t0() + TimeDelta::minutes(11)),
            ..all
        })
        .await,
        vec![12, 11],
        "audit query: since (inclusive)"
    );
}
