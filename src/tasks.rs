//! Owned background work: one cancellation token and one task tracker for
//! every loop and timer the application starts (heartbeats, sweeps, the
//! cursor saver, conflation windows, bus listeners, Redis probes, pruning,
//! catch-ups, per-session workers), so shutdown can stop them all and know
//! that nothing is left running.
//!
//! Two ways to start work: [`Tasks::spawn`] for loops that run until
//! shutdown (they are dropped at their next await once the token is
//! cancelled), and [`Tasks::spawn_until_done`] for work that must not be
//! cut short (a per-session worker finishing a durable write): it is only
//! tracked, and watches its own token (a child of [`Tasks::token`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
    /// Set when shutdown begins, before sessions are closed and well before
    /// the token is cancelled: new connections and per-session clean-up
    /// that shutdown does in bulk look at it.
    draining: Arc<AtomicBool>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` until it ends or the application shuts down.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            token.run_until_cancelled(work).await;
        });
    }

    /// Runs `work` to its end (it must watch a token of its own, e.g. a
    /// [`Self::child_token`]); tracked so shutdown can wait for it.
    pub fn spawn_until_done<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(work);
    }

    /// A token cancelled at shutdown at the latest (sessions, per-feature loops).
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Shutdown has begun (see [`Tasks::begin_draining`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The first step of shutdown: refuse new work, let sessions close.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Tasks still running (for tests and diagnostics).
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels everything and waits (at most `grace`) for it to end;
    /// `false` if something was still running after `grace`.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_stops_loops_and_waits_for_tracked_work() {
        let tasks = Tasks::new();
        tasks.spawn(std::future::pending());
        let token = tasks.child_token();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tasks.spawn_until_done(async move {
            token.cancelled().await;
            let _ = tx.send("finished its job");
        });
        assert_eq!(tasks.running(), 2);
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert_eq!(tasks.running(), 0);
        assert_eq!(rx.await.unwrap(), "finished its job");
    }
}
