//! SQLite: the connects' reads ([`super::Store::connect_positions`]) that
//! wait at the same time, answered by one statement.
//!
//! Every connect reads its device's cursors and its rooms' heads before
//! `session`. On SQLite each statement is a hand-off to the connection's
//! worker thread and back, plus one more when sqlx pings the connection as
//! it returns to the pool: in a `perf` profile of the `connect` point the
//! worker thread and the thread switches to reach it took 31 % of the
//! server's samples. So a reader task takes every read that is waiting (up
//! to [`MAX_GROUP`]) and asks for all of them at once; at most [`IN_FLIGHT`]
//! groups run together (the reader pool's size), and reads that arrive
//! meanwhile form the next group. A group that fails fails each of its
//! reads with the same error, as one read would have.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{CursorKey, Positions, StoreError};

/// Most reads one statement answers.
const MAX_GROUP: usize = 256;
/// Groups running at once: the reader pool's connections.
pub(super) const IN_FLIGHT: usize = 4;

struct Ask {
    key: CursorKey,
    rooms: Vec<String>,
    reply: oneshot::Sender<Result<Positions, StoreError>>,
}

pub(super) struct PositionReader {
    tx: mpsc::Sender<Ask>,
}

impl PositionReader {
    /// Starts the reader task; it ends when the store is dropped.
    pub(super) fn new(pool: SqlitePool) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    pub(super) async fn read(
        &self,
        key: &CursorKey,
        rooms: &[String],
    ) -> Result<Positions, StoreError> {
        let stopped = || StoreError::Unavailable("the connect reader stopped".into());
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            key: key.clone(),
            rooms: rooms.to_vec(),
            reply,
        };
        self.tx.send(ask).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Ask>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A slot first, then the reads: those that arrive while every slot
        // is busy wait in the channel and go out together.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(ask) => group.push(ask),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            answer(&pool, group).await;
            drop(slot);
        });
    }
}

async fn answer(pool: &SqlitePool, group: Vec<Ask>) {
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
