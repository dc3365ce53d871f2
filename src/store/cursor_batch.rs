//! Group commit for offline-queue cursors: the saves that arrive while one
//! is being written wait and go into the next statement together.
//!
//! Every connect of a new device stores its first cursors before `session`,
//! and every departure stores its last ones. In a reconnect storm those are
//! thousands of one-row statements at once, each a round trip (to
//! PostgreSQL, or to SQLite's worker thread and its WAL) and each a
//! connection checked out of the pool (and pinged by sqlx when it is
//! returned). One writer task per node instead takes every save that is
//! waiting and writes them with [`Store::save_cursor_batch`], one
//! statement, then answers each caller. A cursor never moves back (the
//! store keeps the larger offset), so two saves of one device and room in
//! a batch keep the further one, as two statements would.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{CursorKey, Store, StoreError};
use crate::tasks::Tasks;

/// A write that takes longer is given up (the callers treat the cursor as
/// not saved: the next save retries, the client may get duplicates).
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most cursor rows one statement carries.
const MAX_BATCH_ROWS: usize = 1024;

struct Request {
    key: CursorKey,
    cursors: Vec<(String, i64)>,
    now: i64,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Clone)]
pub struct CursorWriter {
    tx: mpsc::Sender<Request>,
    store: Arc<dyn Store>,
}

impl CursorWriter {
    /// Starts the writer task. It runs until shutdown cancels `tasks`;
    /// saves asked for after that are written one by one.
    pub fn new(store: Arc<dyn Store>, tasks: &Tasks) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tasks.spawn(run(store.clone(), rx));
        Self { tx, store }
    }

    /// Stores `cursors` for `key` as [`Store::save_cursors`] does, in the
    /// next batched statement.
    pub async fn save(
        &self,
        key: &CursorKey,
        cursors: &[(String, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        if cursors.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            key: key.clone(),
            cursors: cursors.to_vec(),
            now,
            reply,
        };
        if self.tx.send(request).await.is_ok() {
            if let Ok(written) = answer.await {
                return written;
            }
        }
        // The writer stopped (shutdown cancels it while departures that
        // began just before are still saving): write this one directly, so
        // the device does not get its last events again. Writing a batch
        // the writer may have finished is harmless: the offset only grows.
        match tokio::time::timeout(SAVE_TIMEOUT, self.store.save_cursors(key, cursors, now)).await {
            Ok(written) => written,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {SAVE_TIMEOUT:?}"
            ))),
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut rows = first.cursors.len();
        let mut requests = vec![first];
        while rows < MAX_BATCH_ROWS {
            match rx.try_recv() {
                Ok(req) => {
                    rows += req.cursors.len();
                    requests.push(req);
                }
                Err(_) => break,
            }
        }
        let (rows, now) = merge(&requests);
        let written = tokio::time::timeout(SAVE_TIMEOUT, store.save_cursor_batch(&rows, now)).await;
        let result = match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {SAVE_TIMEOUT:?}")),
        };
        for req in requests {
            let _ = req
                .reply
                .send(result.clone().map_err(StoreError::Unavailable));
        }
    }
}

/// The batch's rows ([`super::furthest_cursors`]), stamped with the latest
/// time asked for.
fn merge(requests: &[Request]) -> (Vec<(CursorKey, String, i64)>, i64) {
    let now = requests.iter().map(|r| r.now).max().unwrap_or(i64::MIN);
    let rows = requests.iter().flat_map(|r| {
        r.cursors
            .iter()
            .map(|(room, offset)| (r.key.clone(), room.clone(), *offset))
    });
    (super::furthest_cursors(rows), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> CursorKey {
        CursorKey {
            company_id: "c1".into(),
            user_id: user.into(),
            device_id: String::new(),
        }
    }

    fn request(user: &str, cursors: &[(&str, i64)], now: i64) -> Request {
        Request {
            key: key(user),
            cursors: cursors.iter().map(|(r, o)| (r.to_string(), *o)).collect(),
            now,
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn one_row_per_device_and_room_at_the_furthest_offset() {
        let requests = [
            request("u1", &[("company", 5), ("user:u1", 2)], 10),
            request("u2", &[("company", 1)], 30),
            request("u1", &[("company", 3), ("user:u1", 7)], 20),
            request("u1", &[("company", 9)], 15),
        ];
        let (rows, now) = merge(&requests);
        assert_eq!(now, 30);
        assert_eq!(
            rows,
            vec![
                (key("u1"), "company".to_string(), 9),
                (key("u1"), "user:u1".to_string(), 7),
                (key("u2"), "company".to_string(), 1),
            ]
        );
    }
}
