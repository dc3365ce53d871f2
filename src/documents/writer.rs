//! Runs document turns, many documents per transaction.
//!
//! Every turn costs a transaction and a commit, whatever it writes: with one
//! turn per document, 1,000 writers on 1,000 documents did about 2,800
//! updates/s, each turn five round trips to PostgreSQL. So documents whose
//! updates are due are handed here, and each batch takes the next group of
//! up to [`MAX_DOCS`] of them under one lock and one commit (see
//! `update::Documents::batch`). A few batches run at once so that one slow
//! commit does not hold every document; while they all run, due documents
//! gather for the next one. One document is never in two batches: it stays
//! "running" in `hot` until its queue is drained.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Documents;
use crate::store::documents::DocKey;

/// Most documents one batch takes.
pub const MAX_DOCS: usize = 64;

/// Batches running at once (each holds one database connection).
pub const PARALLEL: usize = 1;

/// The hand-off of due documents to the batch loop.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<DocKey>,
}

/// The receiving end, until [`run`] takes it.
pub struct Inbox(mpsc::UnboundedReceiver<DocKey>);

impl Writer {
    pub fn new() -> (Self, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, Inbox(rx))
    }

    /// Queues a document for a batch; gives it back when the loop has
    /// stopped.
    pub fn due(&self, key: DocKey) -> Result<(), DocKey> {
        self.tx.send(key).map_err(|e| e.0)
    }
}

/// The batch loop: until `stop`, then what is already queued, then it ends
/// (later hand-offs are refused, see [`Writer::due`]).
pub async fn run(docs: Documents, Inbox(mut rx): Inbox, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(PARALLEL));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let first = tokio::select! {
            key = rx.recv() => key,
            () = stop.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else {
            return;
        };
        let mut keys = vec![first];
        while keys.len() < MAX_DOCS {
            match rx.try_recv() {
                Ok(key) => keys.push(key),
                Err(_) => break,
            }
        }
        let this = docs.clone();
        docs.tasks.spawn_until_done(async move {
            this.batch(keys).await;
            drop(permit);
        });
    }
}
