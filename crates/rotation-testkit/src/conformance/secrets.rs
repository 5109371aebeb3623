//! Conformance cases for secrets' metadata, the secret versions kept by a
//! store's own backend, the notification outbox, the schedule fields
//! recurring secret rotation needs (`attempts`, `offset_seconds`, the
//! `orphaned` state), and their place in snapshots and `clear_all`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rotation_core::error::Reason;
use rotation_core::ids::RotationId;
use rotation_core::ports::{Notification, OutboxMessage, Snapshot, StateStore};
use rotation_core::schedule::{Schedule, ScheduleState};
use rotation_core::secret::{Secret, SecretConfig, SecretType, SecretVersion, Stage};
use rotation_core::time::Timestamp;

use super::{Must, expect_reason};
use crate::fixtures::{at, schedule, t0, target};

/// A secret at `path`, created at [`t0`] and updated `updated` seconds later.
fn secret(path: &str, secret_type: SecretType, updated: i64) -> Secret {
    Secret {
        path: path.to_owned(),
        secret_type,
        policy: Some("monthly".to_owned()),
        config: SecretConfig {
            role: Some("app_user".to_owned()),
            verify: vec!["tcp:db.internal:5432".to_owned()],
            common_name: Some("ünïcødé.example".to_owned()),
            validity_days: Some(90),
            ..SecretConfig::default()
        },
        created_at: t0(),
        updated_at: at(updated),
        last_rotated_at: (updated > 0).then(|| at(updated)),
    }
}

/// Version `version` of `path` carrying `stages`, with one attribute naming it.
fn secret_version(path: &str, version: u32, stages: &[Stage]) -> SecretVersion {
    let mut attributes = BTreeMap::new();
    attributes.insert("rotation_id".to_owned(), format!("r-{version}"));
    attributes.insert("username".to_owned(), "app_user_blue".to_owned());
    SecretVersion {
        path: path.to_owned(),
        version,
        stages: stages.to_vec(),
        created_at: at(i64::from(version % 100_000)),
        attributes,
    }
}

/// A pending, unclaimed message created `created` seconds after [`t0`] and
/// due at once, with a fresh id.
fn message(created: i64, dedup_key: Option<&str>) -> OutboxMessage {
    OutboxMessage {
        id: uuid::Uuid::new_v4(),
        dedup_key: dedup_key.map(str::to_owned),
        recipient: "https://hooks.example/rotation?x=1".to_owned(),
        notification: Notification {
            event: "secret_expiring".to_owned(),
            target: "secret:db/prod/app".to_owned(),
            rotation_id: Some(RotationId::generate()),
            details: serde_json::json!({"days": 7, "nested": {"list": [1, 2.5, null], "text": "ünïcødé"}}),
        },
        created_at: at(created),
        attempts: 0,
        next_attempt_at: at(created),
        delivered_at: None,
        last_error: None,
        claimed_by: None,
        claim_expires_at: None,
    }
}

/// Sorted by `(created_at, id)`, the outbox order.
fn outbox_order(mut messages: Vec<OutboxMessage>) -> Vec<OutboxMessage> {
    messages.sort_by_key(|m| (m.created_at, m.id));
    messages
}

fn claimed_as(m: &OutboxMessage, owner: &str, until: Timestamp) -> OutboxMessage {
    let mut m = m.clone();
    m.claimed_by = Some(owner.to_owned());
    m.claim_expires_at = Some(until);
    m
}

async fn enqueue(store: &dyn StateStore, messages: &[OutboxMessage], what: &str) -> u64 {
    let mut tx = store.begin().await.must(what);
    let n = tx.enqueue_outbox(messages).await.must(what);
    tx.commit().await.must(what);
    n
}

