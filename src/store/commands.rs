//! Storage of device commands (SPEC §13): the records and the
//! [`CommandStore`] interface, implemented in `postgres_commands.rs` and
//! `sqlite_commands.rs`; contract tests in `tests/store_commands.rs`.
//!
//! The rules of the life cycle live in `crate::domain::command`; this
//! module only persists what they decide. Each transition is one guarded
//! `UPDATE … WHERE status IN (from)`: when nodes race for the same
//! transition (two devices acking, every node's timeout sweep) the
//! database lets exactly one of them make it, and only that one announces it.

use async_trait::async_trait;
use serde_json::Value;

use super::StoreError;
use crate::domain::command::{Status, Step};

/// A command to store as `queued`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    pub id: String,
    pub company_id: String,
    /// Logical room name of the target (`device:p1`).
    pub target: String,
    pub name: String,
    pub args: Value,
    /// The sending user; `None` for the HTTP API.
    pub sender: Option<String>,
    pub timeout_ms: i64,
    pub created_at: i64,
    /// Scoped `clientCommandId`.
    pub idempotency_key: Option<String>,
}

/// A command as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCommand {
    pub id: String,
    pub company_id: String,
    pub target: String,
    pub name: String,
    pub args: Value,
    pub sender: Option<String>,
    pub status: Status,
    pub timeout_ms: i64,
    pub deadline_at: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub actual_value: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub answered_by: Option<String>,
    /// Rank ([`Status::rank`]) of the last status whose `command_status`
    /// was published (0: none yet).
    pub announced: i16,
}

impl StoredCommand {
    /// When it reached `status` (`None` if it never did).
    pub fn time_of(&self, status: Status) -> Option<i64> {
        match status {
            Status::Queued => Some(self.created_at),
            Status::Sent => self.sent_at,
            Status::Acked => self.acked_at,
            Status::Succeeded | Status::Failed => self.finished_at,
        }
    }

    /// The statuses it reached that are not announced yet, in order: a
    /// command that timed out while `queued` never was `sent` or `acked`.
    pub fn unannounced(&self) -> Vec<Status> {
        let mut reached: Vec<Status> = [Status::Queued, Status::Sent, Status::Acked]
            .into_iter()
            .filter(|s| s.rank() < self.status.rank())
            .collect();
        reached.push(self.status);
        reached.retain(|s| s.rank() > self.announced && self.time_of(*s).is_some());
        reached
    }
}

/// How long the node that made a transition has to announce it before any
/// node's sweep does (it normally takes milliseconds; a node that died or
/// lost the log in between leaves it to the sweep).
pub const ANNOUNCE_GRACE_MS: i64 = 3_000;

/// What a transition writes besides the status and its time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The new deadline (an ack opens the window for the result).
    pub deadline_at: Option<i64>,
    pub actual_value: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The user whose session answered.
    pub answered_by: Option<String>,
}

/// The result of an insert: the command, and whether its idempotency key
/// was already used (then it is the first command sent with that key).
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    pub command: StoredCommand,
    pub duplicate: bool,
}

#[async_trait]
pub trait CommandStore: Send + Sync {
    /// Stores a new command as `queued` with `deadline_at = created_at +
    /// timeout_ms`, unless its idempotency key was used before.
    async fn insert_command(&self, c: &NewCommand) -> Result<Inserted, StoreError>;

    async fn command(
        &self,
        company_id: &str,
        id: &str,
    ) -> Result<Option<StoredCommand>, StoreError>;

    /// Performs `step` at `at` if the command is in one of `step.from()`;
    /// `None` when it is not (another node got there first) or is unknown.
    async fn transition_command(
        &self,
        company_id: &str,
        id: &str,
        step: Step,
        at: i64,
        outcome: &Outcome,
    ) -> Result<Option<StoredCommand>, StoreError>;

    /// Open (`queued` or `sent`) commands of these target rooms whose
    /// deadline is after `now`, in the order they were sent.
    async fn pending_commands(
        &self,
        company_id: &str,
        targets: &[String],
        now: i64,
    ) -> Result<Vec<StoredCommand>, StoreError>;

    /// Commands of `target` (every target when `None`) created in
    /// `[from, to)`, oldest first, at most `limit`.
    async fn list_commands(
        &self,
        company_id: &str,
        target: Option<&str>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<StoredCommand>, StoreError>;

    /// Fails (TIMEOUT) at most `limit` open commands whose deadline is at or
    /// before `now`, and returns those this call failed.
    async fn expire_commands(&self, now: i64, limit: i64)
    -> Result<Vec<StoredCommand>, StoreError>;

    /// Deletes at most `limit` finished (`succeeded` or `failed`) commands
    /// that finished at or before `finished_before` (retention); returns how
    /// many. Open commands (`queued`, `sent`, `acked`) are never deleted,
    /// however old.
    async fn prune_commands(&self, finished_before: i64, limit: i64) -> Result<u64, StoreError>;

    /// Records that the statuses up to `rank` are announced (never moves
    /// back); clears `announce_due` when that covers the current status.
    async fn mark_announced(&self, company_id: &str, id: &str, rank: i16)
    -> Result<(), StoreError>;

    /// Claims at most `limit` commands whose announcing is overdue at `now`
    /// (their node did not finish it within [`ANNOUNCE_GRACE_MS`]): each is
    /// due again at `retry_at`, so a claimer that dies leaves it to the next
    /// sweep, and nodes sweeping at once split the rows.
    async fn claim_unannounced(
        &self,
        now: i64,
        retry_at: i64,
        limit: i64,
    ) -> Result<Vec<StoredCommand>, StoreError>;
}

/// The SQL rank of the `status` column (see [`Status::rank`]).
pub(super) const STATUS_RANK_SQL: &str =
    "CASE status WHEN 'queued' THEN 1 WHEN 'sent' THEN 2 WHEN 'acked' THEN 3 ELSE 4 END";

/// The code a timed-out command fails with.
pub const TIMEOUT_CODE: &str = "TIMEOUT";

/// The timestamp column a step sets.
pub(super) fn time_column(step: Step) -> &'static str {
    match step.to() {
        Status::Queued => "created_at",
        Status::Sent => "sent_at",
        Status::Acked => "acked_at",
        Status::Succeeded | Status::Failed => "finished_at",
    }
}

pub(super) fn status_of(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown command status `{s}`")))
}

/// The `IN (…)` list of a step's source states (fixed names, not input).
pub(super) fn from_list(step: Step) -> String {
    step.from()
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
