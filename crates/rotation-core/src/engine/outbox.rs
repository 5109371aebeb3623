//! The outbox: notifications enqueued with the change they report and
//! delivered afterwards, with retries and backoff, so a receiver that is
//! down gets the event later and none is lost.

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::error::Result;
use crate::ports::{Notification, OutboxMessage, StoreTx};
use crate::time::Timestamp;

/// Messages claimed per round.
const DISPATCH_BATCH: usize = 100;
/// Backoff of the first redelivery; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: TimeDelta = TimeDelta::seconds(30);
/// Longest wait between two delivery attempts.
const MAX_BACKOFF: TimeDelta = TimeDelta::hours(1);

/// What one dispatch round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchReport {
    /// Messages delivered.
    pub delivered: u64,
    /// Messages that failed and wait for a later attempt.
    pub retrying: u64,
}

impl Engine {
    /// Enqueues `notification` for each recipient in the caller's
    /// transaction (a recipient list without entries enqueues nothing).
    /// With `dedup`, at most one message per recipient and key is ever enqueued.
    pub(super) async fn enqueue(
        &self,
        tx: &mut dyn StoreTx,
        recipients: &[String],
        notification: &Notification,
        dedup: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        if recipients.is_empty() {
            return Ok(());
        }
        let messages: Vec<OutboxMessage> = recipients
            .iter()
            .map(|r| OutboxMessage {
                id: uuid::Uuid::now_v7(),
                dedup_key: dedup.map(|d| format!("{d}|{r}")),
                recipient: r.clone(),
                notification: notification.clone(),
                created_at: now,
                attempts: 0,
                next_attempt_at: now,
                delivered_at: None,
                last_error: None,
                claimed_by: None,
                claim_expires_at: None,
            })
            .collect();
        tx.enqueue_outbox(&messages).await?;
        Ok(())
    }

    /// Delivers every due outbox message through the notifier; failures
    /// are retried later with exponential backoff (30 s doubling to 1 h).
    /// Claims live in the store, so several processes can dispatch at once.
    pub async fn dispatch_outbox(&self) -> Result<DispatchReport> {
        let mut report = DispatchReport::default();
        loop {
            let now = self.now();
            let mut tx = self.store.begin().await?;
            let claimed = tx
                .claim_outbox(now, &self.config.owner, now + self.config.lease, DISPATCH_BATCH)
                .await?;
            tx.commit().await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            let full = claimed.len() == DISPATCH_BATCH;
            for mut message in claimed {
                let result = self.notifier.deliver(&message.recipient, &message.notification).await;
                let now = self.now();
                message.claimed_by = None;
                message.claim_expires_at = None;
                match result {
                    Ok(()) => {
                        message.delivered_at = Some(now);
                        message.last_error = None;
                        report.delivered += 1;
                    }
                    Err(e) => {
                        message.attempts += 1;
                        let factor = 1i32 << message.attempts.saturating_sub(1).min(10);
                        message.next_attempt_at = now + (FIRST_BACKOFF * factor).min(MAX_BACKOFF);
                        message.last_error = Some(e.message.clone());
                        tracing::warn!(recipient_kind = recipient_kind(&message.recipient), event = %message.notification.event, error = %e, "notification not delivered; it is retried later");
                        report.retrying += 1;
                    }
                }
                let mut tx = self.store.begin().await?;
                tx.update_outbox(&message).await?;
                tx.commit().await?;
            }
            if !full {
                return Ok(report);
            }
        }
    }

    /// Outbox messages, oldest first.
    pub async fn list_outbox(&self, only_pending: bool, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.store.list_outbox(only_pending, limit).await
    }
}

/// `webhook`, `email` or `log`, for logs (a URL may carry a token).
fn recipient_kind(recipient: &str) -> &'static str {
    if recipient.starts_with("mailto:") {
        "email"
    } else if recipient.starts_with("http") {
        "webhook"
    } else {
        "log"
    }
}
