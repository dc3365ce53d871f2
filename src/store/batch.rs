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
//! A request may carry an [`OnCommit`]: it runs once the request's events
//! are committed, in commit order, before the request is answered. The
//! publisher hands committed events to the live feeds there. Handed over by
//! each publish's own task after its answer, they reached the feeds in
//! whatever order the runtime ran those tasks (its LIFO slot runs the last
//! one woken first), and a member that sees an offset before the one it
//! waits for takes it for a gap and reads the log. The answers and their
//! `OnCommit`s run on a second task, so the writer starts the next
//! transaction while the last one's events are delivered.
//!
//! The database being down is another matter: a circuit breaker
//! ([`super::breaker`]) opens on the first failure that is an outage (or a
//! failure after which the database does not take a connection of the
//! breaker's own), every waiting
//! and new request is then refused at once with
//! [`StoreError::Unavailable`], and a background probe closes it when the
//! database answers again. The writer never waits out connection timeouts
//! request by request.
//!
//! Giving up on a transaction does not stop it: the database may still
//! commit it, after its callers were told "not known to be stored". So the
//! transaction runs on a task of its own, and if it commits late its
//! requests' [`OnCommit`]s still run, and their events reach the live feeds.
//! A transaction whose connection ended mid-way (a restart, a terminated
//! backend) may have committed too: its callers are told the same, and
//! once the database answers again the log says whether its events are
//! there ([`super::outcome`]). Such a failure is never retried request by
//! request: the events may be stored, and the retry would fail on their ids.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::breaker::{Breaker, Unfinished};
use super::outcome;
use super::{Appended, NewEvent, Store, StoreError};
use crate::tasks::Tasks;

/// A transaction that takes longer than this is given up (and the
/// database treated as down): the writer must not hang on a dead link.
const APPEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Most events one transaction carries.
const MAX_BATCH_EVENTS: usize = 512;

/// Committed batches waiting for their answers; beyond this the writer
/// waits (deliveries slower than commits slow the commits down).
const ANSWERS_WAITING: usize = 16;

/// Runs with a request's results once they are committed, in commit order
/// across all requests, before the request is answered. Must not wait.
pub type OnCommit = Box<dyn FnOnce(&[Appended]) + Send>;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

struct Request {
    events: Vec<NewEvent>,
    on_commit: Option<OnCommit>,
    reply: Reply,
}

impl Request {
    fn answer(self, result: Result<Vec<Appended>, StoreError>) {
        if let (Ok(appended), Some(on_commit)) = (&result, self.on_commit) {
            // A panic here would end the answering task, and with it every
            // later append of the node, and leave these committed events
            // unanswered (a client retrying them would store them twice).
            // Events a panicking hand-over did not deliver are read from
            // the log by the members that see the gap.
            let handed = std::panic::catch_unwind(AssertUnwindSafe(|| on_commit(appended)));
            if handed.is_err() {
                tracing::error!(
                    events = appended.len(),
                    "handing committed events to the live feeds panicked; members will read them from the log"
                );
            }
        }
        let _ = self.reply.send(result);
    }
}

/// What the writer hands the answering task: one transaction's requests
/// with their results, in the order they were committed.
type Answers = Vec<(Request, Result<Vec<Appended>, StoreError>)>;

#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Request>,
    breaker: Arc<Breaker>,
}

impl Appender {
    /// Starts the writer task. It runs until shutdown cancels `tasks`,
    /// which happens after every session and HTTP request has finished,
    /// so no append is in flight then.
    pub fn new(store: Arc<dyn Store>, tasks: &Tasks) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let (answers_tx, answers) = mpsc::channel(ANSWERS_WAITING);
        let breaker = Breaker::new(store.clone(), tasks.clone());
        let writer = Writer {
            store,
            breaker: breaker.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(run(writer, rx, answers_tx));
        tasks.spawn(answer(answers));
        Self { tx, breaker }
    }

    /// Appends one request's events atomically (as [`Store::append`]).
    pub async fn append(&self, batch: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
        self.submit(batch, None).await?.await
    }

    /// [`Self::append`] in two steps: queues the request behind every one
    /// queued before it (their offsets come first) and returns the wait for
    /// its result, so a caller may queue its next request before this one
    /// commits. `on_commit` runs with the results before they are returned.
    pub async fn submit(
        &self,
        events: Vec<NewEvent>,
        on_commit: Option<OnCommit>,
    ) -> Result<impl Future<Output = Result<Vec<Appended>, StoreError>> + Send + 'static, StoreError>
    {
        self.breaker.check()?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            events,
            on_commit,
            reply,
        };
        if self.tx.send(request).await.is_err() {
            return Err(StoreError::Corrupt("the log writer stopped".into()));
        }
        Ok(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(StoreError::Corrupt("the log writer stopped".into())))
        })
    }
}

/// What the writer writes with.
struct Writer {
    store: Arc<dyn Store>,
    breaker: Arc<Breaker>,
    tasks: Tasks,
}

async fn run(writer: Writer, mut rx: mpsc::Receiver<Request>, answers: mpsc::Sender<Answers>) {
    while let Some(first) = rx.recv().await {
        let mut requests = vec![first];
        let mut events = requests[0].events.len();
        while events < MAX_BATCH_EVENTS {
            match rx.try_recv() {
                Ok(req) => {
                    events += req.events.len();
                    requests.push(req);
                }
                Err(_) => break,
            }
        }
        let answered = write(&writer, requests).await;
        // Closed only when the answering task was cancelled at shutdown,
        // when no request waits any more.
        if answers.send(answered).await.is_err() {
            return;
        }
    }
}

