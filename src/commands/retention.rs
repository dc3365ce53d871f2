//! Retention of finished commands (`COMMAND_RETENTION`, default 30 days):
//! without it the `commands` table grows forever. Every node, once at start
//! and then every [`RETENTION_INTERVAL`], deletes commands that succeeded or
//! failed longer than the retention ago, in bounded batches; open commands
//! (`queued`, `sent`, `acked`) are never deleted, however old (the timeout
//! sweep finishes them first). A pruned command is gone from
//! `GET /api/v1/commands` and answers `NOT_FOUND`; its `command_status`
//! events follow the event log's own retention.

use std::time::Duration;

use super::Commands;
use crate::domain::now_ms;

/// How often each node deletes finished commands past retention.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Commands deleted per statement: a pass repeats until a batch comes back
/// short, so no statement holds the table (or SQLite's writer) for long.
const PRUNE_BATCH: i64 = 1_000;

impl Commands {
    /// The retention loop (a tracked task, see [`Commands::start`]). The
    /// first tick is immediate: a node that was down a while catches up at once.
    pub(super) async fn retain_forever(&self) {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.prune_finished(now_ms()).await;
        }
    }

    /// One retention pass at `now`: deletes every command that finished at
    /// or before `now − COMMAND_RETENTION`; returns how many. A storage
    /// error ends the pass (the next one retries).
    pub async fn prune_finished(&self, now: i64) -> u64 {
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let before = now.saturating_sub(retention);
        let mut total = 0;
        loop {
            match self.store.prune_commands(before, PRUNE_BATCH).await {
                Ok(n) => {
                    total += n;
                    if n < PRUNE_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "finished commands not pruned; will retry");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(
                deleted = total,
                "pruned finished commands (COMMAND_RETENTION)"
            );
        }
        total
    }
}
