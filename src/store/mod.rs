//! Storage: one [`Store`] interface, a PostgreSQL and a SQLite implementation.
//!
//! All SQL lives under this module. The backend is picked from the URL scheme
//! of `DATABASE_URL`; migrations for each backend live in
//! `migrations/{postgres,sqlite}` and run at startup and on `switchyard migrate`.
//! The contract tests in `tests/store.rs` (and `tests/store_presence.rs`
//! for [`PresenceStore`]) run the same cases on both.
//! Documents (SPEC §6) have their own interface, [`DocumentStore`], in
//! `documents.rs`, implemented in `postgres_documents.rs` and
//! `sqlite_documents.rs`; contract tests in `tests/store_documents.rs`.
//! Pool use and the offline-queue backlog, for metrics: [`OpsStore`] in `ops.rs`.
//! Webhook endpoints and their outbox: [`WebhookStore`] in `webhooks.rs`;
//! history by time range: [`HistoryStore`] in `history.rs`.
//! Device commands: [`CommandStore`] in `commands.rs` (contract tests in
//! `tests/store_commands.rs`). Telemetry-rule thresholds: [`RuleStore`] in `rules.rs`
//! (`tests/store_rules.rs`).
//! Batching that serves many sessions with one statement: offline-queue
//! cursor saves in `cursor_batch.rs` (both stores), the connects' cursor
//! and head reads in `positions.rs` (each store's statement in
//! `sqlite_positions.rs` and `postgres.rs`), and [`group`], the queue
//! behind presence's registrar (its PostgreSQL transactions in
//! `postgres_presence_many.rs` and `postgres_presence_settle.rs`).

pub mod batch;
pub mod breaker;
pub mod commands;
pub mod cursor_batch;
pub mod documents;
pub mod group;
pub mod history;
pub mod ops;
pub mod outcome;
mod postgres_commands;
mod postgres_documents;
mod postgres_history;
mod postgres_webhooks;
mod sqlite_commands;
mod sqlite_documents;
mod sqlite_history;
mod sqlite_webhooks;
pub mod webhooks;

mod positions;
mod postgres;
mod postgres_append;
mod postgres_presence;
mod postgres_presence_many;
mod postgres_presence_reads;
mod postgres_presence_rooms;
mod postgres_presence_settle;
mod postgres_rules;
pub mod presence;
pub mod rules;
mod sqlite;
mod sqlite_positions;
mod sqlite_presence;
mod sqlite_presence_reads;
mod sqlite_presence_rooms;
mod sqlite_rules;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use commands::CommandStore;
pub use documents::DocumentStore;
pub use history::{HistoryStore, RangeEvent, RangeQuery};
pub use ops::{OpsStore, PoolUse};
pub use postgres::PgStore;
pub use presence::{MadeBy, PresenceStore, PresentUser, SocketEntry, UserKey};
pub use rules::RuleStore;
pub use sqlite::SqliteStore;
pub use webhooks::{OutboxEntry, WebhookStore};
// `Positions` is defined below, with the interface.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported DATABASE_URL `{0}`: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// The answer to a write whose outcome is unknown (given up on, or its
    /// connection ended mid-way): UNAVAILABLE, "not known to be stored";
    /// retry with the same idempotency key.
    pub fn not_known(&self) -> StoreError {
        match self {
            Self::Unavailable(why) => Self::Unavailable(why.clone()),
            other => Self::Unavailable(other.to_string()),
        }
    }

    /// The connection ended while the database may have been running the
    /// request, its COMMIT included: the server shut down or restarted, the
    /// backend was terminated, the link broke. What was sent may have
    /// committed; only the database can say ([`outcome`]). Each of these is
    /// an outage to the breaker, which opens: nothing is retried while the
    /// outcome is unknown.
    pub fn outcome_unknown(&self) -> bool {
        use sqlx::Error as E;
        match self {
            Self::Db(E::Io(_) | E::Tls(_) | E::WorkerCrashed) => true,
            // Connection exceptions (08xxx) and the server shutting down,
            // crashing or restarting (57P01-57P03).
            Self::Db(E::Database(db)) => db.code().is_some_and(|c| {
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        }
    }
}

/// A durable event to append to one or more room logs.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub company_id: String,
    pub event_type: String,
    /// Logical room names; each gets its own offset.
    pub rooms: Vec<String>,
    pub payload: Value,
    pub priority: String,
    pub source: String,
    pub publisher: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Scoped key (`clientEventId` per user or HTTP `idempotencyKey`).
    pub idempotency_key: Option<String>,
    /// Webhook deliveries of this event, written in its append transaction
    /// (none for a duplicate).
    pub webhooks: Vec<OutboxEntry>,
}

/// The result of an append: the event id and the offset per room. A retry
/// with a known idempotency key gets the first result and `duplicate = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub id: String,
    pub offsets: Vec<(String, i64)>,
    #[serde(skip)]
    pub duplicate: bool,
}

/// An event as read back from a room log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub room: String,
    pub offset: i64,
    pub payload: Value,
    pub priority: String,
    pub source: String,
    pub publisher: Option<String>,
    pub created_at: i64,
}

