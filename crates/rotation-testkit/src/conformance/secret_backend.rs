//! The `SecretBackend` conformance suite: the behaviour every secret
//! backend must have (the store's own sealed table, Vault KV v2, ...).
//!
//! ```ignore
//! #[tokio::test]
//! async fn conforms() {
//!     let backend: Arc<dyn SecretBackend> = Arc::new(MyBackend::new(...));
//!     rotation_testkit::conformance::secret_backend_suite(backend).await;
//! }
//! ```
//!
//! The suite writes below the path `conformance/`; give it a backend with
//! no secrets there (backends on a shared server: use a fresh prefix).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use rotation_core::error::{Reason, Result};
use rotation_core::ports::SecretBackend;
use rotation_core::secret::{SecretValue, Stage, VersionSelector};

/// Runs every case against `backend`, panicking with the case and the
/// operation on the first failure.
pub async fn secret_backend_suite(backend: Arc<dyn SecretBackend>) {
    check_and_set(&*backend).await;
    labels_move_atomically(&*backend).await;
    staged_rotation_keeps_previous(&*backend).await;
    read_by_stage_and_version(&*backend).await;
    attributes_merge_and_remove(&*backend).await;
    unknown_version_in_update(&*backend).await;
    path_isolation(&*backend).await;
}

#[track_caller]
fn must<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!(
            "SecretBackend conformance: {what}: unexpected error ({}): {}",
            e.reason, e.message
        ),
    }
}

#[track_caller]
fn expect_reason<T: Debug>(result: Result<T>, reason: Reason, what: &str) {
    match result {
        Ok(v) => panic!("SecretBackend conformance: {what}: expected a {reason} error, got Ok({v:?})"),
        Err(e) if e.reason == reason => {}
        Err(e) => panic!(
            "SecretBackend conformance: {what}: expected a {reason} error, got {}: {}",
            e.reason, e.message
        ),
    }
}

fn value(s: &str) -> SecretValue {
    SecretValue::new(s)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The value and version carrying `stage`, if any.
async fn at_stage(b: &dyn SecretBackend, path: &str, stage: Stage) -> Option<(u32, String)> {
    must(b.read(path, VersionSelector::Stage(stage)).await, "read by stage")
        .map(|(v, val)| (v.version, val.expose().to_owned()))
}

/// Every label is on at most one version.
async fn assert_labels_unique(b: &dyn SecretBackend, path: &str) {
    let versions = must(b.versions(path).await, "versions");
    for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
        let n = versions.iter().filter(|v| v.has(stage)).count();
        assert!(
            n <= 1,
            "SecretBackend conformance: {stage:?} is on {n} versions of {path}: {versions:?}"
        );
    }
}

async fn check_and_set(b: &dyn SecretBackend) {
    let p = "conformance/cas";
    let none = BTreeMap::new();
    assert!(must(b.versions(p).await, "versions of a new path").is_empty());
    let v1 = must(
        b.write(p, &value("one"), &[Stage::Current], &none, Some(0)).await,
        "first write, cas 0",
    );
    assert_eq!(v1, 1, "the first version is 1");
    expect_reason(
        b.write(p, &value("lost"), &[Stage::Current], &none, Some(0)).await,
        Reason::ConcurrentRotation,
        "a second write with cas 0",
    );
    expect_reason(
        b.write(p, &value("lost"), &[], &none, Some(7)).await,
        Reason::ConcurrentRotation,
        "a write with a cas ahead of the newest version",
    );
    let v2 = must(
        b.write(p, &value("two"), &[Stage::Current], &none, Some(1)).await,
        "write, cas 1",
    );
    assert_eq!(v2, 2);
    let v3 = must(b.write(p, &value("three"), &[], &none, None).await, "write without cas");
    assert_eq!(v3, 3);
    let versions = must(b.versions(p).await, "versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "ascending versions, the losers left none"
    );
    assert_eq!(
        at_stage(b, p, Stage::Current).await,
        Some((2, "two".into())),
        "a write with a label takes it off the old version"
    );
    assert_labels_unique(b, p).await;
}

