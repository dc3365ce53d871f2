//! SQLite: the connects' reads ([`super::Store::connect_positions`]) that
//! wait at the same time, answered by one statement.
//!
//! Every connect reads its device's cursors and its rooms' heads before
//! `session`. On SQLite each statement is a hand-off to the connection's
//! worker thread and back, plus one more when sqlx pings the connection as
//! it returns to the pool: in a `perf` profile of the `connect` point the
//! worker thread and the thread switches to reach it took 31 % of the
//! server's samples. So the reads that wait are answered together: a read
//! queues its ask, and whichever waiting read gets one of [`IN_FLIGHT`]
//! slots (the reader pool's size) takes every queued ask (up to
//! [`MAX_GROUP`]) and answers them with one statement; reads that arrive
//! meanwhile form the next group. No task of its own: the callers do the
//! work. A group that fails fails each of its reads with the same error, as
//! one read would have; a group whose caller is dropped midway (a connect
//! cancelled) makes its other reads ask again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::json;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{Semaphore, oneshot};

use super::{CursorKey, Positions, StoreError};

/// Most reads one statement answers.
const MAX_GROUP: usize = 256;
/// Groups running at once: the reader pool's connections.
pub(super) const IN_FLIGHT: usize = 4;

enum Step {
    Answered(Result<Result<Positions, StoreError>, oneshot::error::RecvError>),
    Taken,
    Again,
}

struct Ask {
    key: CursorKey,
    rooms: Vec<String>,
    reply: oneshot::Sender<Result<Positions, StoreError>>,
}

pub(super) struct PositionReader {
    pool: SqlitePool,
    // A std Mutex: never held across an await.
    waiting: Mutex<Vec<Ask>>,
    slots: Semaphore,
}

impl PositionReader {
    pub(super) fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            waiting: Mutex::new(Vec::new()),
            slots: Semaphore::new(IN_FLIGHT),
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
                                answer_group(&self.pool, group).await;
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

async fn answer_group(pool: &SqlitePool, group: Vec<Ask>) {
    match read_group(pool, &group).await {
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

/// Each read's positions, by its index in `group` (absent: nothing found).
/// `CROSS JOIN` fixes SQLite's join order: left to right, each room looked
/// up by its key (a plain join planned a scan of the company's every room
/// per read, `EXPLAIN QUERY PLAN`).
async fn read_group(
    pool: &SqlitePool,
    group: &[Ask],
) -> Result<HashMap<usize, Positions>, StoreError> {
    let asks: Vec<serde_json::Value> = group
        .iter()
        .map(|a| json!([a.key.company_id, a.key.user_id, a.key.device_id, a.rooms]))
        .collect();
    let asks = serde_json::to_string(&asks).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let rows: Vec<(i64, bool, String, i64)> = sqlx::query_as(
        "WITH ask AS (
             SELECT key AS i, value ->> 0 AS c, value ->> 1 AS u, value ->> 2 AS d,
                    value -> 3 AS rooms
             FROM json_each(?1)
         )
         SELECT ask.i, 1, cu.room, cu.last_offset
         FROM ask CROSS JOIN cursors cu
           ON cu.company_id = ask.c AND cu.user_id = ask.u AND cu.device_id = ask.d
         UNION ALL
         SELECT ask.i, 0, ro.room, ro.last_offset
         FROM ask CROSS JOIN json_each(ask.rooms) AS r
         CROSS JOIN room_offsets ro ON ro.company_id = ask.c AND ro.room = r.value",
    )
    .bind(asks)
    .fetch_all(pool)
    .await?;
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
