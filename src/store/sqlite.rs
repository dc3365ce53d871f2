//! SQLite implementation of [`Store`], the zero-setup embedded default.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly
//! one connection (transactions queue in the pool instead of failing with
//! SQLITE_BUSY), while reads use a separate pool; WAL mode lets those readers
//! run alongside the writer. With a single writer, offsets are trivially
//! gapless and in commit order.

use std::str::FromStr;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

use std::collections::HashMap;

use super::positions::PositionReader;
use super::sqlite_positions::{IN_FLIGHT, SqliteReads};
use super::{
    Appended, CursorKey, NewEvent, Positions, Store, StoreError, StoredEvent, in_request_order,
    lock_order,
};

pub struct SqliteStore {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
    positions: PositionReader<SqliteReads>,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        // No ping per checkout (sqlx's default): on an embedded database it
        // is one more round trip to the connection's worker thread for
        // every query, and a file does not drop a connection.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(IN_FLIGHT as u32)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        let positions = PositionReader::new(SqliteReads(reader.clone()), IN_FLIGHT);
        Ok(Self {
            writer,
            reader,
            positions,
        })
    }
}

fn payload_text(v: &Value) -> String {
    v.to_string()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // A rolling upgrade runs older nodes against a schema a newer node
        // already migrated: migrations are additive, so unknown newer ones
        // are not an error.
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn append(&self, batch: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut results = Vec::with_capacity(batch.len());
        for ev in &batch {
            if let Some(key) = &ev.idempotency_key {
                let existing: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT result FROM idempotency_keys WHERE company_id = ? AND key = ?",
                )
                .bind(&ev.company_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(stored) = existing {
                    let text = stored.ok_or_else(|| {
                        StoreError::Corrupt(format!("idempotency key {key} has no result"))
                    })?;
                    let mut first: Appended = serde_json::from_str(&text)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    first.duplicate = true;
                    results.push(first);
                    continue;
                }
            }
            sqlx::query(
                "INSERT INTO events (id, company_id, type, payload, priority, source, publisher, created_at, expires_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&ev.id)
            .bind(&ev.company_id)
            .bind(&ev.event_type)
            .bind(payload_text(&ev.payload))
            .bind(&ev.priority)
            .bind(&ev.source)
            .bind(&ev.publisher)
            .bind(ev.created_at)
            .bind(ev.expires_at)
            .execute(&mut *tx)
            .await?;
            let mut assigned = Vec::with_capacity(ev.rooms.len());
            for room in lock_order(&ev.rooms) {
                let offset: i64 = sqlx::query_scalar(
                    "INSERT INTO room_offsets (company_id, room, last_offset) VALUES (?, ?, 1)
                     ON CONFLICT (company_id, room)
                     DO UPDATE SET last_offset = room_offsets.last_offset + 1
                     RETURNING last_offset",
                )
                .bind(&ev.company_id)
                .bind(&room)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO event_rooms (company_id, room, \"offset\", event_id, expires_at, created_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&ev.company_id)
                .bind(&room)
                .bind(offset)
                .bind(&ev.id)
                .bind(ev.expires_at)
                .bind(ev.created_at)
                .execute(&mut *tx)
                .await?;
                assigned.push((room, offset));
            }
            super::sqlite_webhooks::enqueue_in(&mut tx, ev).await?;
            let appended = Appended {
                id: ev.id.clone(),
                offsets: in_request_order(&ev.rooms, &assigned),
                duplicate: false,
            };
            if let Some(key) = &ev.idempotency_key {
                let text = serde_json::to_string(&appended)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO idempotency_keys (company_id, key, result, created_at) VALUES (?, ?, ?, ?)",
                )
                .bind(&ev.company_id)
                .bind(key)
                .bind(text)
                .bind(ev.created_at)
                .execute(&mut *tx)
                .await?;
            }
            results.push(appended);
        }
        tx.commit().await?;
        Ok(results)
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
             WHERE r.company_id = ? AND r.room = ? AND r.\"offset\" > ? AND r.expires_at > ?
             ORDER BY r.\"offset\" LIMIT ?",
        )
        .bind(company_id)
        .bind(room)
        .bind(after)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                let text: String = row.try_get("payload")?;
                let payload =
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
        let ids = serde_json::to_string(event_ids)
            .map_err(|e| StoreError::Corrupt(format!("event ids: {e}")))?;
        Ok(sqlx::query_as(
            r#"SELECT event_id, room, "offset" FROM event_rooms
               WHERE event_id IN (SELECT value FROM json_each(?))"#,
        )
        .bind(ids)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn head_offset(&self, company_id: &str, room: &str) -> Result<i64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar(
            "SELECT last_offset FROM room_offsets WHERE company_id = ? AND room = ?",
        )
        .bind(company_id)
        .bind(room)
        .fetch_optional(&self.reader)
        .await?;
        Ok(head.unwrap_or(0))
    }

    async fn load_cursors(&self, key: &CursorKey) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT room, last_offset FROM cursors WHERE company_id = ? AND user_id = ? AND device_id = ?",
        )
        .bind(&key.company_id)
        .bind(&key.user_id)
        .bind(&key.device_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn connect_positions(
        &self,
        key: &CursorKey,
        rooms: &[String],
    ) -> Result<Positions, StoreError> {
        // Grouped with the other connects' reads (`sqlite_positions`).
        self.positions.read(key, rooms).await
    }

    async fn save_cursors(
        &self,
        key: &CursorKey,
        cursors: &[(String, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        if cursors.is_empty() {
            return Ok(());
        }
        // One statement, not BEGIN + one INSERT per room + COMMIT: every
        // statement is a round trip to SQLite's worker thread, and a
        // first-time connect saves three rooms before `session`.
        let rows: Vec<(&str, i64)> = cursors.iter().map(|(r, o)| (r.as_str(), *o)).collect();
        let rows = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO cursors (company_id, user_id, device_id, room, last_offset, updated_at)
             SELECT ?1, ?2, ?3, value ->> 0, value ->> 1, ?4 FROM json_each(?5) WHERE true
             ON CONFLICT (company_id, user_id, device_id, room) DO UPDATE
             SET last_offset = MAX(cursors.last_offset, EXCLUDED.last_offset), updated_at = EXCLUDED.updated_at",
        )
        .bind(&key.company_id)
        .bind(&key.user_id)
        .bind(&key.device_id)
        .bind(now)
        .bind(rows)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn save_cursor_batch(
        &self,
        rows: &[(CursorKey, String, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        // One statement whatever the count: the rows travel as one JSON array.
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, room, o)| serde_json::json!([k.company_id, k.user_id, k.device_id, room, o]))
            .collect();
        sqlx::query(
            "INSERT INTO cursors (company_id, user_id, device_id, room, last_offset, updated_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ? FROM json_each(?) WHERE true
             ON CONFLICT (company_id, user_id, device_id, room) DO UPDATE
             SET last_offset = MAX(cursors.last_offset, EXCLUDED.last_offset), updated_at = EXCLUDED.updated_at",
        )
        .bind(now)
        .bind(serde_json::Value::Array(json).to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn prune(&self, now: i64) -> Result<u64, StoreError> {
        // event_rooms rows go with their event (ON DELETE CASCADE); room
        // counters stay, so offsets never restart.
        let deleted = sqlx::query("DELETE FROM events WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at <= ?")
            .bind(now - super::IDEMPOTENCY_TTL_MS)
            .execute(&self.writer)
            .await?;
        // Documents' `clientMutationId`s are remembered as long as events' keys.
        super::DocumentStore::prune_mutations(self, now - super::IDEMPOTENCY_TTL_MS).await?;
        Ok(deleted)
    }
}
