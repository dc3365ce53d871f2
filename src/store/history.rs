//! History by time range ([`HistoryStore`], issue 15 item 4): events of a
//! company (optionally of one room, optionally of some types) created in
//! `[from, to)`, in `(created_at, id)` order, read in keyset pages so a page
//! costs the same at the start and the end of a large range. Served by the
//! indexes of `migrations/*/0010_history_time.sql`; implemented in
//! `postgres_history.rs` and `sqlite_history.rs`, contract tests in
//! `tests/store_history.rs`.

use async_trait::async_trait;
use serde_json::Value;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    pub company_id: String,
    /// `None` = every room of the company (each event once).
    pub room: Option<String>,
    /// Empty = every type.
    pub types: Vec<String>,
    /// Milliseconds since the epoch, inclusive.
    pub from: i64,
    /// Milliseconds since the epoch, exclusive.
    pub to: i64,
    /// The last `(created_at, id)` of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// An event read by time; `room` and `offset` when the query named a room.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeEvent {
    pub id: String,
    pub event_type: String,
    pub room: Option<String>,
    pub offset: Option<i64>,
    pub payload: Value,
    pub priority: String,
    pub source: String,
    pub publisher: Option<String>,
    pub created_at: i64,
}

#[async_trait]
pub trait HistoryStore {
    async fn events_in_range(&self, q: &RangeQuery) -> Result<Vec<RangeEvent>, StoreError>;
}

/// The SQL of a range page; placeholders `$1…` in bind order: company,
/// from, to, after-time, after-id, limit, then room (if any), then types
/// (if any, bound as `types_param`).
pub(super) fn range_sql(q: &RangeQuery, types_param: &str) -> String {
    let (from_clause, t, id, room_cols) = match q.room {
        Some(_) => (
            "event_rooms r JOIN events e ON e.id = r.event_id",
            "r.created_at",
            "r.event_id",
            "r.room AS room, r.\"offset\" AS \"offset\"",
        ),
        None => (
            "events e",
            "e.created_at",
            "e.id",
            "CAST(NULL AS TEXT) AS room, CAST(NULL AS BIGINT) AS \"offset\"",
        ),
    };
    let company = if q.room.is_some() {
        "r.company_id"
    } else {
        "e.company_id"
    };
    let mut next = 7;
    let mut filter = String::new();
    if q.room.is_some() {
        filter.push_str(&format!(" AND r.room = ${next}"));
        next += 1;
    }
    if !q.types.is_empty() {
        filter.push_str(&format!(
            " AND e.type {}",
            types_param.replace("$N", &format!("${next}"))
        ));
    }
    format!(
        "SELECT e.id, e.type, {room_cols}, e.payload, e.priority, e.source, e.publisher, {t} AS created_at
         FROM {from_clause}
         WHERE {company} = $1 AND {t} >= $2 AND {t} < $3 AND ({t}, {id}) > ($4, $5){filter}
         ORDER BY {t}, {id} LIMIT $6"
    )
}
