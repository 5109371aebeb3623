//! HTTPS with rustls: a self-signed certificate made in the test.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{Options, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate_and_no_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let tls = rotation_server::tls::load(&cert, &key).unwrap();
    let s = TestServer::sqlite_with(Options {
        tls: Some(tls),
        ..Options::default()
    })
    .await;
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);

    // A client trusting the certificate: /healthz and an authenticated call.
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let health = trusting.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let listed = trusting
        .get(format!("{}/v1/authorities", s.base))
        .bearer_auth(&s.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);

    // A client that does not trust it refuses the connection.
    let strict = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(strict.get(format!("{}/healthz", s.base)).send().await.is_err());

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = s.base.replacen("https://", "http://", 1);
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(answer.is_err(), "plain HTTP answered: {answer:?}");

    // Graceful shutdown works over TLS too.
    s.stop().await;
}

#[test]
fn unreadable_or_mismatched_certificate_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key, other_key) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("other.pem"),
    );
    std::fs::write(&cert, a.cert.pem()).unwrap();
    std::fs::write(&key, a.signing_key.serialize_pem()).unwrap();
    std::fs::write(&other_key, b.signing_key.serialize_pem()).unwrap();
    assert!(rotation_server::tls::load(&cert, &key).is_ok());
    let missing = rotation_server::tls::load(&dir.path().join("nope.pem"), &key).unwrap_err();
    assert!(missing.message.contains("nope.pem"), "{missing}");
    let swapped = rotation_server::tls::load(&key, &cert).unwrap_err();
    assert_eq!(swapped.reason, rotation_core::Reason::InvalidInput, "{swapped}");
    let mismatched = rotation_server::tls::load(&cert, &other_key).unwrap_err();
    assert!(mismatched.message.contains("do not fit"), "{mismatched}");
}

#[test]
fn the_binary_needs_both_tls_flags_or_neither() {
    for (flag, value) in [("--tls-cert", "cert.pem"), ("--tls-key", "key.pem")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rotation-server"))
            .args([flag, value])
            .env_remove("ROTATION_TLS_CERT")
            .env_remove("ROTATION_TLS_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("--tls-"), "{stderr}");
    }
}
