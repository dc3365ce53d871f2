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
//! statement ([`super::group`]), then answers each caller. A cursor never moves back (the
//! store keeps the larger offset), so two saves of one device and room in
//! a batch keep the further one, as two statements would.

use std::sync::Arc;
use std::time::Duration;

use super::group::Group;
use super::{CursorKey, Store, StoreError};
use crate::tasks::Tasks;

/// A write that takes longer is given up (the callers treat the cursor as
/// not saved: the next save retries, the client may get duplicates).
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most saves one statement carries (a connect's or departure's save is a
/// few rows: one per room).
const MAX_BATCH: usize = 512;

/// One caller's save: a device's cursors, asked for at a time.
struct Save {
    key: CursorKey,
    cursors: Vec<(String, i64)>,
    now: i64,
}

#[derive(Clone)]
pub struct CursorWriter {
    saves: Arc<Group<Save, ()>>,
    store: Arc<dyn Store>,
}

impl CursorWriter {
    /// Starts the writer task. It runs until shutdown cancels `tasks`;
    /// saves asked for after that are written one by one.
    pub fn new(store: Arc<dyn Store>, tasks: &Tasks) -> Self {
        let saves = {
            let store = store.clone();
            Group::start(tasks, MAX_BATCH, SAVE_TIMEOUT, move |saves: Vec<Save>| {
                let store = store.clone();
                async move {
                    let (rows, now) = merge(&saves);
                    let written = store.save_cursor_batch(&rows, now).await;
                    let failed = written.err().map(|e| e.to_string());
                    saves
                        .iter()
                        .map(|_| match &failed {
                            None => Ok(()),
                            Some(why) => Err(StoreError::Unavailable(why.clone())),
                        })
                        .collect()
                }
            })
        };
        Self {
            saves: Arc::new(saves),
            store,
        }
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
        let save = Save {
            key: key.clone(),
            cursors: cursors.to_vec(),
            now,
        };
        if let Some(written) = self.saves.call(save).await {
            return written;
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

/// The batch's rows ([`super::furthest_cursors`]), stamped with the latest
/// time asked for.
fn merge(saves: &[Save]) -> (Vec<(CursorKey, String, i64)>, i64) {
    let now = saves.iter().map(|r| r.now).max().unwrap_or(i64::MIN);
    let rows = saves.iter().flat_map(|r| {
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

    fn request(user: &str, cursors: &[(&str, i64)], now: i64) -> Save {
        Save {
            key: key(user),
            cursors: cursors.iter().map(|(r, o)| (r.to_string(), *o)).collect(),
            now,
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
