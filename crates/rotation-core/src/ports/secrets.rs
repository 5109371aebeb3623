//! Ports of secret rotation: where values live ([`SecretBackend`]), where
//! they are used ([`CredentialTarget`], the design's `Target` port) and how
//! a new value is tested ([`Verifier`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::RotationId;
use crate::secret::{Secret, SecretValue, SecretVersion, Stage, Strategy, VersionSelector};

/// Versioned secret values with stage labels CURRENT / PENDING / PREVIOUS.
///
/// Every label is on at most one version of a path; moving a label takes
/// it off the version that had it, in the same atomic write.
#[async_trait]
pub trait SecretBackend: Send + Sync {
    /// A short name for status output (`store`, `vault`).
    fn name(&self) -> &'static str;

    /// Writes a new version with `stages` and `attributes`; returns its
    /// number. With `cas = Some(n)` the write succeeds only if the newest
    /// version is `n` (`0`: no version yet), else `concurrent_rotation`.
    async fn write(
        &self,
        path: &str,
        value: &SecretValue,
        stages: &[Stage],
        attributes: &BTreeMap<String, String>,
        cas: Option<u32>,
    ) -> Result<u32>;

    /// Reads one version and its value; `None` if there is no such version or label.
    async fn read(&self, path: &str, selector: VersionSelector) -> Result<Option<(SecretVersion, SecretValue)>>;

    /// Every version of a path (without values), ascending.
    async fn versions(&self, path: &str) -> Result<Vec<SecretVersion>>;

    /// Applies label moves atomically: `(stage, Some(v))` puts `stage` on
    /// version `v`, `(stage, None)` removes it from whichever version has
    /// it. `attributes` are merged into the named versions' attributes (an
    /// empty string removes a key). `not_found` if a version is missing.
    async fn update(
        &self,
        path: &str,
        moves: &[(Stage, Option<u32>)],
        attributes: &[(u32, BTreeMap<String, String>)],
    ) -> Result<()>;
}

/// A step of a secret rotation, as the script protocol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Produce the new value.
    Create,
    /// Make the target accept the new value.
    Set,
    /// Test the new value against the target.
    Test,
    /// After promotion: tidy up at the target.
    Finish,
    /// Undo `set`: the target accepts the old value again.
    Rollback,
    /// Dual-write, after the grace period: the target stops accepting the old value.
    Disable,
}

impl Step {
    /// The stable string (`create`, `set`, `test`, `finish`, `rollback`, `disable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Set => "set",
            Step::Test => "test",
            Step::Finish => "finish",
            Step::Rollback => "rollback",
            Step::Disable => "disable",
        }
    }
}

/// A version together with its value.
#[derive(Debug, Clone)]
pub struct VersionedValue {
    /// The version.
    pub version: SecretVersion,
    /// Its value.
    pub value: SecretValue,
}

/// Everything a target or verifier gets for one step.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The rotation.
    pub rotation_id: RotationId,
    /// The step.
    pub step: Step,
    /// The secret's metadata and settings.
    pub secret: Secret,
    /// Strategy of the rotation.
    pub strategy: Strategy,
    /// The value in use when the rotation started.
    pub current: Option<VersionedValue>,
    /// The value being rotated in (absent in `create`).
    pub pending: Option<VersionedValue>,
    /// The value that was PREVIOUS when the rotation started (dual-write `disable`: the value to disable).
    pub previous: Option<VersionedValue>,
    /// CURRENT values of secrets the settings refer to (`admin_secret`, `ca_secret`), by path.
    pub references: BTreeMap<String, SecretValue>,
    /// Blue-green: the slot (role) the step acts on.
    pub slot: Option<String>,
    /// The engine's clock at the step (certificates are issued from it).
    pub now: crate::time::Timestamp,
}

impl StepContext {
    /// Every secret value in the context, for redacting output.
    pub fn values(&self) -> Vec<&SecretValue> {
        let mut v: Vec<&SecretValue> = [&self.current, &self.pending, &self.previous]
            .into_iter()
            .flatten()
            .map(|vv| &vv.value)
            .collect();
        v.extend(self.references.values());
        v
    }
}

