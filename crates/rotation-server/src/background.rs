//! Engine work the server runs in its own tasks (so that a dropped request
//! does not cancel a rotation halfway), counted so that a graceful shutdown
//! can wait for it instead of dropping it mid-run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The server's background tasks. Cloning shares the count.
#[derive(Clone, Default)]
pub(crate) struct Background(Arc<Count>);

#[derive(Default)]
struct Count {
    running: AtomicUsize,
    idle: Notify,
}

/// Decrements the count when its task ends, also by a panic.
struct Running(Arc<Count>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Background {
    /// Spawns `work`, counted until it ends.
    pub(crate) fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        let running = Running(self.0.clone());
        tokio::spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Tasks still running.
    pub(crate) fn running(&self) -> usize {
        self.0.running.load(Ordering::SeqCst)
    }

    /// Waits until no task runs, at most `limit`; whether they all ended.
    pub(crate) async fn wait_idle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                // Created before the check: a wake-up between the two is not lost.
                let idle = self.0.idle.notified();
                if self.running() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_running_tasks_up_to_the_limit() {
        let background = Background::default();
        assert!(background.wait_idle(Duration::from_millis(1)).await, "idle at first");
        background.spawn(tokio::time::sleep(Duration::from_millis(150)));
        background.spawn(async { panic!("a failing task still ends") });
        assert!(!background.wait_idle(Duration::from_millis(20)).await);
        assert!(background.running() >= 1);
        assert!(background.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(background.running(), 0);
    }
}
