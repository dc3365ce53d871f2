//! PostgreSQL implementation of [`HistoryStore`] (see `history.rs`).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::types::Json;

use super::history::{HistoryStore, RangeEvent, RangeQuery, range_sql};
use super::{PgStore, StoreError};

#[async_trait]
impl HistoryStore for PgStore {
    async fn events_in_range(&self, q: &RangeQuery) -> Result<Vec<RangeEvent>, StoreError> {
        let sql = range_sql(q, "= ANY($N::text[])");
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
            query = query.bind(&q.types);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let Json(payload): Json<Value> = row.try_get("payload")?;
                Ok(RangeEvent {
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
}
