//! A session's ordered job queue and the worker that runs it.
//!
//! socketioxide spawns a task per incoming message, so two requests of one
//! connection could be handled out of order. Every request is instead
//! turned into a job (in arrival order, synchronously, by the transport)
//! and run by one worker per session, one job at a time: a publish sent
//! before another gets the lower offset. The first job is the connection's
//! own setup (`api::open`), so nothing a client sends is handled before it.

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Pipeline;

pub type Job = BoxFuture<'static, ()>;

/// How many requests a session may have waiting; beyond that they are
/// refused with RATE_LIMITED rather than buffered without bound.
pub const QUEUE_CAPACITY: usize = 256;

pub struct Worker {
    rx: mpsc::Receiver<Job>,
    start: oneshot::Receiver<()>,
    closed: CancellationToken,
    pipeline: Pipeline,
}

impl Worker {
    pub(super) fn new(
        rx: mpsc::Receiver<Job>,
        start: oneshot::Receiver<()>,
        closed: CancellationToken,
        pipeline: Pipeline,
    ) -> Self {
        Self {
            rx,
            start,
            closed,
            pipeline,
        }
    }

    /// Runs jobs in order until the session closes. A job already running
    /// when it closes is finished (it may be a durable write), and so are
    /// the durable publishes still in flight: shutdown waits for workers.
    pub async fn run(mut self) {
        self.jobs().await;
        self.pipeline.settle().await;
    }

    async fn jobs(&mut self) {
        tokio::select! {
            started = &mut self.start => if started.is_err() { return },
            _ = self.closed.cancelled() => return,
        }
        loop {
            let job = tokio::select! {
                biased;
                job = self.rx.recv() => job,
                _ = self.closed.cancelled() => None,
            };
            match job {
                Some(job) => job.await,
                None => return,
            }
        }
    }
}
