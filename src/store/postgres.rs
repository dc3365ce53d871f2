//! PostgreSQL implementation of [`Store`].
//!
//! Offsets: the append transaction upserts `room_offsets` (which takes the
//! row lock) before inserting the events; a concurrent writer of the same room
//! blocks on that row until commit or rollback, so offsets are handed out in
//! commit order and a rolled-back transaction leaves no gap. The append itself
//! (a whole batch in a few statements) is in `postgres_append.rs`.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{
    Postgres, Row,
    pool::PoolConnection,
    postgres::{PgPool, PgPoolOptions},
    types::Json,
};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::positions::{Ask, PositionReader, ReadGroup, by_ask};
use super::{Appended, CursorKey, NewEvent, Positions, Store, StoreError, StoredEvent};

pub struct PgStore {
    pub(super) pool: PgPool,
    /// The log writer's connection between group commits (see [`Kept`]).
    append_conn: Kept,
    positions: PositionReader<PgReads>,
}

/// Groups of connects' reads read at once.
const POSITION_READS: usize = 4;

struct PgReads(PgPool);

#[async_trait]
impl ReadGroup for PgReads {
    async fn read_group(&self, group: &[Ask]) -> Result<HashMap<usize, Positions>, StoreError> {
        let mut rooms: (Vec<i64>, Vec<&str>, Vec<&str>) = Default::default();
        for (i, ask) in group.iter().enumerate() {
            for room in &ask.rooms {
                rooms.0.push(i64::try_from(i).unwrap_or(i64::MAX));
                rooms.1.push(&ask.key.company_id);
                rooms.2.push(room);
            }
        }
        let rows: Vec<(i64, bool, String, i64)> = sqlx::query_as(
            "SELECT t.n - 1, true, cu.room, cu.last_offset
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(c, u, d, n)
             CROSS JOIN LATERAL (
                 SELECT room, last_offset FROM cursors
                 WHERE company_id = t.c AND user_id = t.u AND device_id = t.d
                 OFFSET 0
             ) cu
             UNION ALL
             SELECT r.i, false, ro.room, ro.last_offset
             FROM unnest($4::int8[], $5::text[], $6::text[]) AS r(i, c, room)
             CROSS JOIN LATERAL (
                 SELECT room, last_offset FROM room_offsets
                 WHERE company_id = r.c AND room = r.room
                 OFFSET 0
             ) ro",
        )
        // One index lookup per connect, whatever the planner thinks of the
        // tables. As a plain join, a table that grew since it was last
        // analysed (a new database's first connect burst, where autoanalyze
        // is a minute away) was hash-joined against a full scan of
        // `cursors` for each group: 5.4 million rows read in one burst with
        // a cached plan; with a plan per group still 58 of 61 slow reads
        // (bench/README.md, "The connect read is planned per group" and
        // "The connect read looks each connect up"). `OFFSET 0` keeps the
        // planner from flattening the lateral subqueries back into a join.
        .bind(
            group
                .iter()
                .map(|a| a.key.company_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            group
                .iter()
                .map(|a| a.key.user_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            group
                .iter()
                .map(|a| a.key.device_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(&rooms.0)
        .bind(&rooms.1)
        .bind(&rooms.2)
        .fetch_all(&self.0)
        .await?;
        by_ask(rows)
    }
}

/// A connection kept out of the pool between the uses of one serial
/// writer. Handing the log writer's connection back after each group
/// commit made sqlx ping it (a `Sync` round trip to its backend,
/// unconditional in 0.8.6) and the next append run on whichever
/// connection was idle, another backend. Keeping it took durable
/// publishing from 10,830 to 14,646 events/s into one room in A/B runs
/// (bench/README.md, "The log writer keeps its connection"). Users
/// running at once find it taken and use the pool; one whose work fails
/// or is cancelled drops it, so a connection that broke is not used again.
///
/// Out of the pool, a connection escapes the pool's `max_lifetime` and
/// `idle_timeout` (checked when it comes back): so it goes back at least
/// every [`KEEP_AT_MOST`], and when it sat unused for [`KEEP_IDLE`], and the
/// pool decides whether it lives on.
#[derive(Default)]
struct Kept(Mutex<Option<Held>>);

/// The kept connection, since when it is out of the pool, and when it was
/// last kept.
struct Held {
    conn: PoolConnection<Postgres>,
    out_since: Instant,
    kept_at: Instant,
}

/// The longest a connection stays out of the pool: a ping (one round trip)
/// a minute, against sqlx's 30-minute lifetime.
const KEEP_AT_MOST: Duration = Duration::from_secs(60);

/// A kept connection unused this long goes back instead of being reused
/// (durable traffic stopped; the pool's idle rules apply again).
const KEEP_IDLE: Duration = Duration::from_secs(10);

/// Whether a connection out of the pool since `out_since`, last kept at
/// `kept_at`, may serve the next user at `now` (pure, for the tests).
fn reusable(out_since: Instant, kept_at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(out_since) < KEEP_AT_MOST
        && now.saturating_duration_since(kept_at) < KEEP_IDLE
}

impl Kept {
    /// A connection and since when it is out of the pool.
    async fn take(&self, pool: &PgPool) -> Result<(PoolConnection<Postgres>, Instant), StoreError> {
        // A poisoned lock only means a panic elsewhere held it: the slot is
        // an Option either way.
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(held) = kept {
            if reusable(held.out_since, held.kept_at, Instant::now()) {
                return Ok((held.conn, held.out_since));
            }
            // Back to the pool before asking it for one, which applies its
            // own rules to it.
            drop(held);
        }
        Ok((pool.acquire().await?, Instant::now()))
    }

    /// Keeps `conn` for the next user; one kept already goes back to the pool.
    fn keep(&self, conn: PoolConnection<Postgres>, out_since: Instant) {
        let held = Held {
            conn,
            out_since,
            kept_at: Instant::now(),
        };
        let earlier = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(held);
        drop(earlier);
    }
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // No extra round trip per checkout: a broken connection fails
            // its query (UNAVAILABLE, retried by the client) and is dropped.
            .test_before_acquire(false)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect(url)
            .await?;
        Ok(Self {
            positions: PositionReader::new(PgReads(pool.clone()), POSITION_READS),
            pool,
            append_conn: Kept::default(),
        })
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // A rolling upgrade runs older nodes against a schema a newer node
        // already migrated: migrations are additive, so unknown newer ones
        // are not an error.
        let mut migrator = sqlx::migrate!("migrations/postgres");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn probe(&self) -> Result<(), StoreError> {
        use sqlx::Connection;
        let options = self.pool.connect_options();
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        conn.ping().await?;
        // The answer is in; a failed goodbye changes nothing.
        let _ = conn.close().await;
        Ok(())
    }

    async fn append(&self, batch: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
        let (mut conn, out_since) = self.append_conn.take(&self.pool).await?;
        let appended = super::postgres_append::append(&mut conn, batch).await?;
        self.append_conn.keep(conn, out_since);
        Ok(appended)
    }

    async fn events_after(
        &self,
        company_id: &str,
        room: &str,
        after: i64,
        limit: i64,
        now: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.type, r.room, r.\"offset\", e.payload, e.priority, e.source, e.publisher, e.created_at
             FROM event_rooms r JOIN events e ON e.id = r.event_id
             WHERE r.company_id = $1 AND r.room = $2 AND r.\"offset\" > $3 AND r.expires_at > $5
             ORDER BY r.\"offset\" LIMIT $4",
        )
        .bind(company_id)
        .bind(room)
        .bind(after)
        .bind(limit)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let Json(payload): Json<Value> = row.try_get("payload")?;
                Ok(StoredEvent {
                    id: row.try_get("id")?,
                    event_type: row.try_get("type")?,
                    room: row.try_get("room")?,
                    offset: row.try_get("offset")?,
                    payload,
                    priority: row.try_get("priority")?,
                    source: row.try_get("source")?,
                    publisher: row.try_get("publisher")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn stored_offsets(
        &self,
        event_ids: &[String],
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            r#"SELECT event_id, room, "offset" FROM event_rooms WHERE event_id = ANY($1)"#,
        )
        .bind(event_ids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn head_offset(&self, company_id: &str, room: &str) -> Result<i64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar(
            "SELECT last_offset FROM room_offsets WHERE company_id = $1 AND room = $2",
        )
        .bind(company_id)
        .bind(room)
        .fetch_optional(&self.pool)
        .await?;
        Ok(head.unwrap_or(0))
    }

    async fn load_cursors(&self, key: &CursorKey) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT room, last_offset FROM cursors WHERE company_id = $1 AND user_id = $2 AND device_id = $3",
        )
        .bind(&key.company_id)
        .bind(&key.user_id)
        .bind(&key.device_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn connect_positions(
        &self,
        key: &CursorKey,
        rooms: &[String],
    ) -> Result<Positions, StoreError> {
        // Grouped with the other connects' reads (`positions`).
        self.positions.read(key, rooms).await
    }

    async fn save_cursors(
        &self,
        key: &CursorKey,
        cursors: &[(String, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        // One statement (no transaction round trips); each room once, in
        // one order, with its highest offset.
        let mut rows: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for (room, offset) in cursors {
            let slot = rows.entry(room.as_str()).or_insert(*offset);
            *slot = (*slot).max(*offset);
        }
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO cursors (company_id, user_id, device_id, room, last_offset, updated_at)
             SELECT $1, $2, $3, r, o, $6 FROM UNNEST($4::text[], $5::int8[]) WITH ORDINALITY AS t(r, o, n)
             ORDER BY n
             ON CONFLICT (company_id, user_id, device_id, room) DO UPDATE
             SET last_offset = GREATEST(cursors.last_offset, EXCLUDED.last_offset), updated_at = EXCLUDED.updated_at",
        )
        .bind(&key.company_id)
        .bind(&key.user_id)
        .bind(&key.device_id)
        .bind(rows.keys().copied().collect::<Vec<_>>())
        .bind(rows.values().copied().collect::<Vec<_>>())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn save_cursor_batch(
        &self,
        rows: &[(CursorKey, String, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        let column =
            |f: fn(&(CursorKey, String, i64)) -> String| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO cursors (company_id, user_id, device_id, room, last_offset, updated_at)
             SELECT c, u, d, r, o, $6 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[]) AS t(c, u, d, r, o)
             ON CONFLICT (company_id, user_id, device_id, room) DO UPDATE
             SET last_offset = GREATEST(cursors.last_offset, EXCLUDED.last_offset), updated_at = EXCLUDED.updated_at",
        )
        .bind(column(|r| r.0.company_id.clone()))
        .bind(column(|r| r.0.user_id.clone()))
        .bind(column(|r| r.0.device_id.clone()))
        .bind(column(|r| r.1.clone()))
        .bind(rows.iter().map(|r| r.2).collect::<Vec<i64>>())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune(&self, now: i64) -> Result<u64, StoreError> {
        // event_rooms rows go with their event (ON DELETE CASCADE); room
        // counters stay, so offsets never restart.
        let deleted = sqlx::query("DELETE FROM events WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at <= $1")
            .bind(now - super::IDEMPOTENCY_TTL_MS)
            .execute(&self.pool)
            .await?;
        // Documents' `clientMutationId`s are remembered as long as events' keys.
        super::DocumentStore::prune_mutations(self, now - super::IDEMPOTENCY_TTL_MS).await?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_connection_goes_back_to_the_pool_when_old_or_idle() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Busy: kept again every few milliseconds, reused until a minute out.
        assert!(reusable(t0, t0 + s(59), t0 + s(59)));
        assert!(!reusable(t0, t0 + s(60), t0 + s(60)));
        assert!(!reusable(t0, t0 + s(59), t0 + s(61)));
        // Idle: unused for 10 s, back to the pool even when young.
        assert!(reusable(t0, t0, t0 + s(9)));
        assert!(!reusable(t0, t0, t0 + s(10)));
        // A clock read out of order (another thread) is no reason to drop it.
        assert!(reusable(t0 + s(1), t0 + s(1), t0));
    }
}