#[async_trait]
pub trait Store:
    DocumentStore
    + PresenceStore
    + OpsStore
    + WebhookStore
    + HistoryStore
    + CommandStore
    + RuleStore
    + Send
    + Sync
    + 'static
{
    /// `postgres` or `sqlite`, for logs and health.
    fn backend(&self) -> &'static str;

    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether the database takes a new connection now: one attempt, not
    /// the pool's (which retries refused connections until its acquire
    /// timeout). For the breaker's verdict on a write that is slow.
    async fn probe(&self) -> Result<(), StoreError> {
        self.ping().await
    }

    /// Appends a batch atomically: every event gets the next offset of each of
    /// its rooms, all in one transaction, or nothing is written.
    async fn append(&self, batch: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError>;

    /// Events of `room` with offset > `after` that have not expired at
    /// `now` (ms), in offset order, at most `limit`.
    async fn events_after(
        &self,
        company_id: &str,
        room: &str,
        after: i64,
        limit: i64,
        now: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// `(event id, room, offset)` of each of `event_ids` in the log: what
    /// an append whose outcome is unknown wrote, if anything ([`outcome`]).
    async fn stored_offsets(
        &self,
        event_ids: &[String],
    ) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// The last offset handed out in `room` (0 when none).
    async fn head_offset(&self, company_id: &str, room: &str) -> Result<i64, StoreError>;

    /// Offline-queue cursors of one user's device: room → last delivered offset.
    async fn load_cursors(&self, key: &CursorKey) -> Result<HashMap<String, i64>, StoreError>;

    /// What a connect needs, in one round trip: the device's cursors (as
    /// [`Store::load_cursors`]) and the heads of `rooms` (as
    /// [`Store::head_offset`]; a room without events is absent).
    async fn connect_positions(
        &self,
        key: &CursorKey,
        rooms: &[String],
    ) -> Result<Positions, StoreError>;

    /// Advances cursors (never moves one back: another tab of the same user
    /// may have seen more).
    async fn save_cursors(
        &self,
        key: &CursorKey,
        cursors: &[(String, i64)],
        now: i64,
    ) -> Result<(), StoreError>;

    /// Advances many devices' cursors in one statement (as [`Store::save_cursors`]);
    /// each `(key, room)` appears at most once.
    async fn save_cursor_batch(
        &self,
        rows: &[(CursorKey, String, i64)],
        now: i64,
    ) -> Result<(), StoreError>;

    /// Deletes events expired at `now` (returns how many), and the
    /// idempotency keys of events and documents older than [`IDEMPOTENCY_TTL_MS`].
    async fn prune(&self, now: i64) -> Result<u64, StoreError>;
}

/// A device's cursors and some rooms' heads, read together at connect.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Positions {
    pub cursors: HashMap<String, i64>,
    pub heads: HashMap<String, i64>,
}

/// Cursor rows with each device and room once, at the furthest offset
/// given (a cursor never moves back, and one [`Store::save_cursor_batch`]
/// statement may not touch a row twice), in the order first seen.
pub fn furthest_cursors(
    rows: impl IntoIterator<Item = (CursorKey, String, i64)>,
) -> Vec<(CursorKey, String, i64)> {
    let mut at: HashMap<(CursorKey, String), usize> = HashMap::new();
    let mut out: Vec<(CursorKey, String, i64)> = Vec::new();
    for (key, room, offset) in rows {
        match at.entry((key, room)) {
            std::collections::hash_map::Entry::Occupied(slot) => {
                let row = &mut out[*slot.get()];
                row.2 = row.2.max(offset);
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                let (key, room) = slot.key().clone();
                slot.insert(out.len());
                out.push((key, room, offset));
            }
        }
    }
    out
}

/// Whose offline-queue cursors: a user's device (`device_id` "" = no device id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CursorKey {
    pub company_id: String,
    pub user_id: String,
    pub device_id: String,
}

/// Rows `(is_cursor, room, offset)` of a connect's one query.
fn positions(rows: Vec<(bool, String, i64)>) -> Positions {
    let mut out = Positions::default();
    for (is_cursor, room, offset) in rows {
        if is_cursor {
            out.cursors.insert(room, offset);
        } else {
            out.heads.insert(room, offset);
        }
    }
    out
}

/// Opens the store named by `url` (creating a SQLite file if missing).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(crate::secret::redact_url(url)))
    }
}

/// A migrated SQLite store in a file of its own (unit tests of the
/// services above the store).
#[cfg(test)]
pub async fn scratch_sqlite() -> Arc<dyn Store> {
    let dir = std::env::temp_dir().join("switchyard-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("unit-{}.db", uuid::Uuid::new_v4().simple()));
    let store = connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrations");
    store
}

/// How long idempotency keys are remembered: retries come within minutes,
/// offline outboxes within days.
pub const IDEMPOTENCY_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Rooms sorted and deduplicated: every writer locks room counters in the
/// same order, which rules out deadlocks between multi-room appends.
fn lock_order(rooms: &[String]) -> Vec<String> {
    let mut sorted = rooms.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
}

/// Offsets reported in the caller's room order.
fn in_request_order(rooms: &[String], assigned: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::with_capacity(rooms.len());
    for room in rooms {
        if out.iter().any(|(r, _)| r == room) {
            continue;
        }
        if let Some(pair) = assigned.iter().find(|(r, _)| r == room) {
            out.push(pair.clone());
        }
    }
    out
}
