//! The notification port: telling people and systems about events.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::RotationId;

/// An event worth telling someone about. Never carries secret material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Event type, e.g. `key_rotated`.
    pub event: String,
    /// Target, as `kind:name`.
    pub target: String,
    /// Rotation concerned.
    pub rotation_id: Option<RotationId>,
    /// Event details (e.g. `previous_version`, `new_version`).
    pub details: serde_json::Value,
}

/// Delivers notifications. A failed delivery must not undo the change it
/// reports; the engine logs it and goes on.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one notification to the notifier's default destination.
    async fn notify(&self, notification: &Notification) -> Result<()>;

    /// Delivers one notification to `recipient` (a webhook URL,
    /// `mailto:ADDRESS` or `log`). An error means "not delivered, try
    /// again later"; it never carries secret material. The default ignores
    /// the recipient.
    async fn deliver(&self, recipient: &str, notification: &Notification) -> Result<()> {
        let _ = recipient;
        self.notify(notification).await
    }
}

/// Writes notifications to the log (`tracing`, target `rotation::notify`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<()> {
        tracing::info!(target: "rotation::notify", event = %n.event, target_id = %n.target, rotation = ?n.rotation_id, details = %n.details, "notification");
        Ok(())
    }
}
