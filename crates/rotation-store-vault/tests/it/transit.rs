//! Transit custody: the conformance suite (and the local custody as the
//! reference), an authority rotated with keys in the server whose re-signed
//! chains verify with the JWKS keys under ed25519-dalek, keyrings with
//! data keys wrapped by transit.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use rotation_core::engine::{IssueRequest, NewAuthority, RotateRequest};
use rotation_core::ids::{AgentId, AuthorityId, KeyringName};
use rotation_core::ports::{KeyCustody, StateStore};
use rotation_store_vault::VaultTransitCustody;
use rotation_testkit::MemoryStore;
use rotation_testkit::conformance::custody_suite;

use crate::support::{engine, fresh, local_engine, root_client};

/// Ed25519 verification by ed25519-dalek, independent of ring and of the server.
fn dalek_verify(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(public) = <[u8; 32]>::try_from(public) else {
        return false;
    };
    let Ok(signature) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(&signature)).is_ok()
}

pub(crate) fn transit() -> Arc<VaultTransitCustody> {
    Arc::new(VaultTransitCustody::new(root_client(), "transit").unwrap())
}

#[tokio::test]
async fn local_custody_conforms() {
    let (_, custody, _) = local_engine();
    custody_suite(custody, dalek_verify).await;
}

#[tokio::test]
async fn transit_custody_conforms() {
    custody_suite(transit() as Arc<dyn KeyCustody>, dalek_verify).await;
}

#[tokio::test]
async fn an_authority_rotated_with_transit_custody_resigns_chains_that_verify_with_its_jwks() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let e = engine(store, transit());
    let id = AuthorityId::parse(fresh("org")).unwrap();
    e.create_authority(NewAuthority {
        id: id.clone(),
        name: None,
        rotation_period_days: None,
        grace_period_hours: Some(24),
    })
    .await
    .unwrap();
    let requests: Vec<IssueRequest> = (0..30)
        .map(|i| IssueRequest {
            agent_id: AgentId::parse(format!("agent-{i}")).unwrap(),
            authority_id: id.clone(),
            capabilities: vec!["read".into(), "write".into()],
            delegate_to: (i % 3 == 0).then(|| AgentId::parse(format!("delegate-{i}")).unwrap()),
        })
        .collect();
    e.issue_chains(&requests).await.unwrap();
    let result = e.rotate_key(RotateRequest::new(id.clone())).await.unwrap();
    assert!(result.chains_updated >= 30, "{result:?}");
    let jwks = e.jwks(&id).await.unwrap();
    let records = e.list_records(&Default::default()).await.unwrap();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.key_id, result.new_key_id, "every record was re-signed by the new key");
        let jwk = jwks
            .keys
            .iter()
            .find(|k| k.kid == r.key_id.as_str())
            .expect("the signing key is in the JWKS");
        let public = URL_SAFE_NO_PAD.decode(&jwk.x).unwrap();
        let message = rotation_core::canonical::record_signing_bytes(&r.body).unwrap();
        assert!(
            dalek_verify(&public, &message, &r.signature),
            "record {} verifies under ed25519-dalek",
            r.id
        );
    }
    assert!(e.verify_all_chains().await.unwrap().iter().all(|v| v.valid));
    // The private keys are transit keys: the server lists both.
    let (status, body) = crate::support::plain_get(&format!(
        "transit/keys/{}",
        rotation_store_vault::transit::transit_key_name(&result.new_key_id)
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["type"], "ed25519");
    assert_eq!(
        body["data"]["exportable"], false,
        "the private key cannot leave the server"
    );
}

#[tokio::test]
async fn keyrings_work_with_data_keys_wrapped_by_transit() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let e = engine(store, transit());
    let name = KeyringName::parse(fresh("ring")).unwrap();
    e.create_keyring(&name).await.unwrap();
    let ids: Vec<_> = (0..20)
        .map(|i| rotation_core::ids::ValueId::parse(format!("v{i}")).unwrap())
        .collect();
    for id in &ids {
        e.encrypt_value(&name, id, format!("secret {id}").as_bytes())
            .await
            .unwrap();
    }
    e.rotate_keyring(&name, false, None).await.unwrap();
    let report = e.migrate_keyring(&name, &Default::default(), &|_| {}).await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.migrated, 20, "{report:?}");
    for id in &ids {
        let plain = e.decrypt_value(&name, id).await.unwrap();
        assert_eq!(plain.as_slice(), format!("secret {id}").as_bytes());
    }
}

#[tokio::test]
async fn a_revoked_key_can_no_longer_sign_in_the_server_and_its_chains_stay_verifiable() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let custody = transit();
    let e = engine(store.clone(), custody.clone());
    let id = AuthorityId::parse(fresh("org")).unwrap();
    e.create_authority(NewAuthority {
        id: id.clone(),
        name: None,
        rotation_period_days: None,
        grace_period_hours: Some(0),
    })
    .await
    .unwrap();
    e.issue_chains(&[IssueRequest {
        agent_id: AgentId::parse("agent-1").unwrap(),
        authority_id: id.clone(),
        capabilities: vec!["read".into()],
        delegate_to: None,
    }])
    .await
    .unwrap();
    let result = e.rotate_key(RotateRequest::new(id.clone())).await.unwrap();
    let old_name = rotation_store_vault::transit::transit_key_name(&result.old_key_id);
    let old = store.get_key(&result.old_key_id).await.unwrap().unwrap();
    // Until the revocation the old key still exists in the server.
    assert_eq!(
        crate::support::plain_get(&format!("transit/keys/{old_name}")).await.0,
        200
    );

    e.revoke_old_key(&id, &result.old_key_id, Default::default())
        .await
        .unwrap();

    // Gone from the server: neither our custody nor a plain client can sign with it.
    let (status, body) = crate::support::plain_get(&format!("transit/keys/{old_name}")).await;
    assert_eq!(status, 404, "{body}");
    let (addr, token) = crate::support::server();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/transit/sign/{old_name}", addr.trim_end_matches('/')))
        .header("X-Vault-Token", token)
        .json(&serde_json::json!({"input": "aGVsbG8="}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_client_error(),
        "signing with a revoked key must fail, got {}",
        response.status()
    );
    assert!(
        custody
            .sign(&result.old_key_id, &old.custody, &[b"hello".to_vec()])
            .await
            .is_err()
    );
    // Retiring again is fine (a retried revocation), and the new key still signs.
    custody
        .retire_signing_key(&result.old_key_id, &old.custody)
        .await
        .unwrap();
    assert!(e.verify_all_chains().await.unwrap().iter().all(|v| v.valid));
    let after = e
        .issue_chains(&[IssueRequest {
            agent_id: AgentId::parse("agent-2").unwrap(),
            authority_id: id.clone(),
            capabilities: vec!["read".into()],
            delegate_to: None,
        }])
        .await;
    assert!(after.is_ok(), "{after:?}");
    assert!(e.verify_all_chains().await.unwrap().iter().all(|v| v.valid));
    // A key of another custody is refused, not silently "retired".
    let (_, local, _) = local_engine();
    let foreign = local.create_signing_key(&result.old_key_id).await.unwrap();
    let refused = custody
        .retire_signing_key(&result.old_key_id, &foreign.custody)
        .await
        .unwrap_err();
    assert_eq!(refused.reason, rotation_core::Reason::InvalidInput);
}
