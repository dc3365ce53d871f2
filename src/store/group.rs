//! Group commit for store calls: the calls that arrive while one batch is
//! in the database wait, and the next batch carries all of them (up to a
//! bound) in one call of the store's batch method.
//!
//! In a connect storm every connect needs the same few statements; made
//! one by one, each is a wait on the database, a pool connection and a
//! turn of a backend that shares the server's cores. Grouped, thousands of
//! connects share a handful of round trips. A lone call waits for no
//! timer: the task takes whatever is queued the moment it is free, so a
//! quiet server answers after one round trip, as before.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use crate::tasks::Tasks;

struct Ask<I, O> {
    item: I,
    reply: oneshot::Sender<Result<O, StoreError>>,
}

/// A queue of items of one kind and the task that stores them in batches.
pub struct Group<I, O> {
    tx: mpsc::Sender<Ask<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Group<I, O> {
    /// Starts the task: it runs `batch` on up to `max` waiting items at a
    /// time, one batch at a time, until shutdown cancels `tasks`. `batch`
    /// answers each item, in order.
    pub fn start<F, Fut>(tasks: &Tasks, max: usize, mut batch: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Result<O, StoreError>>> + Send,
    {
        let max = max.max(1);
        let (tx, mut rx) = mpsc::channel::<Ask<I, O>>(max * 4);
        tasks.spawn(async move {
            let mut asks = Vec::with_capacity(max);
            while rx.recv_many(&mut asks, max).await > 0 {
                let (items, replies): (Vec<I>, Vec<_>) =
                    asks.drain(..).map(|a| (a.item, a.reply)).unzip();
                let answers = batch(items).await;
                let mut answers = answers.into_iter();
                for reply in replies {
                    let answer = answers.next().unwrap_or_else(|| {
                        Err(StoreError::Unavailable("the batch gave no answer".into()))
                    });
                    let _ = reply.send(answer);
                }
            }
        });
        Self { tx }
    }

    /// Queues `item` for the next batch and waits for its answer; `None`
    /// when the task has stopped (shutdown) before answering: the caller
    /// then stores the item alone.
    pub async fn call(&self, item: I) -> Option<Result<O, StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Ask { item, reply }).await.ok()?;
        answer.await.ok()
    }
}