async fn labels_move_atomically(b: &dyn SecretBackend) {
    let p = "conformance/labels";
    let none = BTreeMap::new();
    must(
        b.write(p, &value("a"), &[Stage::Current], &none, Some(0)).await,
        "write 1",
    );
    must(
        b.write(p, &value("b"), &[Stage::Pending], &none, Some(1)).await,
        "write 2",
    );
    must(
        b.update(
            p,
            &[
                (Stage::Current, Some(2)),
                (Stage::Previous, Some(1)),
                (Stage::Pending, None),
            ],
            &[],
        )
        .await,
        "move the labels",
    );
    assert_eq!(at_stage(b, p, Stage::Current).await, Some((2, "b".into())));
    assert_eq!(at_stage(b, p, Stage::Previous).await, Some((1, "a".into())));
    assert_eq!(at_stage(b, p, Stage::Pending).await, None, "PENDING removed");
    assert_labels_unique(b, p).await;
    // A move naming a missing version changes nothing, not even the moves before it.
    expect_reason(
        b.update(p, &[(Stage::Previous, Some(2)), (Stage::Current, Some(9))], &[])
            .await,
        Reason::NotFound,
        "a move to a missing version",
    );
    assert_eq!(
        at_stage(b, p, Stage::Previous).await,
        Some((1, "a".into())),
        "a failed update moved nothing"
    );
    assert_eq!(at_stage(b, p, Stage::Current).await, Some((2, "b".into())));
}

async fn staged_rotation_keeps_previous(b: &dyn SecretBackend) {
    let p = "conformance/staged";
    let none = BTreeMap::new();
    let v1 = must(
        b.write(p, &value("old"), &[Stage::Current], &none, Some(0)).await,
        "put",
    );
    for (i, new) in ["new-1", "new-2"].into_iter().enumerate() {
        let latest = must(b.versions(p).await, "versions").last().map_or(0, |v| v.version);
        let rotation = attrs(&[("rotation_id", &format!("r{i}")), ("strategy", "staged")]);
        let pending = must(
            b.write(p, &value(new), &[Stage::Pending], &rotation, Some(latest))
                .await,
            "write PENDING",
        );
        let current = at_stage(b, p, Stage::Current)
            .await
            .expect("CURRENT during the rotation")
            .0;
        must(
            b.update(
                p,
                &[
                    (Stage::Current, Some(pending)),
                    (Stage::Previous, Some(current)),
                    (Stage::Pending, None),
                ],
                &[(current, attrs(&[("grace_until", "2030-01-01T00:00:00Z")]))],
            )
            .await,
            "promote",
        );
        assert_eq!(at_stage(b, p, Stage::Current).await, Some((pending, new.into())));
        let previous = at_stage(b, p, Stage::Previous)
            .await
            .expect("PREVIOUS after a rotation");
        assert_eq!(previous.0, current);
        let found = must(b.versions(p).await, "versions")
            .into_iter()
            .find(|v| v.version == pending)
            .expect("the new version is listed");
        assert_eq!(
            found.attr("rotation_id"),
            Some(format!("r{i}").as_str()),
            "attributes of a write"
        );
        assert_labels_unique(b, p).await;
    }
    let (_, first) = must(b.read(p, VersionSelector::Version(v1)).await, "read version 1").expect("version 1 is kept");
    assert_eq!(first.expose(), "old");
}