pub(super) async fn secrets_and_versions(store: Arc<dyn StateStore>) {
    let what = "secrets";
    // Paths whose byte order differs from most locales' order.
    let paths = ["db/prod/app", "Zeta", "a_b", "a-b", "ab", "a/b", "a"];
    let originals: Vec<Secret> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| secret(p, SecretType::ALL[i % SecretType::ALL.len()], 0))
        .collect();
    let mut tx = store.begin().await.must(what);
    for s in &originals {
        tx.put_secret(s).await.must("secrets: put");
    }
    assert_eq!(
        tx.get_secret("a/b").await.must(what).as_ref(),
        originals.iter().find(|s| s.path == "a/b"),
        "{what}: a transaction sees its own writes"
    );
    tx.commit().await.must(what);

    let listed = store.list_secrets().await.must("secrets: list");
    assert_eq!(
        listed.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        vec!["Zeta", "a", "a-b", "a/b", "a_b", "ab", "db/prod/app"],
        "{what}: list_secrets is ordered by path, byte order"
    );
    assert_eq!(
        store.get_secret("db/prod/app").await.must(what).as_ref(),
        Some(&originals[0]),
        "{what}: round trip"
    );
    assert_eq!(store.get_secret("db/prod").await.must(what), None, "{what}: missing");

    // Put replaces every field; the replacement is invisible until commit.
    let mut replaced = secret("db/prod/app", SecretType::Database, 3600);
    replaced.policy = None;
    replaced.config = SecretConfig::default();
    let mut tx = store.begin().await.must(what);
    tx.put_secret(&replaced).await.must("secrets: replace");
    assert_eq!(tx.get_secret("db/prod/app").await.must(what), Some(replaced.clone()));
    assert_eq!(
        store.get_secret("db/prod/app").await.must(what).as_ref(),
        Some(&originals[0]),
        "{what}: an uncommitted replacement is invisible"
    );
    tx.commit().await.must(what);
    assert_eq!(
        store.get_secret("db/prod/app").await.must(what),
        Some(replaced),
        "{what}: put replaces"
    );
    assert_eq!(
        store.list_secrets().await.must(what).len(),
        paths.len(),
        "{what}: no duplicate row"
    );

    let what = "secret versions";
    let a3 = secret_version("a", 3, &[Stage::Current]);
    let a1 = secret_version("a", 1, &[]);
    let a2 = secret_version("a", 2, &[Stage::Previous]);
    let ab_slash = secret_version("a/b", 1, &[Stage::Current]);
    let ab1 = secret_version("ab", 1, &[Stage::Previous]);
    let ab_max = secret_version("ab", u32::MAX, &[Stage::Current, Stage::Pending]);
    let mut tx = store.begin().await.must(what);
    for v in [&a3, &ab_max, &a1, &ab_slash, &a2, &ab1] {
        tx.put_secret_version(v).await.must("secret versions: put");
    }
    assert_eq!(
        tx.list_secret_versions("a").await.must(what),
        vec![a1.clone(), a2.clone(), a3.clone()],
        "{what}: a transaction sees its own writes, ascending"
    );
    tx.commit().await.must(what);

    assert_eq!(
        store.list_secret_versions("a").await.must(what),
        vec![a1.clone(), a2.clone(), a3.clone()],
        "{what}: ascending by version, round-tripped"
    );
    assert_eq!(
        store.list_secret_versions("a/b").await.must(what),
        vec![ab_slash.clone()],
        "{what}: paths are separate (a/b)"
    );
    assert_eq!(
        store.list_secret_versions("ab").await.must(what),
        vec![ab1.clone(), ab_max.clone()],
        "{what}: paths are separate (ab), and u32::MAX round-trips"
    );
    assert!(
        store.list_secret_versions("a-b").await.must(what).is_empty(),
        "{what}: a path without versions"
    );

    // Put replaces labels, attributes and created_at, keyed by (path, version).
    let mut a2_moved = a2.clone();
    a2_moved.stages = vec![Stage::Pending, Stage::Previous];
    a2_moved.attributes.clear();
    a2_moved
        .attributes
        .insert("grace_until".to_owned(), "2030-01-03T00:00:00Z".to_owned());
    a2_moved.created_at = at(7);
    let mut a3_done = a3.clone();
    a3_done.stages.clear();
    let mut tx = store.begin().await.must(what);
    tx.put_secret_version(&a2_moved).await.must("secret versions: replace");
    tx.put_secret_version(&a3_done).await.must("secret versions: replace");
    tx.commit().await.must(what);
    assert_eq!(
        store.list_secret_versions("a").await.must(what),
        vec![a1, a2_moved, a3_done],
        "{what}: put replaces a version"
    );
    assert_eq!(
        store.list_secret_versions("ab").await.must(what).len(),
        2,
        "{what}: other paths untouched"
    );
}

