//! A circuit breaker for durable writes (the log's appends, and document
//! turns through [`Breaker::run`]): while the database is known to be down,
//! writes are refused at once instead of each waiting out the pool's
//! connection timeout (3 s, retried while connections are refused).
//!
//! Closed: writes run. A failed write that is an outage (connection
//! refused or reset, pool timeout, the server shutting down), or any
//! failure after which the database does not answer a ping within
//! [`PING_TIMEOUT`], opens it. Open: [`Breaker::check`] refuses; one probe
//! task pings every [`PROBE_EVERY`] and closes the breaker on the first
//! answer (the half-open check: nothing else reaches the database before).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Store, StoreError};
use crate::tasks::Tasks;

const PING_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_EVERY: Duration = Duration::from_millis(250);

pub struct Breaker {
    store: Arc<dyn Store>,
    open: AtomicBool,
    /// The probe task's owner.
    tasks: Tasks,
}

impl Breaker {
    pub fn new(store: Arc<dyn Store>, tasks: Tasks) -> Arc<Self> {
        Arc::new(Self {
            store,
            open: AtomicBool::new(false),
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
    /// [`Self::failed`]. Dropping `op` on the timeout rolls its transaction back.
    pub async fn run<T>(
        self: &Arc<Self>,
        limit: Duration,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.check()?;
        let result = match tokio::time::timeout(limit, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(
                "the database did not answer in time".into(),
            )),
        };
        if let Err(e) = &result {
            self.failed(e).await;
        }
        result
    }

    /// Called with every failed write: opens on an outage.
    pub async fn failed(self: &Arc<Self>, error: &StoreError) {
        if self.open.load(Ordering::Acquire) {
            return;
        }
        if is_outage(error) || !self.answers().await {
            self.open();
        }
    }

    async fn answers(&self) -> bool {
        matches!(
            tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        )
    }

    fn open(self: &Arc<Self>) {
        if self.open.swap(true, Ordering::AcqRel) {
            return;
        }
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

/// Errors that say the database cannot be reached, whatever the statement.
fn is_outage(error: &StoreError) -> bool {
    use sqlx::Error as E;
    match error {
        StoreError::Unavailable(_) => true,
        StoreError::Db(
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed,
        ) => true,
        // Postgres: connection exceptions (08xxx), the server shutting down
        // or starting (57P01-57P03), too many connections.
        StoreError::Db(E::Database(db)) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}
