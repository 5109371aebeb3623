//! Step contexts for the tests.

use std::collections::BTreeMap;

use rotation_core::ids::RotationId;
use rotation_core::ports::{Step, StepContext, VersionedValue};
use rotation_core::secret::{Secret, SecretConfig, SecretType, SecretValue, SecretVersion, Stage, Strategy};

/// A secret with these settings.
pub(crate) fn secret(path: &str, secret_type: SecretType, config: SecretConfig) -> Secret {
    let now = chrono::Utc::now();
    Secret {
        path: path.to_owned(),
        secret_type,
        policy: None,
        config,
        created_at: now,
        updated_at: now,
        last_rotated_at: None,
    }
}

/// A version `n` of `path` holding `value`.
pub(crate) fn version(path: &str, n: u32, stage: Stage, value: &str) -> VersionedValue {
    VersionedValue {
        version: SecretVersion {
            path: path.to_owned(),
            version: n,
            stages: vec![stage],
            created_at: chrono::Utc::now(),
            attributes: BTreeMap::new(),
        },
        value: SecretValue::new(value),
    }
}

/// A context for `step` of a staged rotation of `secret`, without values.
pub(crate) fn ctx(secret: Secret, step: Step) -> StepContext {
    StepContext {
        rotation_id: RotationId::generate(),
        step,
        secret,
        strategy: Strategy::Staged,
        current: None,
        pending: None,
        previous: None,
        references: BTreeMap::new(),
        slot: None,
        now: chrono::Utc::now(),
    }
}

/// `ctx` with another step.
pub(crate) fn at(ctx: &StepContext, step: Step) -> StepContext {
    StepContext { step, ..ctx.clone() }
}

/// `ctx` with these current and pending values (`None`: absent).
pub(crate) fn with_values(ctx: &StepContext, current: Option<&str>, pending: Option<&str>) -> StepContext {
    let path = ctx.secret.path.clone();
    StepContext {
        current: current.map(|v| version(&path, 1, Stage::Current, v)),
        pending: pending.map(|v| version(&path, 2, Stage::Pending, v)),
        ..ctx.clone()
    }
}

/// A fresh random string (a password in tests).
pub(crate) fn random(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
