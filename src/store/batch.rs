//! Group commit for the durable log: appends that arrive while a
//! transaction is committing wait and go into the next one together.
//!
//! One transaction per event caps a room at one commit (one disk flush)
//! per event, with the room's counter row locked through the flush. Here a
//! single writer task per node takes every request that is waiting, appends
//! them in one transaction, and answers each with its own results. Offsets
//! stay gapless and in commit order (one transaction assigns them in request
//! order); a failing batch is retried request by request, so one bad
//! request cannot fail the others.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Appended, NewEvent, Store, StoreError};

/// Most events one transaction carries.
const MAX_BATCH_EVENTS: usize = 512;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<(Vec<NewEvent>, Reply)>,
}

impl Appender {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Appends one request's events atomically (as [`Store::append`]).
    pub async fn append(&self, batch: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((batch, reply)).await.is_err() {
            return Err(StoreError::Corrupt("the log writer stopped".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the log writer stopped".into())))
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(Vec<NewEvent>, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut requests = vec![first];
        let mut events = requests[0].0.len();
        while events < MAX_BATCH_EVENTS {
            match rx.try_recv() {
                Ok(req) => {
                    events += req.0.len();
                    requests.push(req);
                }
                Err(_) => break,
            }
        }
        if requests.len() == 1 {
            let Some((batch, reply)) = requests.pop() else {
                continue;
            };
            let _ = reply.send(store.append(batch).await);
            continue;
        }
        let sizes: Vec<usize> = requests.iter().map(|(b, _)| b.len()).collect();
        let all: Vec<NewEvent> = requests
            .iter()
            .flat_map(|(b, _)| b.iter().cloned())
            .collect();
        match store.append(all).await {
            Ok(results) => {
                let mut results = results.into_iter();
                for ((_, reply), n) in requests.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(results.by_ref().take(n).collect()));
                }
            }
            Err(_) => {
                for (batch, reply) in requests {
                    let _ = reply.send(store.append(batch).await);
                }
            }
        }
    }
}
