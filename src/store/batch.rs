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
//!
//! The database being down is another matter: a circuit breaker
//! ([`super::breaker`]) opens on the first failure that is an outage (or a
//! failure after which the database does not take a connection of the
//! breaker's own), every waiting
//! and new request is then refused at once with
//! [`StoreError::Unavailable`], and a background probe closes it when the
//! database answers again. The writer never waits out connection timeouts
//! request by request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::breaker::Breaker;
use super::{Appended, NewEvent, Store, StoreError};
use crate::tasks::Tasks;

/// A transaction that takes longer than this is given up (and the
/// database treated as down): the writer must not hang on a dead link.
const APPEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Most events one transaction carries.
const MAX_BATCH_EVENTS: usize = 512;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<(Vec<NewEvent>, Reply)>,
    breaker: Arc<Breaker>,
}

impl Appender {
    /// Starts the writer task. It runs until shutdown cancels `tasks`,
    /// which happens after every session and HTTP request has finished,
    /// so no append is in flight then.
    pub fn new(store: Arc<dyn Store>, tasks: &Tasks) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let breaker = Breaker::new(store.clone(), tasks.clone());
        tasks.spawn(run(store, breaker.clone(), rx));
        Self { tx, breaker }
    }

    /// Appends one request's events atomically (as [`Store::append`]).
    pub async fn append(&self, batch: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
        self.submit(batch).await?.await
    }

    /// [`Self::append`] in two steps: queues the request behind every one
    /// queued before it (their offsets come first) and returns the wait for
    /// its result, so a caller may queue its next request before this one
    /// commits.
    pub async fn submit(
        &self,
        batch: Vec<NewEvent>,
    ) -> Result<impl Future<Output = Result<Vec<Appended>, StoreError>> + Send + 'static, StoreError>
    {
        self.breaker.check()?;
        let (reply, answer) = oneshot::channel();
        if self.tx.send((batch, reply)).await.is_err() {
            return Err(StoreError::Corrupt("the log writer stopped".into()));
        }
        Ok(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(StoreError::Corrupt("the log writer stopped".into())))
        })
    }
}

async fn run(
    store: Arc<dyn Store>,
    breaker: Arc<Breaker>,
    mut rx: mpsc::Receiver<(Vec<NewEvent>, Reply)>,
) {
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
        if let Err(e) = breaker.check() {
            refuse(requests, &e);
            continue;
        }
        let sizes: Vec<usize> = requests.iter().map(|(b, _)| b.len()).collect();
        let all: Vec<NewEvent> = requests
            .iter()
            .flat_map(|(b, _)| b.iter().cloned())
            .collect();
        match append(&store, &breaker, all).await {
            Ok(results) => {
                let mut results = results.into_iter();
                for ((_, reply), n) in requests.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(results.by_ref().take(n).collect()));
                }
            }
            Err(e) if requests.len() == 1 => {
                if let Some((_, reply)) = requests.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) if breaker.check().is_err() => refuse(requests, &e),
            Err(_) => {
                for (batch, reply) in requests {
                    let result = match breaker.check() {
                        Ok(()) => append(&store, &breaker, batch).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// One transaction, bounded in time; an outage opens the breaker.
async fn append(
    store: &Arc<dyn Store>,
    breaker: &Arc<Breaker>,
    batch: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError> {
    breaker.run(APPEND_TIMEOUT, store.append(batch)).await
}

fn refuse(requests: Vec<(Vec<NewEvent>, Reply)>, cause: &StoreError) {
    for (_, reply) in requests {
        let _ = reply.send(Err(StoreError::Unavailable(cause.to_string())));
    }
}
