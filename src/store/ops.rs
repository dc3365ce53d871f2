//! What operators measure about storage ([`OpsStore`]): connection-pool use
//! and the offline-queue backlog, for the gauges of `crate::gauges`.
//! Both are cheap: pool figures are atomics inside sqlx; the backlog is one
//! aggregate over the cursor table, run every few seconds, never per request.

use async_trait::async_trait;
use sqlx::Row;

use super::{PgStore, SqliteStore, StoreError};

/// One connection pool's use at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// `main` (Postgres), `writer` / `reader` (SQLite): a bounded label.
    pub pool: &'static str,
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolUse {
    fn of<DB: sqlx::Database>(pool: &'static str, p: &sqlx::Pool<DB>) -> Self {
        let size = p.size();
        let idle = u32::try_from(p.num_idle()).unwrap_or(u32::MAX).min(size);
        Self {
            pool,
            in_use: size - idle,
            idle,
            max: p.options().get_max_connections(),
        }
    }
}

#[async_trait]
pub trait OpsStore {
    /// Every pool of this backend, in a fixed order.
    fn pool_use(&self) -> Vec<PoolUse>;

    /// The offline-queue backlog: over the cursors of devices seen since
    /// `seen_since` (ms), how many offsets each room's log has beyond the
    /// device's cursor, summed. An upper bound on durable events waiting
    /// for those devices (expired events still count until the device's
    /// cursor passes them).
    async fn offline_backlog(&self, seen_since: i64) -> Result<i64, StoreError>;
}

/// Shared by both backends (placeholders `$1` are understood by both). A
/// device's own user room has no row until its cursor first moves (none
/// means 0, see `replay::offline`): the second part counts it from 0.
const BACKLOG: &str = "SELECT CAST(COALESCE(SUM(r.last_offset - c.last_offset), 0) AS BIGINT) AS n
     FROM (
         SELECT company_id, room, last_offset, updated_at FROM cursors
         UNION ALL
         SELECT company_id, 'user:' || user_id, 0, MAX(updated_at) FROM cursors
         GROUP BY company_id, user_id, device_id
         HAVING SUM(CASE WHEN room = 'user:' || user_id THEN 1 ELSE 0 END) = 0
     ) c
     JOIN room_offsets r ON r.company_id = c.company_id AND r.room = c.room
     WHERE c.updated_at > $1 AND r.last_offset > c.last_offset";

#[async_trait]
impl OpsStore for PgStore {
    fn pool_use(&self) -> Vec<PoolUse> {
        vec![PoolUse::of("main", &self.pool)]
    }

    async fn offline_backlog(&self, seen_since: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(BACKLOG)
            .bind(seen_since)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

#[async_trait]
impl OpsStore for SqliteStore {
    fn pool_use(&self) -> Vec<PoolUse> {
        vec![
            PoolUse::of("writer", &self.writer),
            PoolUse::of("reader", &self.reader),
        ]
    }

    async fn offline_backlog(&self, seen_since: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(BACKLOG)
            .bind(seen_since)
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get("n")?)
    }
}