async fn read_by_stage_and_version(b: &dyn SecretBackend) {
    let p = "conformance/read";
    let none = BTreeMap::new();
    let multi = "line 1\nline 2 \u{e9}\u{1f511} \"quoted\" \\ end";
    must(
        b.write(p, &value(multi), &[Stage::Current], &none, Some(0)).await,
        "write",
    );
    must(
        b.write(p, &value("second"), &[], &none, Some(1)).await,
        "write unlabelled",
    );
    let (v, val) = must(b.read(p, VersionSelector::Version(1)).await, "read version 1").expect("version 1");
    assert_eq!((v.version, val.expose()), (1, multi), "values round-trip byte for byte");
    assert_eq!(v.path, p);
    assert!(v.has(Stage::Current));
    let (v, val) = must(b.read(p, VersionSelector::Version(2)).await, "read version 2").expect("version 2");
    assert_eq!((v.version, val.expose()), (2, "second"));
    assert!(v.stages.is_empty(), "an unlabelled version has no labels");
    assert!(must(b.read(p, VersionSelector::Version(3)).await, "read a missing version").is_none());
    assert!(
        must(
            b.read(p, VersionSelector::Stage(Stage::Previous)).await,
            "read a missing label"
        )
        .is_none()
    );
    assert!(
        must(
            b.read("conformance/missing", VersionSelector::Stage(Stage::Current))
                .await,
            "read a missing path"
        )
        .is_none()
    );
    assert!(must(b.versions("conformance/missing").await, "versions of a missing path").is_empty());
}

async fn attributes_merge_and_remove(b: &dyn SecretBackend) {
    let p = "conformance/attributes";
    let v = must(
        b.write(
            p,
            &value("x"),
            &[Stage::Current],
            &attrs(&[("username", "app"), ("keep", "1")]),
            Some(0),
        )
        .await,
        "write with attributes",
    );
    must(
        b.update(p, &[], &[(v, attrs(&[("grace_until", "t1"), ("username", "app2")]))])
            .await,
        "merge",
    );
    must(
        b.update(p, &[], &[(v, attrs(&[("grace_until", "")]))]).await,
        "remove with an empty string",
    );
    let versions = must(b.versions(p).await, "versions");
    assert_eq!(versions[0].attributes, attrs(&[("keep", "1"), ("username", "app2")]));
    assert!(versions[0].has(Stage::Current), "attribute updates leave labels alone");
}

async fn unknown_version_in_update(b: &dyn SecretBackend) {
    let p = "conformance/unknown";
    let none = BTreeMap::new();
    must(
        b.write(p, &value("x"), &[Stage::Current], &none, Some(0)).await,
        "write",
    );
    expect_reason(
        b.update(p, &[(Stage::Current, Some(5))], &[]).await,
        Reason::NotFound,
        "move to version 5",
    );
    expect_reason(
        b.update(p, &[], &[(5, attrs(&[("a", "b")]))]).await,
        Reason::NotFound,
        "attributes of version 5",
    );
    expect_reason(
        b.update("conformance/nowhere", &[(Stage::Current, Some(1))], &[]).await,
        Reason::NotFound,
        "move on a missing path",
    );
    assert_eq!(at_stage(b, p, Stage::Current).await, Some((1, "x".into())));
}

async fn path_isolation(b: &dyn SecretBackend) {
    let (a, ab) = ("conformance/iso/a", "conformance/iso/a/b");
    let none = BTreeMap::new();
    must(
        b.write(a, &value("A"), &[Stage::Current], &none, Some(0)).await,
        "write a",
    );
    must(
        b.write(ab, &value("AB"), &[Stage::Current], &none, Some(0)).await,
        "write a/b (its own cas 0)",
    );
    must(
        b.write(ab, &value("AB2"), &[Stage::Current], &none, Some(1)).await,
        "write a/b again",
    );
    assert_eq!(
        must(b.versions(a).await, "versions of a").len(),
        1,
        "a/b's versions are not a's"
    );
    assert_eq!(must(b.versions(ab).await, "versions of a/b").len(), 2);
    assert_eq!(at_stage(b, a, Stage::Current).await, Some((1, "A".into())));
    assert_eq!(at_stage(b, ab, Stage::Current).await, Some((2, "AB2".into())));
    assert!(must(b.versions("conformance/iso").await, "versions of the parent").is_empty());
}
