//! Storage of telemetry-rule threshold states (issue 15 item 2): the
//! [`RuleStore`] interface, implemented in `postgres_rules.rs` and
//! `sqlite_rules.rs`; contract tests in `tests/store_rules.rs`.
//!
//! What a reading asks for is decided by `crate::domain::rule::plan`;
//! each change here is one guarded `UPDATE` with the guards of
//! `crate::domain::rule::apply`, so of several nodes asking for the same
//! change at once exactly one makes it, and only that one publishes the
//! alarm (or its clearing).

use async_trait::async_trait;

use super::StoreError;
use crate::domain::rule::ThresholdState;

/// Which threshold of which stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThresholdKey {
    pub company_id: String,
    pub rule_id: String,
    pub threshold_id: String,
    /// The value of the rule's key field ("" when it has none).
    pub stream_key: String,
}

/// A guarded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleChange {
    /// Start the hold (only if not raised and not armed).
    Arm,
    /// Stop the hold (only if not raised and armed).
    Disarm,
    /// Raise (only if not raised, and armed at least `hold_ms` ago unless
    /// `hold_ms` is 0), remembering the alarm's id.
    Raise { hold_ms: i64, alarm_id: String },
    /// Clear (only if raised).
    Clear,
}

#[async_trait]
pub trait RuleStore: Send + Sync {
    /// The state of a threshold (the default when never touched).
    async fn threshold_state(&self, key: &ThresholdKey) -> Result<ThresholdState, StoreError>;

    /// Creates the threshold's row (not raised, not armed) unless it exists.
    async fn ensure_threshold(&self, key: &ThresholdKey, now: i64) -> Result<(), StoreError>;

    /// Makes `change` at `now` if its guard holds against the stored state
    /// (the guards of `crate::domain::rule::apply`); the new state when this
    /// call made it, `None` when the guard did not hold (or no row exists).
    async fn change_threshold(
        &self,
        key: &ThresholdKey,
        change: &RuleChange,
        now: i64,
    ) -> Result<Option<ThresholdState>, StoreError>;
}

/// `SET … WHERE <guard>` of a change; parameters by position: `$now`, then
/// `$hold` and `$alarm` for a raise (written by each backend).
pub(super) fn change_sql(change: &RuleChange) -> (&'static str, &'static str) {
    match change {
        RuleChange::Arm => ("armed_at = {now}", "NOT raised AND armed_at IS NULL"),
        RuleChange::Disarm => ("armed_at = NULL", "NOT raised AND armed_at IS NOT NULL"),
        RuleChange::Raise { .. } => (
            "raised = TRUE, armed_at = NULL, alarm_id = {alarm}",
            "NOT raised AND ({hold} = 0 OR (armed_at IS NOT NULL AND armed_at <= {now} - {hold}))",
        ),
        RuleChange::Clear => ("raised = FALSE, armed_at = NULL", "raised"),
    }
}
