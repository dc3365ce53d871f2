//! The connects' reads ([`super::Store::connect_positions`]) that wait at
//! the same time, answered by one statement of the store's
//! ([`ReadGroup`]).
//!
//! Every connect reads its device's cursors and its rooms' heads before
//! `session`. Each statement is a round trip (on SQLite a hand-off to the
//! connection's worker thread and back; on PostgreSQL a turn of a backend
//! that shares the server's cores), plus one more when sqlx pings the
//! connection as it returns to the pool: in a `perf` profile of the
//! `connect` point on SQLite the worker thread and the thread switches to
//! reach it took 31 % of the server's samples. So the reads that wait are
//! answered together: a read queues its ask, and whichever waiting read
//! gets one of the reader's slots takes every queued ask (up to
//! [`MAX_GROUP`]) and answers them with one statement; reads that arrive
//! meanwhile form the next group. No task of its own: the callers do the
//! work. A group that fails fails each of its reads with the same error, as
//! one read would have; a group whose caller is dropped midway (a connect
//! cancelled) makes its other reads ask again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::{Semaphore, oneshot};

use super::{CursorKey, Positions, StoreError};

/// Most reads one statement answers.
const MAX_GROUP: usize = 256;

enum Step {
    Answered(Result<Result<Positions, StoreError>, oneshot::error::RecvError>),
    Taken,
    Again,
}

/// One connect's read.
pub(super) struct Ask {
    pub(super) key: CursorKey,
    pub(super) rooms: Vec<String>,
    reply: oneshot::Sender<Result<Positions, StoreError>>,
}

/// A store's statement for a group of reads.
#[async_trait]
pub(super) trait ReadGroup: Send + Sync {
    /// Each read's positions, by its index in `group` (absent: nothing
    /// found).
    async fn read_group(&self, group: &[Ask]) -> Result<HashMap<usize, Positions>, StoreError>;
}

pub(super) struct PositionReader<R> {
    reads: R,
    // A std Mutex: never held across an await.
    waiting: Mutex<Vec<Ask>>,
    slots: Semaphore,
}

impl<R: ReadGroup> PositionReader<R> {
    /// `in_flight`: groups read at once (connections the reads may hold).
    pub(super) fn new(reads: R, in_flight: usize) -> Self {
        Self {
            reads,
            waiting: Mutex::new(Vec::new()),
            slots: Semaphore::new(in_flight),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<Ask>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn read(
        &self,
        key: &CursorKey,
        rooms: &[String],
    ) -> Result<Positions, StoreError> {
        loop {
            let (reply, mut answer) = oneshot::channel();
            self.waiting().push(Ask {
                key: key.clone(),
                rooms: rooms.to_vec(),
                reply,
            });
            let answered = loop {
                let step = tokio::select! {
                    got = &mut answer => Step::Answered(got),
                    slot = self.slots.acquire() => match slot {
                        Ok(_slot) => {
                            let group = self.take_group();
                            if group.is_empty() {
                                // Another read took ours: wait for it.
                                Step::Taken
                            } else {
                                answer_group(&self.reads, group).await;
                                Step::Again
                            }
                        }
                        Err(_) => Step::Taken,
                    },
                };
                match step {
                    Step::Answered(got) => break got,
                    Step::Taken => break (&mut answer).await,
                    // Ours may have been past this group's end.
                    Step::Again => continue,
                }
            };
            match answered {
                Ok(result) => return result,
                // The group that held this ask was dropped with its caller.
                Err(_) => continue,
            }
        }
    }

    fn take_group(&self) -> Vec<Ask> {
        let mut waiting = self.waiting();
        let n = waiting.len().min(MAX_GROUP);
        waiting.drain(..n).collect()
    }
}

async fn answer_group<R: ReadGroup>(reads: &R, group: Vec<Ask>) {
    match reads.read_group(&group).await {
        Ok(mut found) => {
            for (i, ask) in group.into_iter().enumerate() {
                let _ = ask.reply.send(Ok(found.remove(&i).unwrap_or_default()));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for ask in group {
                let _ = ask
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

/// Rows of `(ask index, is a cursor, room, offset)` as each read's positions.
pub(super) fn by_ask(
    rows: Vec<(i64, bool, String, i64)>,
) -> Result<HashMap<usize, Positions>, StoreError> {
    let mut by_ask: HashMap<usize, Vec<(bool, String, i64)>> = HashMap::new();
    for (i, is_cursor, room, offset) in rows {
        let i = usize::try_from(i).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        by_ask.entry(i).or_default().push((is_cursor, room, offset));
    }
    Ok(by_ask
        .into_iter()
        .map(|(i, rows)| (i, super::positions(rows)))
        .collect())
}