pub(super) async fn outbox(store: Arc<dyn StateStore>) {
    let what = "outbox";
    let m1 = message(0, None);
    let m2 = message(10, None);
    let m3 = message(10, None); // Same instant as m2: ordered by id.
    let mut m4 = message(20, None);
    m4.next_attempt_at = at(3600); // Backing off.
    let m5 = message(5, Some("cert:db/prod:v3:7d"));
    let mut ghost = message(30, None);
    ghost.claimed_by = Some("ghost".to_owned()); // A claim without expiry is free.
    let mut held = message(31, None);
    held.claimed_by = Some("other".to_owned());
    held.claim_expires_at = Some(at(10_000));
    let mut delivered = message(1, Some("delivered-key"));
    delivered.delivered_at = Some(at(2));
    delivered.attempts = 1;

    assert_eq!(
        enqueue(
            &*store,
            &[
                m1.clone(),
                m2.clone(),
                m3.clone(),
                m4.clone(),
                ghost.clone(),
                held.clone(),
                delivered.clone()
            ],
            "outbox: enqueue"
        )
        .await,
        7,
        "{what}: messages without a dedup_key never deduplicate"
    );
    assert_eq!(enqueue(&*store, std::slice::from_ref(&m5), "outbox: enqueue").await, 1);
    let dup = message(6, Some("cert:db/prod:v3:7d"));
    assert_eq!(
        enqueue(&*store, std::slice::from_ref(&dup), "outbox: enqueue a taken dedup_key").await,
        0,
        "{what}: a message whose dedup_key is taken is skipped"
    );
    let dup_delivered = message(6, Some("delivered-key"));
    assert_eq!(
        enqueue(&*store, &[dup_delivered], "outbox: enqueue a delivered dedup_key").await,
        0,
        "{what}: a delivered message's dedup_key still deduplicates"
    );
    let first = message(40, Some("batch-key"));
    let second = message(41, Some("batch-key"));
    assert_eq!(
        enqueue(&*store, &[first.clone(), second.clone()], "outbox: enqueue a batch").await,
        1,
        "{what}: within one batch, the first message with a dedup_key wins"
    );

    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.enqueue_outbox(std::slice::from_ref(&m1)).await,
        Reason::AlreadyExists,
        "outbox: a taken id",
    );
    drop(tx);
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.enqueue_outbox(std::slice::from_ref(&m5)).await,
        Reason::AlreadyExists,
        "outbox: a taken id whose dedup_key is taken too",
    );
    drop(tx);
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.enqueue_outbox(&[message(50, None), m2.clone()]).await,
        Reason::AlreadyExists,
        "outbox: a batch with a taken id",
    );
    drop(tx);

    let all = outbox_order(vec![
        m1.clone(),
        m2.clone(),
        m3.clone(),
        m4.clone(),
        m5.clone(),
        ghost.clone(),
        held.clone(),
        delivered.clone(),
        first.clone(),
    ]);
    assert_eq!(
        store.list_outbox(false, usize::MAX).await.must(what),
        all,
        "{what}: list_outbox returns every message by (created_at, id), round-tripped"
    );
    let pending: Vec<OutboxMessage> = all.iter().filter(|m| m.delivered_at.is_none()).cloned().collect();
    assert_eq!(
        store.list_outbox(true, 100).await.must(what),
        pending,
        "{what}: only_pending leaves delivered messages out"
    );
    assert_eq!(
        store.list_outbox(true, 3).await.must(what),
        pending[..3].to_vec(),
        "{what}: limit"
    );

    let claim = |now: Timestamp, owner: &'static str, until: Timestamp, limit: usize| {
        let store = Arc::clone(&store);
        async move {
            let mut tx = store.begin().await.must("outbox: begin claim");
            let claimed = tx
                .claim_outbox(now, owner, until, limit)
                .await
                .must("outbox: claim_outbox");
            tx.commit().await.must("outbox: commit claim");
            claimed
        }
    };
    // Due at at(100): m1, m5, m2, m3, ghost and first; m4 backs off until
    // at(3600), `held` has a live claim, `delivered` is done.
    let due = outbox_order(vec![
        m1.clone(),
        m5.clone(),
        m2.clone(),
        m3.clone(),
        ghost.clone(),
        first.clone(),
    ]);
    assert_eq!(
        claim(at(100), "me", at(400), 2).await,
        due[..2]
            .iter()
            .map(|m| claimed_as(m, "me", at(400)))
            .collect::<Vec<_>>(),
        "{what}: claim_outbox claims due, undelivered, unclaimed messages, oldest first, up to the limit"
    );
    assert_eq!(
        claim(at(100), "you", at(400), 10).await,
        due[2..]
            .iter()
            .map(|m| claimed_as(m, "you", at(400)))
            .collect::<Vec<_>>(),
        "{what}: live claims are skipped; a claim without expiry is free; backing-off messages wait"
    );
    assert!(
        claim(at(100), "me", at(400), 10).await.is_empty(),
        "{what}: nothing is left to claim"
    );
    assert_eq!(
        store
            .list_outbox(true, 100)
            .await
            .must(what)
            .iter()
            .find(|m| m.id == m1.id),
        Some(&claimed_as(&m1, "me", at(400))),
        "{what}: claims are stored"
    );
    assert_eq!(
        claim(at(400), "late", at(700), 10).await,
        due.iter().map(|m| claimed_as(m, "late", at(700))).collect::<Vec<_>>(),
        "{what}: a claim expiring at `now` is free again"
    );

    // Delivery results.
    let mut m1_done = claimed_as(&m1, "late", at(700));
    m1_done.attempts = 1;
    m1_done.delivered_at = Some(at(450));
    m1_done.claimed_by = None;
    m1_done.claim_expires_at = None;
    let mut m2_failed = claimed_as(&m2, "late", at(700));
    m2_failed.attempts = 3;
    m2_failed.next_attempt_at = at(5000);
    m2_failed.last_error = Some("HTTP 503 from https://hooks.example".to_owned());
    m2_failed.claimed_by = None;
    m2_failed.claim_expires_at = None;
    // Only the delivery fields change.
    let mut m2_sent = m2_failed.clone();
    m2_sent.recipient = "log".to_owned();
    m2_sent.dedup_key = Some("changed".to_owned());
    m2_sent.notification.event = "changed".to_owned();
    m2_sent.created_at = at(-1);
    let mut tx = store.begin().await.must(what);
    tx.update_outbox(&m1_done).await.must("outbox: update delivered");
    tx.update_outbox(&m2_sent).await.must("outbox: update failed");
    tx.commit().await.must(what);
    let mut tx = store.begin().await.must(what);
    expect_reason(
        tx.update_outbox(&message(0, None)).await,
        Reason::NotFound,
        "outbox: updating a missing message",
    );
    drop(tx);

    let stored = store.list_outbox(false, usize::MAX).await.must(what);
    assert!(
        stored.contains(&m1_done),
        "{what}: update_outbox stores delivery (got {stored:?})"
    );
    assert!(
        stored.contains(&m2_failed),
        "{what}: update_outbox stores a failure and changes nothing but the delivery fields (got {stored:?})"
    );
    assert!(
        store
            .list_outbox(true, usize::MAX)
            .await
            .must(what)
            .iter()
            .all(|m| m.id != m1.id),
        "{what}: a delivered message is no longer pending"
    );
    let later = claim(at(800), "later", at(900), 10).await;
    assert!(
        later.iter().all(|m| m.id != m1.id && m.id != m2.id),
        "{what}: delivered and backing-off messages are not claimed (got {later:?})"
    );
    assert_eq!(
        later.len(),
        due.len() - 2,
        "{what}: the other due messages are claimed once their claims expired"
    );
}

