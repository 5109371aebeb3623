//! The master secret: a wrong password changes nothing; key files are private.

use crate::support::Env;

#[test]
fn a_wrong_master_password_is_refused_and_nothing_changes() {
    let mut env = Env::new();
    env.password = Some("correct horse battery staple".into());
    let init = env.json(&["init"]);
    assert!(init["master_key"].as_str().unwrap().contains("password"));
    assert!(!env.key_file().exists(), "no key file with a password");
    env.authority_with_chains("org-acme", &["agent-a"]);
    let before_status = env.json(&["authority", "status", "org-acme"]);
    let before_events = env
        .json(&["audit", "list", "--limit", "1000"])
        .as_array()
        .unwrap()
        .len();

    env.password = Some("wrong horse".into());
    for args in [
        vec!["authority", "rotate", "org-acme"],
        vec!["authority", "create", "org-other"],
        vec!["chain", "issue", "agent-b", "--authority", "org-acme"],
    ] {
        let (reason, stderr) = env.fails(&args);
        assert_eq!(reason, "unauthorized", "{args:?}");
        assert!(!stderr.contains("horse"), "the password leaked: {stderr}");
    }
    env.password = None;
    let (reason, stderr) = env.fails(&["authority", "rotate", "org-acme"]);
    assert_eq!(reason, "unauthorized");
    assert!(stderr.contains("ROTATION_MASTER_PASSWORD"), "{stderr}");

    env.password = Some("correct horse battery staple".into());
    assert_eq!(env.json(&["authority", "status", "org-acme"]), before_status);
    assert_eq!(
        env.json(&["audit", "list", "--limit", "1000"])
            .as_array()
            .unwrap()
            .len(),
        before_events
    );
    assert_eq!(env.json(&["authority", "list"]).as_array().unwrap().len(), 1);
    env.ok(&["authority", "rotate", "org-acme"]);
}

#[test]
fn a_world_readable_or_wrong_key_file_is_refused() {
    let env = Env::init();
    env.ok(&["authority", "create", "org-acme"]);
    let key = env.key_file();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (reason, stderr) = env.fails(&["authority", "rotate", "org-acme"]);
        assert_eq!(reason, "unauthorized");
        assert!(stderr.contains("chmod 600"), "{stderr}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let original = std::fs::read_to_string(&key).unwrap();
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let (reason, _) = env.fails(&["authority", "rotate", "org-acme"]);
    assert_eq!(reason, "unauthorized");
    std::fs::write(&key, original).unwrap();
    env.ok(&["authority", "rotate", "org-acme"]);
}
