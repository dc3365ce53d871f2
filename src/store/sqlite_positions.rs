//! SQLite: the statement that answers a group of connects' reads
//! ([`super::positions`]).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use sqlx::sqlite::SqlitePool;

use super::positions::{Ask, ReadGroup, by_ask};
use super::{Positions, StoreError};

/// Groups read at once: the reader pool's connections.
pub(super) const IN_FLIGHT: usize = 4;

pub(super) struct SqliteReads(pub(super) SqlitePool);

#[async_trait]
impl ReadGroup for SqliteReads {
    /// `CROSS JOIN` fixes SQLite's join order: left to right, each room
    /// looked up by its key (a plain join planned a scan of the company's
    /// every room per read, `EXPLAIN QUERY PLAN`).
    async fn read_group(&self, group: &[Ask]) -> Result<HashMap<usize, Positions>, StoreError> {
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
        .fetch_all(&self.0)
        .await?;
        by_ask(rows)
    }
}