/// Writes one group of requests in one transaction, or request by request
/// if that fails for a reason other than an outage.
async fn write(ctx: &Writer, requests: Vec<Request>) -> Answers {
    let breaker = &ctx.breaker;
    if let Err(e) = breaker.check() {
        return refuse(requests, &e);
    }
    let sizes: Vec<usize> = requests.iter().map(|r| r.events.len()).collect();
    let all: Vec<NewEvent> = requests
        .iter()
        .flat_map(|r| r.events.iter().cloned())
        .collect();
    match append(ctx, all).await {
        Ok(results) => {
            let mut results = results.into_iter();
            requests
                .into_iter()
                .zip(sizes)
                .map(|(request, n)| (request, Ok(results.by_ref().take(n).collect())))
                .collect()
        }
        Err(unfinished @ Unfinished::GivenUp(..)) => unknown(ctx, unfinished, requests),
        Err(Unfinished::Failed(e)) if e.outcome_unknown() => {
            unknown(ctx, Unfinished::Failed(e), requests)
        }
        Err(Unfinished::Failed(e)) if requests.len() == 1 => {
            requests.into_iter().zip([Err(e)]).collect()
        }
        Err(Unfinished::Failed(e)) if breaker.check().is_err() => refuse(requests, &e),
        Err(Unfinished::Failed(_)) => {
            let mut answered = Vec::with_capacity(requests.len());
            for request in requests {
                if let Err(e) = breaker.check() {
                    answered.push((request, Err(e)));
                    continue;
                }
                match append(ctx, request.events.clone()).await {
                    Ok(results) => answered.push((request, Ok(results))),
                    Err(Unfinished::Failed(e)) if !e.outcome_unknown() => {
                        answered.push((request, Err(e)))
                    }
                    Err(unfinished) => answered.extend(unknown(ctx, unfinished, vec![request])),
                }
            }
            answered
        }
    }
}

/// Answers requests whose transaction has no known outcome (given up on,
/// or its connection ended mid-way) with "not known to be stored", and
/// hands their events to their [`OnCommit`]s if it committed after all
/// ([`outcome`]). Later transactions of the same rooms wait for this one's
/// row locks, so it commits first; its hand-over may still come after
/// theirs, and members take the offsets they already passed for duplicates.
fn unknown(
    ctx: &Writer,
    unfinished: Unfinished<Vec<Appended>>,
    mut requests: Vec<Request>,
) -> Answers {
    let (answer, late): (StoreError, outcome::Late) = match unfinished {
        Unfinished::GivenUp(e, late) => (
            e.not_known(),
            Box::pin(async move {
                late.await.unwrap_or_else(|_| {
                    Err(StoreError::Corrupt(
                        "the append ended without an answer".into(),
                    ))
                })
            }),
        ),
        Unfinished::Failed(e) => (e.not_known(), Box::pin(std::future::ready(Err(e)))),
    };
    let events: Vec<outcome::Placement> = requests
        .iter()
        .flat_map(|r| outcome::placements(&r.events))
        .collect();
    let hand_overs: Vec<(usize, Option<OnCommit>)> = requests
        .iter_mut()
        .map(|r| (r.events.len(), r.on_commit.take()))
        .collect();
    let committed = outcome::committed(
        late,
        events,
        ctx.store.clone(),
        ctx.breaker.clone(),
        ctx.tasks.child_token(),
    );
    ctx.tasks.spawn_until_done(async move {
        let Some(appended) = committed.await else {
            return;
        };
        tracing::warn!(
            events = appended.len(),
            "an append whose callers were told \"not known to be stored\" committed after all; handing its events to the live feeds now"
        );
        let mut appended = appended.into_iter();
        for (n, on_commit) in hand_overs {
            let part: Vec<Appended> = appended.by_ref().take(n).collect();
            if let Some(on_commit) = on_commit {
                let handed = std::panic::catch_unwind(AssertUnwindSafe(|| on_commit(&part)));
                if handed.is_err() {
                    tracing::error!("handing late-committed events to the live feeds panicked");
                }
            }
        }
    });
    requests
        .into_iter()
        .map(|r| (r, Err(answer.not_known())))
        .collect()
}

/// Answers each committed group in commit order (see the module's
/// documentation).
async fn answer(mut answers: mpsc::Receiver<Answers>) {
    while let Some(group) = answers.recv().await {
        for (request, result) in group {
            request.answer(result);
        }
    }
}

/// One transaction, bounded in time; an outage opens the breaker. It runs
/// to its end even when the writer stops waiting ([`Breaker::run_to_end`]).
async fn append(
    ctx: &Writer,
    batch: Vec<NewEvent>,
) -> Result<Vec<Appended>, Unfinished<Vec<Appended>>> {
    let store = ctx.store.clone();
    ctx.breaker
        .run_to_end(APPEND_TIMEOUT, async move { store.append(batch).await })
        .await
}

fn refuse(requests: Vec<Request>, cause: &StoreError) -> Answers {
    requests
        .into_iter()
        .map(|r| (r, Err(StoreError::Unavailable(cause.to_string()))))
        .collect()
}
