//! Storage of webhook endpoints and their durable outbox ([`WebhookStore`]).
//! The policy (what matches, when to retry, how to sign) lives in
//! `crate::webhooks`; this module only persists what it decides.
//!
//! Claiming: a node takes due rows with a lease (Postgres: `FOR UPDATE SKIP
//! LOCKED` in one `UPDATE … RETURNING`; SQLite: one `UPDATE … RETURNING` on
//! the single writer connection). A claim moves `next_at` to the lease's end
//! and stamps `lease_owner`; only that owner can finish the row, so a node
//! whose lease ran out (and whose row another node took) cannot overwrite
//! the other's result. Implemented in `postgres_webhooks.rs` and
//! `sqlite_webhooks.rs`; contract tests in `tests/store_webhooks.rs`.

use async_trait::async_trait;

use super::StoreError;

/// An operator-registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub company_id: String,
    pub url: String,
    pub secret: String,
    /// Event type names; empty = any type.
    pub types: Vec<String>,
    /// `low` … `critical`; `None` = any priority.
    pub min_priority: Option<String>,
    pub description: Option<String>,
    pub created_at: i64,
}

/// One delivery to write into the outbox inside an event's append
/// transaction (the event's id and company come from the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub endpoint_id: String,
    /// The exact bytes that will be POSTed (and signed).
    pub body: String,
}

/// One delivery to write into the outbox on its own (events that are not
/// appended to the log: ephemeral and lifecycle events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub endpoint_id: String,
    pub company_id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
}

/// A delivery this node holds the lease of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub endpoint_id: String,
    pub url: String,
    pub secret: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// Attempts including this one.
    pub attempts: i32,
    /// Start of the retry window.
    pub schedule_from: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    Retry {
        next_at: i64,
        status: Option<u16>,
        error: String,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

/// Counts of one endpoint's outbox rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    pub last_delivered_at: Option<i64>,
}

/// A delivery whose retry schedule ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub failed_at: Option<i64>,
}

#[async_trait]
pub trait WebhookStore {
    async fn create_webhook(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// One company's endpoints, or every endpoint (`None`), oldest first.
    async fn webhooks(&self, company_id: Option<&str>) -> Result<Vec<Endpoint>, StoreError>;

    async fn webhook(&self, id: &str) -> Result<Option<Endpoint>, StoreError>;

    /// Deletes the endpoint and its outbox rows; `false` if it did not exist.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;

    /// Writes deliveries due at `now`; a row already there for the same
    /// (endpoint, event) is left as it is.
    async fn enqueue_deliveries(&self, rows: &[NewDelivery], now: i64) -> Result<(), StoreError>;

    /// Takes up to `limit` due deliveries for `owner` until `now + lease_ms`.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Records an attempt's outcome; `false` if `owner` no longer holds the row.
    async fn finish_delivery(
        &self,
        id: i64,
        owner: &str,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool, StoreError>;

    async fn delivery_stats(&self, endpoint_id: &str) -> Result<DeliveryStats, StoreError>;

    /// Dead deliveries of one endpoint, newest failure first.
    async fn dead_letters(
        &self,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Puts a dead delivery back in the queue, due at `now`, with a fresh
    /// retry window; `false` if there is no such dead delivery.
    async fn redeliver(
        &self,
        endpoint_id: &str,
        delivery_id: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Cluster-wide `(pending, dead)` counts, for `/metrics`.
    async fn outbox_counts(&self) -> Result<(i64, i64), StoreError>;

    /// Deletes delivered rows finished before `before`; returns how many.
    async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError>;
}

/// The `types` column: a JSON array of names.
pub(super) fn types_json(types: &[String]) -> String {
    serde_json::to_string(types).unwrap_or_else(|_| "[]".into())
}

pub(super) fn parse_types(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("webhook types: {e}")))
}

/// The columns of a finished attempt: (state, next_at, status, error, done).
pub(super) fn outcome_columns(
    outcome: &Outcome,
    now: i64,
) -> (
    &'static str,
    Option<i64>,
    Option<i32>,
    Option<&str>,
    Option<i64>,
) {
    match outcome {
        Outcome::Delivered { status } => {
            ("delivered", None, Some(i32::from(*status)), None, Some(now))
        }
        Outcome::Retry {
            next_at,
            status,
            error,
        } => (
            "pending",
            Some(*next_at),
            status.map(i32::from),
            Some(error.as_str()),
            None,
        ),
        Outcome::Dead { status, error } => (
            "dead",
            None,
            status.map(i32::from),
            Some(error.as_str()),
            Some(now),
        ),
    }
}

// Statements both backends share (`$n` placeholders are understood by both).

pub(super) const STATS_SQL: &str = "SELECT
       CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending,
       CAST(COALESCE(SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), 0) AS BIGINT) AS delivered,
       CAST(COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS BIGINT) AS dead,
       MAX(CASE WHEN state = 'delivered' THEN done_at END) AS last_delivered_at
     FROM webhook_outbox WHERE endpoint_id = $1";

pub(super) const DEAD_SQL: &str =
    "SELECT id, event_id, event_type, attempts, last_status, last_error, created_at, done_at
     FROM webhook_outbox WHERE endpoint_id = $1 AND state = 'dead'
     ORDER BY done_at DESC, id DESC LIMIT $2";

pub(super) const REDELIVER_SQL: &str = "UPDATE webhook_outbox
     SET state = 'pending', attempts = 0, next_at = $3, schedule_from = $3, done_at = NULL, lease_owner = NULL
     WHERE endpoint_id = $1 AND id = $2 AND state = 'dead'";

pub(super) const COUNTS_SQL: &str = "SELECT
       (SELECT COUNT(*) FROM webhook_outbox WHERE state = 'pending') AS pending,
       (SELECT COUNT(*) FROM webhook_outbox WHERE state = 'dead') AS dead";

/// Rows written by a node whose endpoint cache still had a deleted endpoint
/// (only pending ones can be: the others were deleted with the endpoint).
pub(super) const ORPHANS_SQL: &str =
    "DELETE FROM webhook_outbox WHERE state = 'pending' AND NOT EXISTS
     (SELECT 1 FROM webhook_endpoints e WHERE e.id = webhook_outbox.endpoint_id)";
