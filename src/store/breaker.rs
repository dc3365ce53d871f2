//! A circuit breaker for durable writes (the log's appends, and document
//! turns through [`Breaker::run_to_end`]): while the database is known to be down,
//! writes are refused at once instead of each waiting out the pool's
//! connection timeout (3 s, retried while connections are refused).
//!
//! Closed: writes run. A failed write that is an outage (connection
//! refused or reset, the server shutting down), or any other failure (a
//! pool timeout among them) after which the database does not take a
//! connection of its own and answer within [`PING_TIMEOUT`], opens it. A
//! write still waiting after [`SUSPECT_AFTER`] asks [`Store::probe`] (one
//! fresh connection, one try):
//! the pool keeps retrying refused connections until its own timeout, so
//! a write that found no live connection when the database went away
//! would otherwise wait all of it. One probe runs at a time; writes that
//! wait meanwhile take its verdict. Open: [`Breaker::check`] refuses; one
//! probe task asks (outside the pool) every [`PROBE_EVERY`] and closes the
//! breaker on the first answer (the half-open check: nothing else reaches
//! the database before).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::{Store, StoreError};
use crate::tasks::Tasks;

const PING_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// A write taking longer than this has the database probed (writes take
/// milliseconds; a slow but healthy database answers the probe).
const SUSPECT_AFTER: Duration = Duration::from_millis(250);

/// Why [`Breaker::run_to_end`] has no result.
pub enum Unfinished<T> {
    /// The write ended without one (refused, failed): nothing committed.
    Failed(StoreError),
    /// The breaker stopped waiting; the write runs on and may still
    /// commit: the receiver gets its result when it ends.
    GivenUp(StoreError, oneshot::Receiver<Result<T, StoreError>>),
}

pub struct Breaker {
    store: Arc<dyn Store>,
    open: AtomicBool,
    /// A suspicious-write probe is running.
    probing: AtomicBool,
    /// Wakes writes waiting on another's probe when the breaker opens.
    opened: Notify,
    /// The probe task's owner.
    tasks: Tasks,
}

impl Breaker {
    pub fn new(store: Arc<dyn Store>, tasks: Tasks) -> Arc<Self> {
        Arc::new(Self {
            store,
            open: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            opened: Notify::new(),
            tasks,
        })
    }

    /// `Err` while the database is known to be down.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.open.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "the database is down; durable writes resume by themselves".into(),
            ));
        }
        Ok(())
    }

    /// Runs one write: refused at once while open; given up after `limit`
    /// (a database that does not answer is down); a failure is judged by
    /// [`Self::failed`]. Dropping `op` on the timeout rolls back a
    /// transaction that has not reached its COMMIT; a statement or COMMIT
    /// the database already has runs on (see [`Self::run_to_end`]).
    pub async fn run<T>(
        self: &Arc<Self>,
        limit: Duration,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.check()?;
        let result = tokio::select! {
            result = tokio::time::timeout(limit, op) => result.unwrap_or_else(|_| {
                Err(StoreError::Unavailable("the database did not answer in time".into()))
            }),
            () = self.outage() => Err(StoreError::Unavailable(
                "the database is down; durable writes resume by themselves".into(),
            )),
        };
        if let Err(e) = &result {
            self.failed(e).await;
        }
        result
    }

    /// [`Self::run`] for a write whose end matters after nobody waits for
    /// it: giving up does not stop a statement or COMMIT the database
    /// already has, so `op` runs on a task of its own (until done, shutdown
    /// included), and when the breaker gives up the caller gets the wait
    /// for its result ([`Unfinished::GivenUp`]): it may still commit.
    pub async fn run_to_end<T, F>(
        self: &Arc<Self>,
        limit: Duration,
        op: F,
    ) -> Result<T, Unfinished<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.check().map_err(Unfinished::Failed)?;
        let (done, mut result) = oneshot::channel();
        self.tasks.spawn_until_done(async move {
            let _ = done.send(op.await);
        });
        let mut finished = false;
        let waited = self
            .run(limit, async {
                let answer = (&mut result).await;
                finished = true;
                answer.unwrap_or_else(|_| {
                    Err(StoreError::Corrupt(
                        "the write ended without an answer".into(),
                    ))
                })
            })
            .await;
        match waited {
            Ok(value) => Ok(value),
            Err(e) if finished => Err(Unfinished::Failed(e)),
            Err(e) => Err(Unfinished::GivenUp(e, result)),
        }
    }

    /// Resolves when the database is found down while a write waits: after
    /// [`SUSPECT_AFTER`], by this write's probe or by another's (or any
    /// failure) opening the breaker. Pending while the database answers.
    async fn outage(self: &Arc<Self>) {
        let opened = self.opened.notified();
        tokio::pin!(opened);
        // Registered before the checks below, so an opening in between is
        // not missed.
        opened.as_mut().enable();
        tokio::time::sleep(SUSPECT_AFTER).await;
        if self.open.load(Ordering::Acquire) {
            return;
        }
        if let Some(_turn) = ProbeTurn::take(&self.probing) {
            let down = !matches!(
                tokio::time::timeout(PING_TIMEOUT, self.store.probe()).await,
                Ok(Ok(()))
            );
            if down {
                self.open();
                return;
            }
        }
        opened.await;
    }

    /// Called with every failed write: opens on an outage. Any other
    /// failure (a pool timeout among them) asks the database itself; while
    /// another verdict is being taken, that one decides.
    pub async fn failed(self: &Arc<Self>, error: &StoreError) {
        if self.open.load(Ordering::Acquire) {
            return;
        }
        if is_outage(error) {
            self.open();
            return;
        }
        let Some(_turn) = ProbeTurn::take(&self.probing) else {
            return;
        };
        if !self.answers().await {
            self.open();
        }
    }

    /// Asked on a connection of its own, never through the pool: with every
    /// pooled connection busy (a reconnect storm's presence and cursor work
    /// on a healthy database) a pooled ping waits in the same queue, and
    /// the breaker took that queue for an outage and stayed open while it
    /// lasted.
    async fn answers(&self) -> bool {
        matches!(
            tokio::time::timeout(PING_TIMEOUT, self.store.probe()).await,
            Ok(Ok(()))
        )
    }

    fn open(self: &Arc<Self>) {
        if self.open.swap(true, Ordering::AcqRel) {
            return;
        }
        self.opened.notify_waiters();
        tracing::warn!("database down: durable writes are refused until it answers again");
        let this = self.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if this.answers().await {
                    this.open.store(false, Ordering::Release);
                    tracing::info!("database answers again: durable writes resume");
                    return;
                }
            }
        });
    }
}

