//! A harness: memory store, settable clock, local custody.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use rotation_core::authority::{CustodyRef, KeyState};
use rotation_core::engine::{IssueRequest, NewAuthority, RotateRequest};
use rotation_core::ids::{AgentId, AuthorityId, KeyId, KeyringName};
use rotation_core::ports::{DataKey, KeyCustody, NewSigningKey, StateStore, WrapContext};
use rotation_core::run::RunState;
use rotation_core::{Engine, EngineConfig, Result};
use rotation_crypto::{Kek, LocalCustody, MasterSecret, RingCrypto};
use rotation_testkit::{MemoryStore, SettableClock};
use secrecy::SecretBox;

pub(crate) const AUTHORITY: &str = "org-acme";

pub(crate) struct Harness {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) clock: Arc<SettableClock>,
    pub(crate) custody: Arc<LocalCustody>,
}

impl Harness {
    pub(crate) fn new() -> Self {
        let secret = MasterSecret::KeyFile(SecretBox::new(Box::new(vec![9u8; 32])));
        let (kek, _) = Kek::create(&secret).unwrap();
        Harness {
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(SettableClock::new(rotation_core::time::truncate(chrono::Utc::now()))),
            custody: Arc::new(LocalCustody::new(kek)),
        }
    }

    pub(crate) fn engine(&self, owner: &str) -> Engine {
        self.engine_with(self.store.clone(), self.custody.clone(), owner)
    }

    pub(crate) fn engine_with(&self, store: Arc<dyn StateStore>, custody: Arc<dyn KeyCustody>, owner: &str) -> Engine {
        Engine::new(
            store,
            Arc::new(RingCrypto::new()),
            custody,
            self.clock.clone(),
            EngineConfig {
                owner: owner.into(),
                actor: "test".into(),
                lease: TimeDelta::seconds(60),
                resign_batch: 3,
            },
        )
    }

    /// `org-acme` with `agents` chains (genesis + one capability each; every
    /// third agent also delegates).
    pub(crate) async fn setup(&self, agents: usize) -> AuthorityId {
        let engine = self.engine("setup");
        let id = AuthorityId::parse(AUTHORITY).unwrap();
        engine
            .create_authority(NewAuthority {
                id: id.clone(),
                name: None,
                rotation_period_days: None,
                grace_period_hours: Some(24),
            })
            .await
            .unwrap();
        let requests: Vec<IssueRequest> = (0..agents)
            .map(|i| IssueRequest {
                agent_id: AgentId::parse(format!("agent-{i}")).unwrap(),
                authority_id: id.clone(),
                capabilities: vec!["read".into()],
                delegate_to: (i % 3 == 0).then(|| AgentId::parse(format!("agent-{}", i + 1)).unwrap()),
            })
            .collect();
        engine.issue_chains(&requests).await.unwrap();
        id
    }

    /// Asserts the store is consistent after a rotation of `original_key`:
    /// every chain verifies, exactly two keys (the new one active and
    /// current, the original in grace), no run left open, audit intact.
    pub(crate) async fn assert_rotated_cleanly(&self, original_key: &KeyId, agents: usize) {
        let engine = self.engine("checker");
        let id = AuthorityId::parse(AUTHORITY).unwrap();
        let verdicts = engine.verify_all_chains().await.unwrap();
        assert_eq!(verdicts.len(), agents);
        assert!(verdicts.iter().all(|v| v.valid), "{verdicts:?}");
        let authority = engine.authority(&id).await.unwrap();
        let keys = engine.keys(&id).await.unwrap();
        let states: HashMap<KeyId, KeyState> = keys.iter().map(|k| (k.key_id.clone(), k.state)).collect();
        assert_eq!(keys.len(), 2, "{states:?}");
        assert_eq!(states[&authority.current_key_id], KeyState::Active);
        assert_eq!(states[original_key], KeyState::Grace);
        let records = engine.list_records(&Default::default()).await.unwrap();
        assert!(records.iter().all(|r| r.key_id == authority.current_key_id));
        assert!(self.store.list_active_runs().await.unwrap().is_empty());
        let runs = self.store.list_runs(None, 10).await.unwrap();
        assert_eq!(
            runs.iter().filter(|r| r.state == RunState::Completed).count(),
            1,
            "{runs:?}"
        );
        assert!(engine.verify_audit().await.unwrap().valid);
    }
}

pub(crate) fn rotate(id: &AuthorityId) -> RotateRequest {
    RotateRequest::new(id.clone())
}

/// A custody that delegates to the real one but fails or corrupts on demand.
pub(crate) struct MisbehavingCustody {
    pub(crate) inner: Arc<LocalCustody>,
    /// Corrupt single-message (probe) signatures.
    pub(crate) corrupt_probe: bool,
    /// Fail batches of more than one message (re-signing).
    pub(crate) fail_batches: bool,
    /// Fail retiring keys (revocation).
    pub(crate) fail_retire: bool,
}

#[async_trait]
impl KeyCustody for MisbehavingCustody {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn create_signing_key(&self, key_id: &KeyId) -> Result<NewSigningKey> {
        self.inner.create_signing_key(key_id).await
    }

    async fn sign(&self, key_id: &KeyId, key: &CustodyRef, messages: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        if self.fail_batches && messages.len() > 1 {
            return Err(rotation_core::Error::new(
                rotation_core::Reason::RotationFailed,
                "custody refused to sign",
            ));
        }
        let mut signatures = self.inner.sign(key_id, key, messages).await?;
        if self.corrupt_probe && messages.len() == 1 {
            signatures[0][0] ^= 0xff;
        }
        Ok(signatures)
    }

    async fn destroy_signing_key(&self, key_id: &KeyId, key: &CustodyRef) -> Result<()> {
        self.inner.destroy_signing_key(key_id, key).await
    }

    async fn retire_signing_key(&self, key_id: &KeyId, key: &CustodyRef) -> Result<()> {
        if self.fail_retire {
            return Err(rotation_core::Error::backend("custody unreachable"));
        }
        self.inner.retire_signing_key(key_id, key).await
    }

    async fn create_data_key(&self, keyring: &KeyringName, version: u32) -> Result<(DataKey, CustodyRef)> {
        self.inner.create_data_key(keyring, version).await
    }

    async fn wrap_data_key(&self, keyring: &KeyringName, version: u32, key: &DataKey) -> Result<CustodyRef> {
        self.inner.wrap_data_key(keyring, version, key).await
    }

    async fn unwrap_data_key(&self, keyring: &KeyringName, version: u32, wrapped: &CustodyRef) -> Result<DataKey> {
        self.inner.unwrap_data_key(keyring, version, wrapped).await
    }

    async fn rewrap(&self, context: &WrapContext, handle: &CustodyRef) -> Result<Option<CustodyRef>> {
        self.inner.rewrap(context, handle).await
    }
}
