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
//!
//! One batch at a time means a batch that hangs (a row lock another
//! transaction holds, a connection to a database that stopped answering)
//! would hold up every later call. So a batch gets a time limit: past it,
//! its calls are answered UNAVAILABLE ("not known to be stored": the
//! batch is dropped, its transaction rolled back if it had not committed)
//! and the next batch starts on another connection. Callers must treat
//! such an answer as a write that may or may not have happened.

use std::future::Future;
use std::time::Duration;

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
    /// time, one batch at a time, each given up after `limit`, until
    /// shutdown cancels `tasks`. `batch` answers each item, in order.
    pub fn start<F, Fut>(tasks: &Tasks, max: usize, limit: Duration, mut batch: F) -> Self
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
                let answers = tokio::time::timeout(limit, batch(items))
                    .await
                    .unwrap_or_default();
                let mut answers = answers.into_iter();
                for reply in replies {
                    let answer = answers.next().unwrap_or_else(|| {
                        Err(StoreError::Unavailable(format!(
                            "the batch gave no answer within {limit:?}"
                        )))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A group whose first batch never ends (a row lock nobody releases).
    fn stuck_first(tasks: &Tasks, batches: Arc<AtomicUsize>) -> Group<u32, u32> {
        Group::start(tasks, 8, Duration::from_secs(5), move |items: Vec<u32>| {
            let first = batches.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                items.into_iter().map(|i| Ok(i * 10)).collect()
            }
        })
    }

    // No spawned tasks here (`tests/shutdown.rs` allows none outside
    // `Tasks`): the calls run side by side in one `join!`.

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_hangs_is_given_up_and_the_next_one_runs() {
        let tasks = Tasks::new();
        let batches = Arc::new(AtomicUsize::new(0));
        let group = stuck_first(&tasks, batches.clone());
        let started = tokio::time::Instant::now();
        let (given_up, next) = tokio::join!(group.call(1), async {
            // The first call's batch starts before this one is queued.
            tokio::task::yield_now().await;
            let next = tokio::time::timeout(Duration::from_secs(60), group.call(2)).await;
            (next, started.elapsed())
        });
        let (next, after) = next;
        assert!(
            matches!(next, Ok(Some(Ok(20)))),
            "the next batch runs: {next:?}"
        );
        assert_eq!(after, Duration::from_secs(5));
        assert!(
            matches!(given_up, Some(Err(StoreError::Unavailable(_)))),
            "{given_up:?}"
        );
        assert_eq!(batches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn calls_that_wait_together_share_a_batch_and_get_their_own_answers() {
        let tasks = Tasks::new();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let group = Group::start(&tasks, 4, Duration::from_secs(5), {
            let sizes = sizes.clone();
            move |items: Vec<u32>| {
                sizes.lock().unwrap().push(items.len());
                async move { items.into_iter().map(|i| Ok(i + 100)).collect() }
            }
        });
        let calls = (0..10).map(|i| {
            let group = &group;
            async move { (i, group.call(i).await) }
        });
        for (i, answer) in futures::future::join_all(calls).await {
            assert!(
                matches!(answer, Some(Ok(a)) if a == i + 100),
                "{i}: {answer:?}"
            );
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
    }

    #[tokio::test]
    async fn at_shutdown_waiting_and_later_calls_are_given_back() {
        let tasks = Tasks::new();
        let group = stuck_first(&tasks, Arc::new(AtomicUsize::new(0)));
        let (waiting, stopped) = tokio::join!(group.call(1), async {
            tokio::task::yield_now().await;
            tasks.shutdown(Duration::from_secs(1)).await
        });
        assert!(stopped);
        assert!(waiting.is_none());
        assert!(group.call(2).await.is_none());
    }
}