pub(super) async fn schedule_retry_fields(store: Arc<dyn StateStore>) {
    let what = "schedules: attempts, offset_seconds and orphaned";
    let mut retrying = schedule(target("org-a"), at(-60));
    retrying.attempts = 2;
    retrying.offset_seconds = -86_400 * 400;
    retrying.policy = Some("monthly".to_owned());
    retrying.last_error = Some("verify failed".to_owned());
    let mut orphaned = schedule(target("org-b"), at(-120));
    orphaned.state = ScheduleState::Orphaned;
    orphaned.attempts = u32::MAX;
    orphaned.offset_seconds = 7200;
    let plain = schedule(target("org-c"), at(-30));

    let mut tx = store.begin().await.must(what);
    for s in [&retrying, &orphaned, &plain] {
        tx.insert_schedule(s).await.must(what);
    }
    tx.commit().await.must(what);
    assert_eq!(
        store.list_schedules(None, false).await.must(what),
        vec![orphaned.clone(), retrying.clone(), plain.clone()],
        "{what}: every field round-trips"
    );
    assert_eq!(
        store.list_schedules(None, true).await.must(what),
        vec![retrying.clone(), plain.clone()],
        "{what}: an orphaned schedule is not pending"
    );

    let mut tx = store.begin().await.must(what);
    let claimed: Vec<RotationId> = tx
        .claim_due_schedules(t0(), "me", at(300), 10)
        .await
        .must(what)
        .iter()
        .map(|s| s.id)
        .collect();
    tx.commit().await.must(what);
    assert_eq!(
        claimed,
        vec![retrying.id, plain.id],
        "{what}: an orphaned schedule is never claimed"
    );

    let mut resumed: Schedule = orphaned.clone();
    resumed.state = ScheduleState::Scheduled;
    resumed.attempts = 0;
    resumed.offset_seconds = -1;
    let mut given_up = retrying.clone();
    given_up.state = ScheduleState::Orphaned;
    given_up.attempts = 3;
    given_up.claimed_by = None;
    given_up.claim_expires_at = None;
    let mut tx = store.begin().await.must(what);
    tx.update_schedule(&resumed).await.must(what);
    tx.update_schedule(&given_up).await.must(what);
    tx.commit().await.must(what);
    let stored = store.list_schedules(None, false).await.must(what);
    assert!(
        stored.contains(&resumed) && stored.contains(&given_up),
        "{what}: update_schedule replaces attempts, offset_seconds and the state (got {stored:?})"
    );
}

