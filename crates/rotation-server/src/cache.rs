//! Results too expensive to compute on every request, kept for a few
//! seconds: the custody probe of `/readyz`, and the verdicts of
//! `/v1/chains/verify` and `/v1/audit/verify`.
//!
//! A verdict is keyed by the newest audit sequence number: every committed
//! change (from any replica) appends audit events, so a change computes a
//! new verdict at once; unchanged, a verdict is reused for [`TTL`] by the
//! server's clock (grace periods end with time, not with events). One
//! request computes while concurrent ones wait for its answer.

use chrono::TimeDelta;
use rotation_core::Result;
use rotation_core::time::Timestamp;
use tokio::sync::Mutex;

/// How long a result is reused.
pub(crate) const TTL: TimeDelta = TimeDelta::seconds(5);

/// One cached result.
struct Entry<T> {
    key: i64,
    at: Timestamp,
    value: T,
}

/// A result reused while its key is unchanged and younger than [`TTL`].
pub(crate) struct Cached<T> {
    slot: Mutex<Option<Entry<T>>>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached { slot: Mutex::new(None) }
    }
}

impl<T: Clone> Cached<T> {
    /// The cached value for `key` if it is fresh at `now`; otherwise
    /// `compute`'s, kept when it succeeds.
    pub(crate) async fn get_or_compute<F>(&self, key: i64, now: Timestamp, compute: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(entry) = slot.as_ref()
            && entry.key == key
            && now >= entry.at
            && now - entry.at < TTL
        {
            return Ok(entry.value.clone());
        }
        let value = compute.await?;
        *slot = Some(Entry {
            key,
            at: now,
            value: value.clone(),
        });
        Ok(value)
    }
}

/// The server's cached results.
#[derive(Default)]
pub(crate) struct Verdicts {
    /// `/readyz`'s custody probe: `None` when the custody worked, else why not.
    pub(crate) custody: Cached<Option<String>>,
    /// `/v1/chains/verify`.
    pub(crate) chains: Cached<serde_json::Value>,
    /// `/v1/audit/verify`.
    pub(crate) audit: Cached<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[tokio::test]
    async fn reused_while_the_key_holds_and_the_ttl_lasts() {
        let cache = Cached::<u32>::default();
        let computed = std::sync::atomic::AtomicU32::new(0);
        let compute = || async { Ok(computed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1) };
        assert_eq!(cache.get_or_compute(1, at(0), compute()).await.unwrap(), 1);
        assert_eq!(cache.get_or_compute(1, at(4), compute()).await.unwrap(), 1, "fresh");
        assert_eq!(cache.get_or_compute(2, at(4), compute()).await.unwrap(), 2, "a new key");
        assert_eq!(cache.get_or_compute(2, at(10), compute()).await.unwrap(), 3, "expired");
        assert_eq!(
            cache.get_or_compute(2, at(1), compute()).await.unwrap(),
            4,
            "a clock set back"
        );
    }

    #[tokio::test]
    async fn errors_are_not_kept() {
        let cache = Cached::<u32>::default();
        let failed = cache
            .get_or_compute(1, at(0), async { Err(rotation_core::Error::backend("down")) })
            .await;
        assert!(failed.is_err());
        assert_eq!(cache.get_or_compute(1, at(1), async { Ok(7) }).await.unwrap(), 7);
    }
}
