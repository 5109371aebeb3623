//! The engine: every operation of the product, written against the ports.
//!
//! **Invariant:** every state transition of a run is committed to the
//! store, with its audit events, before the side effect that follows it,
//! and every step is idempotent for its rotation id, so a process stopped
//! at any point leaves a run that another process can finish.

mod audit_log;
mod authorities;
mod chains;
mod custody_ops;
mod keyring_rotation;
mod keyrings;
mod outbox;
mod policies;
mod report;
mod rotation;
mod schedules;
mod secret_access;
mod secret_rotation;
mod secret_store;
mod secrets;
mod stats;
mod transparency;

use std::sync::Arc;

use chrono::TimeDelta;

use crate::audit::{self, AuditDraft};
use crate::error::{Error, Reason, Result};
use crate::ids::RotationId;
use crate::ports::{
    CryptoProvider, KeyCustody, LogNotifier, Notification, Notifier, SecretBackend, StateStore, StoreOnlyResolver,
    StoreTx, TargetResolver,
};
use crate::run::Run;
use crate::time::{Clock, Timestamp, truncate};

pub use audit_log::AuditReport;
pub use authorities::{
    Jwk, Jwks, MAX_GRACE_PERIOD_HOURS, MAX_ROTATION_PERIOD_DAYS, NewAuthority, RevokeOptions, RotationStatus,
    RotationStatusInfo,
};
pub use chains::IssueRequest;
pub use custody_ops::RewrapReport;
pub use keyring_rotation::{
    KeyringRotateRequest, KeyringRotation, MigrateOptions, MigrationProgress, MigrationReport, ValueFailure,
};
pub use keyrings::{HealthCheck, HealthReport, ImportReport, KeyringReport, VersionShare};
pub use outbox::DispatchReport;
pub use policies::MAX_OFFSET_SECONDS;
pub use report::{ComplianceItem, ComplianceReport, StuckRun};
pub use rotation::{RotateRequest, RotationResult};
pub use schedules::{PlanItem, ScheduledOutcome};
pub use secret_access::{SecretReference, ValidationTally};
pub use secret_rotation::{SecretRotateRequest, SecretRotationResult};
pub use secret_store::{SECRETS_KEYRING, StoreSecretBackend};
pub use secrets::{HistoryEntry, PutSecret, SecretStatus, SecretSummary, StepRecord, Validation};
pub use stats::Stats;
pub use transparency::{
    AUDIT_CHECKPOINT_EVENT, AUDIT_CHECKPOINT_META, AUDIT_KEY_ID_PREFIX, AUDIT_KEY_META, AUDIT_ORIGIN_PREFIX,
    AUDIT_WITNESSES_META, AuditKey, CheckpointCheck, ConsistencyProof, InclusionProof, SignedCheckpoint,
};

/// Tunables of an engine instance.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Unique name of this process, written as the lease owner of the runs it drives.
    pub owner: String,
    /// Who is acting (written into audit events), e.g. `cli:alice`.
    pub actor: String,
    /// How long a run's lease lasts after each step; another process may take over after that.
    pub lease: TimeDelta,
    /// Trust-chain records re-signed per committed batch.
    pub resign_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: format!("engine-{}", uuid::Uuid::new_v4().simple()),
            actor: "system".into(),
            lease: TimeDelta::seconds(60),
            resign_batch: 1000,
        }
    }
}

/// The rotation engine over a store, crypto provider, key custody and clock.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn StateStore>,
    crypto: Arc<dyn CryptoProvider>,
    custody: Arc<dyn KeyCustody>,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
    secrets: Option<Arc<dyn SecretBackend>>,
    resolver: Arc<dyn TargetResolver>,
    config: EngineConfig,
}

impl Engine {
    /// An engine over the given adapters.
    pub fn new(
        store: Arc<dyn StateStore>,
        crypto: Arc<dyn CryptoProvider>,
        custody: Arc<dyn KeyCustody>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        Engine {
            store,
            crypto,
            custody,
            clock,
            notifier: Arc::new(LogNotifier),
            secrets: None,
            resolver: Arc::new(StoreOnlyResolver),
            config,
        }
    }

    /// The same engine keeping secret values in `backend` (default: the
    /// store's own sealed table, [`StoreSecretBackend`]).
    pub fn with_secret_backend(mut self, backend: Arc<dyn SecretBackend>) -> Self {
        self.secrets = Some(backend);
        self
    }

    /// The same engine resolving secret targets and verification tests
    /// with `resolver` (default: store-only targets and `nonempty`).
    pub fn with_resolver(mut self, resolver: Arc<dyn TargetResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The secret backend in use.
    pub fn secret_backend(&self) -> Arc<dyn SecretBackend> {
        match &self.secrets {
            Some(b) => Arc::clone(b),
            None => Arc::new(StoreSecretBackend::new(self.clone())),
        }
    }

    /// The same engine delivering notifications to `notifier` (default: the log).
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Delivers a notification after the change it reports has committed; a
    /// failed delivery is logged, never undoes the change.
    async fn notify(&self, notification: Notification) {
        if let Err(e) = self.notifier.notify(&notification).await {
            tracing::warn!(event = %notification.event, error = %e, "notification not delivered");
        }
    }

    /// The store this engine works on.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// The crypto provider this engine uses.
    pub fn crypto(&self) -> &Arc<dyn CryptoProvider> {
        &self.crypto
    }

    /// This engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The current instant, at store precision.
    pub fn now(&self) -> Timestamp {
        truncate(self.clock.now())
    }

    fn draft(
        &self,
        event: &str,
        target: crate::ids::Target,
        rotation_id: Option<RotationId>,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            event: event.to_owned(),
            target,
            rotation_id,
            actor: self.config.actor.clone(),
            details,
        }
    }

    async fn append_audit(&self, tx: &mut dyn StoreTx, at: Timestamp, drafts: Vec<AuditDraft>) -> Result<()> {
        audit::append(tx, self.crypto.as_ref(), at, drafts).await
    }

    /// Re-reads `run` inside `tx` and checks this engine still holds its
    /// lease; renews the lease. A run taken over by another process fails
    /// with `concurrent_rotation`, so two processes never drive one run.
    async fn hold_lease(&self, tx: &mut dyn StoreTx, run: &mut Run, now: Timestamp) -> Result<()> {
        let stored = tx
            .get_run(run.rotation_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("rotation {} not found", run.rotation_id)))?;
        if stored.lease_owner != run.lease_owner {
            return Err(Error::new(
                Reason::ConcurrentRotation,
                format!(
                    "rotation {} was taken over by {} after this process's lease expired",
                    run.rotation_id, stored.lease_owner
                ),
            )
            .with_rotation(run.rotation_id));
        }
        run.lease_expires_at = now + self.config.lease;
        run.updated_at = now;
        Ok(())
    }

    /// Ends this engine's lease on `run` now (if it still holds it), so
    /// any process may resume the run at once.
    async fn release_lease(&self, run: &mut Run) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        self.hold_lease(tx.as_mut(), run, now).await?;
        run.lease_expires_at = now;
        tx.update_run(run).await?;
        tx.commit().await
    }
}