pub(super) async fn snapshot_restore_and_clear(store: Arc<dyn StateStore>, other: Arc<dyn StateStore>) {
    let what = "snapshot of secrets and the outbox";
    let s1 = secret("db/prod/app", SecretType::Database, 60);
    let s2 = secret("api/payments", SecretType::ApiKey, 0);
    let v1 = secret_version("db/prod/app", 1, &[Stage::Previous]);
    let v2 = secret_version("db/prod/app", 2, &[Stage::Current]);
    let v3 = secret_version("api/payments", 1, &[Stage::Current, Stage::Pending]);
    let mut delivered = message(3, Some("once"));
    delivered.attempts = 2;
    delivered.delivered_at = Some(at(9));
    delivered.last_error = Some("timeout".to_owned());
    let mut claimed = message(1, None);
    claimed.claimed_by = Some("worker-1".to_owned());
    claimed.claim_expires_at = Some(at(30));
    claimed.next_attempt_at = at(20);
    claimed.attempts = 1;
    let pending = message(2, Some("twice"));
    let mut sched = schedule(target("org-a"), at(100));
    sched.attempts = 4;
    sched.offset_seconds = 900;
    sched.state = ScheduleState::Orphaned;

    let mut tx = store.begin().await.must(what);
    tx.put_secret(&s1).await.must(what);
    tx.put_secret(&s2).await.must(what);
    for v in [&v2, &v3, &v1] {
        tx.put_secret_version(v).await.must(what);
    }
    tx.enqueue_outbox(&[delivered.clone(), claimed.clone(), pending.clone()])
        .await
        .must(what);
    tx.insert_schedule(&sched).await.must(what);
    tx.commit().await.must(what);

    let snap = store.snapshot().await.must(what);
    assert_eq!(snap.secrets, vec![s2.clone(), s1.clone()], "{what}: secrets by path");
    assert_eq!(
        snap.secret_versions,
        vec![v3, v1, v2],
        "{what}: secret versions by (path, version)"
    );
    assert_eq!(
        snap.outbox,
        vec![claimed.clone(), pending.clone(), delivered.clone()],
        "{what}: the outbox by (created_at, id), every field"
    );
    assert_eq!(snap.schedules, vec![sched], "{what}: schedules with their new fields");

    // Restored elsewhere, the copy is identical (delivery fields included).
    let mut tx = other.begin().await.must(what);
    snap.restore_into(tx.as_mut()).await.must("snapshot: restore");
    tx.commit().await.must(what);
    assert_eq!(other.snapshot().await.must(what), snap, "{what}: restore round trip");
    assert_eq!(
        other.list_outbox(true, 10).await.must(what),
        vec![claimed.clone(), pending.clone()],
        "{what}: restored delivery state"
    );

    let mut tx = store.begin().await.must(what);
    tx.clear_all().await.must("clear_all");
    tx.commit().await.must(what);
    assert_eq!(
        store.snapshot().await.must(what),
        Snapshot::default(),
        "{what}: clear_all empties secrets, versions and the outbox"
    );
    assert!(store.list_secrets().await.must(what).is_empty());
    assert!(store.list_secret_versions("db/prod/app").await.must(what).is_empty());
    assert!(store.list_outbox(false, 10).await.must(what).is_empty());
    // Ids and dedup keys are free again.
    assert_eq!(
        enqueue(&*store, &[delivered, pending], "outbox: enqueue after clear_all").await,
        2,
        "{what}: ids and dedup keys are free after clear_all"
    );
}
