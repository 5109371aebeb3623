//! Round trips of metadata, authorities, keys, schedules and audit events.

use rotation_core::Reason;
use rotation_core::authority::KeyState;
use rotation_core::ports::StateStore;
use rotation_core::schedule::ScheduleState;

use crate::support::{aid, audit_event, authority, key, kid, schedule, t, temp_store};

#[tokio::test]
async fn meta_round_trip_and_overwrite() {
    let (_dir, store, _url) = temp_store().await;
    assert_eq!(store.get_meta("salt").await.unwrap(), None);
    let mut tx = store.begin().await.unwrap();
    tx.put_meta("salt", &[1, 2, 3]).await.unwrap();
    tx.put_meta("salt", &[4, 0, 255]).await.unwrap();
    tx.put_meta("empty", &[]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.get_meta("salt").await.unwrap(), Some(vec![4, 0, 255]));
    assert_eq!(store.get_meta("empty").await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn authorities_round_trip() {
    let (_dir, store, _url) = temp_store().await;
    let mut b = authority("org-b", "kb");
    let a = authority("org-a", "ka");
    b.last_rotated_at = None;
    let mut tx = store.begin().await.unwrap();
    tx.insert_authority(&b).await.unwrap();
    tx.insert_authority(&a).await.unwrap();
    assert_eq!(
        tx.get_authority(&a.id).await.unwrap().as_ref(),
        Some(&a),
        "reads see own writes"
    );
    let err = tx.insert_authority(&a).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    tx.commit().await.unwrap();

    assert_eq!(store.list_authorities().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(store.get_authority(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(store.get_authority(&aid("org-c")).await.unwrap(), None);

    let mut tx = store.begin().await.unwrap();
    let mut a2 = a.clone();
    a2.current_key_id = kid("ka2");
    a2.last_rotated_at = Some(t(99));
    a2.name = "Renamed".into();
    tx.update_authority(&a2).await.unwrap();
    let err = tx.update_authority(&authority("org-c", "kc")).await.unwrap_err();
    assert_eq!(err.reason, Reason::NotFound, "{err}");
    tx.commit().await.unwrap();
    assert_eq!(store.get_authority(&a.id).await.unwrap(), Some(a2));
}

#[tokio::test]
async fn keys_round_trip() {
    let (_dir, store, _url) = temp_store().await;
    let k2 = key("org-a", "org-a.k2", 20);
    let mut k1 = key("org-a", "org-a.k1", 10);
    k1.state = KeyState::Active;
    k1.activated_at = None;
    k1.created_by = None;
    k1.revocation_reason = None;
    let other = key("org-b", "org-b.k1", 0);
    let mut tx = store.begin().await.unwrap();
    for k in [&k2, &k1, &other] {
        tx.insert_key(k).await.unwrap();
    }
    let err = tx.insert_key(&k1).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    tx.commit().await.unwrap();

    assert_eq!(
        store.list_keys(&aid("org-a")).await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );
    assert_eq!(store.get_key(&k2.key_id).await.unwrap(), Some(k2.clone()));

    let mut tx = store.begin().await.unwrap();
    let mut k2b = k2.clone();
    k2b.state = KeyState::Revoked;
    k2b.revoked_at = Some(t(500));
    tx.update_key(&k2b).await.unwrap();
    assert_eq!(tx.get_key(&k2.key_id).await.unwrap(), Some(k2b.clone()));
    let err = tx.update_key(&key("org-a", "org-a.k9", 0)).await.unwrap_err();
    assert_eq!(err.reason, Reason::NotFound, "{err}");
    tx.delete_key(&k1.key_id).await.unwrap();
    tx.delete_key(&kid("org-a.missing")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.list_keys(&aid("org-a")).await.unwrap(), vec![k2b]);
}

#[tokio::test]
async fn schedules_round_trip_and_claims() {
    let (_dir, store, _url) = temp_store().await;
    let late = schedule("authority:org-a", 300);
    let soon = schedule("authority:org-b", 100);
    let mut done = schedule("authority:org-a", 50);
    done.state = ScheduleState::Done;
    done.last_error = Some("none".into());
    let mut claimed_live = schedule("keyring:payments", 60);
    claimed_live.claimed_by = Some("other".into());
    claimed_live.claim_expires_at = Some(t(1000));
    let mut claimed_expired = schedule("secret:db/prod", 70);
    claimed_expired.claimed_by = Some("other".into());
    claimed_expired.claim_expires_at = Some(t(150));

    let mut tx = store.begin().await.unwrap();
    for s in [&late, &soon, &done, &claimed_live, &claimed_expired] {
        tx.insert_schedule(s).await.unwrap();
    }
    let err = tx.insert_schedule(&late).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    tx.commit().await.unwrap();

    let all = store.list_schedules(None, false).await.unwrap();
    assert_eq!(
        all,
        vec![
            done.clone(),
            claimed_live.clone(),
            claimed_expired.clone(),
            soon.clone(),
            late.clone()
        ]
    );
    let target = late.target.clone();
    assert_eq!(
        store.list_schedules(Some(&target), false).await.unwrap(),
        vec![done.clone(), late.clone()]
    );
    assert_eq!(
        store.list_schedules(Some(&target), true).await.unwrap(),
        vec![late.clone()]
    );
    assert_eq!(store.list_schedules(None, true).await.unwrap().len(), 4);

    // At t(200): claimed_expired (70) and soon (100) are due and claimable, late is not due.
    let mut tx = store.begin().await.unwrap();
    let got = tx.claim_due_schedules(t(200), "me", t(260), 10).await.unwrap();
    let ids: Vec<_> = got.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![claimed_expired.id, soon.id]);
    assert!(
        got.iter()
            .all(|s| s.claimed_by.as_deref() == Some("me") && s.claim_expires_at == Some(t(260)))
    );
    // Claimed now: a second claim finds nothing, and the limit applies.
    assert!(
        tx.claim_due_schedules(t(200), "you", t(260), 10)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let got = tx.claim_due_schedules(t(2000), "you", t(2060), 2).await.unwrap();
    let ids: Vec<_> = got.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![claimed_live.id, claimed_expired.id]);
    let mut s = got[0].clone();
    s.state = ScheduleState::Failed;
    s.last_error = Some("nope".into());
    tx.update_schedule(&s).await.unwrap();
    let err = tx.update_schedule(&schedule("store", 1)).await.unwrap_err();
    assert_eq!(err.reason, Reason::NotFound, "{err}");
    tx.commit().await.unwrap();
    let pending = store.list_schedules(None, true).await.unwrap();
    assert!(!pending.iter().any(|p| p.id == s.id));
    assert!(store.list_schedules(None, false).await.unwrap().contains(&s));
}

#[tokio::test]
async fn audit_round_trip_and_head() {
    let (_dir, store, _url) = temp_store().await;
    assert_eq!(store.audit_head().await.unwrap(), None);
    let events: Vec<_> = (1..=5).map(audit_event).collect();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.audit_head().await.unwrap(), None);
    for e in &events[..3] {
        tx.append_audit(e).await.unwrap();
    }
    assert_eq!(tx.audit_head().await.unwrap().unwrap().seq, 3);
    let err = tx.append_audit(&events[1]).await.unwrap_err();
    assert_eq!(err.reason, Reason::AlreadyExists, "{err}");
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for e in &events[3..] {
        tx.append_audit(e).await.unwrap();
    }
    tx.commit().await.unwrap();

    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!((head.seq, head.hash.as_str()), (5, events[4].hash.as_str()));
    assert_eq!(store.list_audit(0, usize::MAX).await.unwrap(), events);
    assert_eq!(store.list_audit(2, 2).await.unwrap(), events[2..4].to_vec());
    let newest = store.list_audit_newest(2).await.unwrap();
    assert_eq!(newest, vec![events[4].clone(), events[3].clone()]);
}