/// The one probe running at a time. Given back when dropped, also when
/// the write it watches finishes first and drops the probe mid-way (a flag
/// reset after the probe's `await` would then stay set, and no write would
/// ever be probed again).
struct ProbeTurn<'a>(&'a AtomicBool);

impl<'a> ProbeTurn<'a> {
    fn take(probing: &'a AtomicBool) -> Option<Self> {
        (!probing.swap(true, Ordering::AcqRel)).then_some(Self(probing))
    }
}

impl Drop for ProbeTurn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Errors that say the database cannot be reached, whatever the statement.
fn is_outage(error: &StoreError) -> bool {
    use sqlx::Error as E;
    match error {
        StoreError::Unavailable(_) => true,
        // Not `PoolTimedOut`: every pooled connection busy is also what a
        // healthy database under load looks like; `Breaker::answers` decides.
        StoreError::Db(E::Io(_) | E::Tls(_) | E::PoolClosed | E::WorkerCrashed) => true,
        // Postgres: connection exceptions (08xxx), the server shutting down
        // or starting (57P01-57P03), too many connections.
        StoreError::Db(E::Database(db)) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_turn_at_a_time_given_back_even_when_dropped_mid_probe() {
        let probing = AtomicBool::new(false);
        let turn = ProbeTurn::take(&probing).expect("free");
        assert!(ProbeTurn::take(&probing).is_none(), "one at a time");
        drop(turn);
        assert!(ProbeTurn::take(&probing).is_some(), "given back");

        // A probe future dropped at its await (the write it watched was
        // answered first) gives the turn back too.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let cut_short = async {
                let _turn = ProbeTurn::take(&probing).expect("free");
                std::future::pending::<()>().await;
            };
            let _ = tokio::time::timeout(Duration::from_millis(10), cut_short).await;
        });
        assert!(
            ProbeTurn::take(&probing).is_some(),
            "given back after a cut-short probe"
        );
    }

    /// A write whose outcome is unknown is never retried (see
    /// `store::outcome`): that rests on the breaker opening on it.
    #[test]
    fn every_failure_with_an_unknown_outcome_is_an_outage() {
        let errors = [
            StoreError::Db(sqlx::Error::Io(std::io::Error::other("reset"))),
            StoreError::Db(sqlx::Error::Tls("closed".into())),
            StoreError::Db(sqlx::Error::WorkerCrashed),
            StoreError::Db(sqlx::Error::Protocol("odd message".into())),
            StoreError::Db(sqlx::Error::PoolTimedOut),
            StoreError::Corrupt("x".into()),
        ];
        for e in &errors {
            assert!(!e.outcome_unknown() || is_outage(e), "{e}");
        }
        assert!(errors[0].outcome_unknown() && errors[2].outcome_unknown());
        assert!(!errors[3].outcome_unknown() && !errors[4].outcome_unknown());
    }
}
