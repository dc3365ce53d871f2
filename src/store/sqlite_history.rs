//! SQLite implementation of [`HistoryStore`] (see `history.rs`).

use async_trait::async_trait;
use sqlx::Row;

use super::history::{HistoryStore, RangeEvent, RangeQuery, range_sql};
use super::{SqliteStore, StoreError};

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn events_in_range(&self, q: &RangeQuery) -> Result<Vec<RangeEvent>, StoreError> {
        let sql = range_sql(q, "IN (SELECT value FROM json_each($N))");
        let (after_t, after_id) = q.after.clone().unwrap_or((q.from, String::new()));
        let mut query = sqlx::query(&sql)
            .bind(&q.company_id)
            .bind(q.from)
            .bind(q.to)
            .bind(after_t)
            .bind(after_id)
            .bind(q.limit);
        if let Some(room) = &q.room {
            query = query.bind(room);
        }
        if !q.types.is_empty() {
            query = query.bind(serde_json::to_string(&q.types).unwrap_or_else(|_| "[]".into()));
        }
        let rows = query.fetch_all(&self.reader).await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("payload")?;
                Ok(RangeEvent {
                    id: row.try_get("id")?,
                    event_type: row.try_get("type")?,
                    room: row.try_get("room")?,
                    offset: row.try_get("offset")?,
                    payload: serde_json::from_str(&text)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    priority: row.try_get("priority")?,
                    source: row.try_get("source")?,
                    publisher: row.try_get("publisher")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