/// What a step produced.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// Human-readable output (what was changed; a script's exit status and
    /// the tail of its stderr). The engine redacts every secret value from
    /// it before it is recorded (audit `secret_step` details `log`, history
    /// steps' `log`), where every reader of the history sees it.
    pub log: String,
    /// A script's stdout, kept only when the secret's `script_log` setting
    /// asks for it, already redacted. Recorded apart from `log` (audit
    /// `secret_step` details key `stdout`, history steps' `stdout`), so
    /// that it can be shown to admins only; the engine redacts it again.
    pub stdout: Option<String>,
    /// `create` only: the new value, when the target makes it (certificates, scripts).
    pub value: Option<SecretValue>,
    /// Non-secret attributes to keep with the new version (e.g. `not_after`).
    pub attributes: BTreeMap<String, String>,
}

/// The system that uses a credential (the design's `Target` port): a
/// PostgreSQL role, a script, a certificate issuer, or nothing (store only).
///
/// Every step must be idempotent for its rotation id: a resumed run may
/// repeat the step it was in when its process stopped.
#[async_trait]
pub trait CredentialTarget: Send + Sync {
    /// A short description of what a rotation touches, for `schedule plan`.
    fn describe(&self, secret: &Secret) -> String;
    /// Strategies this target can carry out.
    fn strategies(&self) -> &'static [Strategy] {
        &Strategy::ALL
    }
    /// Runs one step. `Ok` means the step succeeded; an error fails it with
    /// a stable reason (`verification_failed` for `test`).
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput>;
    /// Non-secret attributes of a value written by a caller (e.g. a
    /// certificate's `not_after`); `invalid_input` if the value cannot be
    /// used by this target (e.g. not a PEM certificate and key).
    fn inspect(&self, secret: &Secret, value: &SecretValue) -> Result<BTreeMap<String, String>> {
        let _ = (secret, value);
        Ok(BTreeMap::new())
    }
}

/// A named verification test of a new value.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// Tests `ctx.pending` (the new value); `verification_failed` if it does not work.
    async fn verify(&self, ctx: &StepContext) -> Result<StepOutput>;
}

/// Resolves the target of a secret and verification tests by name; the
/// binaries provide one wiring the concrete adapters.
pub trait TargetResolver: Send + Sync {
    /// The target a secret's rotation acts on.
    fn target(&self, secret: &Secret) -> Result<Arc<dyn CredentialTarget>>;
    /// The verification test called `name` (e.g. `login`, `certificate`,
    /// `http:https://example/health`); `invalid_policy` naming
    /// `verification_tests` for an unknown test.
    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>>;
}

/// Store-only target: the backend's labels are the whole rotation.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreOnlyTarget;

#[async_trait]
impl CredentialTarget for StoreOnlyTarget {
    fn describe(&self, _secret: &Secret) -> String {
        "stored value only".into()
    }
    async fn run(&self, _ctx: &StepContext) -> Result<StepOutput> {
        Ok(StepOutput::default())
    }
}

/// Verifier `nonempty`: the new value is not empty.
#[derive(Debug, Default, Clone, Copy)]
pub struct NonEmptyVerifier;

#[async_trait]
impl Verifier for NonEmptyVerifier {
    async fn verify(&self, ctx: &StepContext) -> Result<StepOutput> {
        match &ctx.pending {
            Some(p) if !p.value.expose().is_empty() => Ok(StepOutput {
                log: "nonempty: ok".into(),
                ..StepOutput::default()
            }),
            _ => Err(crate::Error::new(
                crate::Reason::VerificationFailed,
                "nonempty: the new value is empty",
            )),
        }
    }
}

/// Resolver knowing only store-only targets and `nonempty` (library use
/// and engine tests; binaries wire the real adapters).
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreOnlyResolver;

impl TargetResolver for StoreOnlyResolver {
    fn target(&self, secret: &Secret) -> Result<Arc<dyn CredentialTarget>> {
        match secret.secret_type {
            crate::secret::SecretType::Database | crate::secret::SecretType::Certificate => {
                Err(crate::Error::invalid_input(format!(
                    "no target adapter for {} secrets is wired in this build",
                    secret.secret_type
                )))
            }
            _ if secret.config.script.is_some() => Err(crate::Error::invalid_input(
                "no script target adapter is wired in this build",
            )),
            _ => Ok(Arc::new(StoreOnlyTarget)),
        }
    }

    fn verifier(&self, name: &str) -> Result<Arc<dyn Verifier>> {
        match name {
            "nonempty" => Ok(Arc::new(NonEmptyVerifier)),
            _ => Err(crate::policy::invalid_field(
                "verification_tests",
                format!("unknown test {name:?}"),
            )),
        }
    }
}
