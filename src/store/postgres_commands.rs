//! PostgreSQL implementation of [`CommandStore`]. A transition is one
//! `UPDATE … WHERE status IN (…) RETURNING`: a second writer of the same
//! row waits for the first to commit, re-checks the condition and updates
//! nothing, so each transition is made (and announced) exactly once.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use super::PgStore;
use super::StoreError;
use super::commands::{
    ANNOUNCE_GRACE_MS, CommandStore, Inserted, NewCommand, Outcome, STATUS_RANK_SQL, StoredCommand,
    TIMEOUT_CODE, from_list, status_of, time_column,
};
use crate::domain::command::Step;

const COLUMNS: &str = "id, company_id, target, name, args, sender, status, timeout_ms, deadline_at,
    created_at, sent_at, acked_at, finished_at, actual_value, error_code, error_message, answered_by,
    announced";

fn command_from_row(row: &PgRow) -> Result<StoredCommand, StoreError> {
    let Json(args): Json<Value> = row.try_get("args")?;
    let actual: Option<Json<Value>> = row.try_get("actual_value")?;
    let status: String = row.try_get("status")?;
    Ok(StoredCommand {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        target: row.try_get("target")?,
        name: row.try_get("name")?,
        args,
        sender: row.try_get("sender")?,
        status: status_of(&status)?,
        timeout_ms: row.try_get("timeout_ms")?,
        deadline_at: row.try_get("deadline_at")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
        acked_at: row.try_get("acked_at")?,
        finished_at: row.try_get("finished_at")?,
        actual_value: actual.map(|Json(v)| v),
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        answered_by: row.try_get("answered_by")?,
        announced: row.try_get("announced")?,
    })
}

#[async_trait]
impl CommandStore for PgStore {
    async fn insert_command(&self, c: &NewCommand) -> Result<Inserted, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO commands (id, company_id, target, name, args, sender, status, timeout_ms,
                                   deadline_at, created_at, idempotency_key, announced,
                                   announce_due)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $10, 0, $11)
             ON CONFLICT (company_id, idempotency_key) WHERE idempotency_key IS NOT NULL
             DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(&c.id)
        .bind(&c.company_id)
        .bind(&c.target)
        .bind(&c.name)
        .bind(Json(&c.args))
        .bind(&c.sender)
        .bind(c.timeout_ms)
        .bind(c.created_at.saturating_add(c.timeout_ms))
        .bind(c.created_at)
        .bind(&c.idempotency_key)
        .bind(c.created_at.saturating_add(ANNOUNCE_GRACE_MS))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Inserted {
                command: command_from_row(&row)?,
                duplicate: false,
            });
        }
        // The key was used: the insert above waited for its first user to
        // commit, so the first command is visible now.
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM commands WHERE company_id = $1 AND idempotency_key = $2"
        ))
        .bind(&c.company_id)
        .bind(&c.idempotency_key)
        .fetch_one(&self.pool)
        .await?;
        Ok(Inserted {
            command: command_from_row(&row)?,
            duplicate: true,
        })
    }

    async fn command(
        &self,
        company_id: &str,
        id: &str,
    ) -> Result<Option<StoredCommand>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM commands WHERE company_id = $1 AND id = $2"
        ))
        .bind(company_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(command_from_row)
        .transpose()
    }

    async fn transition_command(
        &self,
        company_id: &str,
        id: &str,
        step: Step,
        at: i64,
        outcome: &Outcome,
    ) -> Result<Option<StoredCommand>, StoreError> {
        let sql = format!(
            "UPDATE commands SET status = $3, {time} = $4,
                    deadline_at = COALESCE($5, deadline_at),
                    actual_value = COALESCE($6, actual_value),
                    error_code = COALESCE($7, error_code),
                    error_message = COALESCE($8, error_message),
                    answered_by = COALESCE($9, answered_by),
                    announce_due = $10
             WHERE company_id = $1 AND id = $2 AND status IN ({from})
             RETURNING {COLUMNS}",
            time = time_column(step),
            from = from_list(step),
        );
        sqlx::query(&sql)
            .bind(company_id)
            .bind(id)
            .bind(step.to().as_str())
            .bind(at)
            .bind(outcome.deadline_at)
            .bind(outcome.actual_value.as_ref().map(Json))
            .bind(&outcome.error_code)
            .bind(&outcome.error_message)
            .bind(&outcome.answered_by)
            .bind(at.saturating_add(ANNOUNCE_GRACE_MS))
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(command_from_row)
            .transpose()
    }

    async fn pending_commands(
        &self,
        company_id: &str,
        targets: &[String],
        now: i64,
    ) -> Result<Vec<StoredCommand>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM commands
             WHERE company_id = $1 AND target = ANY($2) AND status IN ('queued', 'sent')
               AND deadline_at > $3
             ORDER BY seq"
        ))
        .bind(company_id)
        .bind(targets)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(command_from_row).collect()
    }

    async fn list_commands(
        &self,
        company_id: &str,
        target: Option<&str>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<StoredCommand>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM commands
             WHERE company_id = $1 AND ($2::TEXT IS NULL OR target = $2)
               AND created_at >= $3 AND created_at < $4
             ORDER BY created_at, seq LIMIT $5"
        ))
        .bind(company_id)
        .bind(target)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(command_from_row).collect()
    }

    async fn expire_commands(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<StoredCommand>, StoreError> {
        // SKIP LOCKED: nodes sweeping at the same moment split the rows
        // instead of queueing on each other; the status guard still makes
        // each expiry happen once.
        let rows = sqlx::query(&format!(
            "UPDATE commands SET status = 'failed', finished_at = $1, error_code = $3,
                    error_message = 'no answer before the deadline', announce_due = $4
             WHERE seq IN (
                 SELECT seq FROM commands
                 WHERE status IN ('queued', 'sent', 'acked') AND deadline_at <= $1
                 ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               AND status IN ('queued', 'sent', 'acked')
             RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(limit)
        .bind(TIMEOUT_CODE)
        .bind(now.saturating_add(ANNOUNCE_GRACE_MS))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(command_from_row).collect()
    }

    async fn prune_commands(&self, finished_before: i64, limit: i64) -> Result<u64, StoreError> {
        // A bounded batch per statement (the caller repeats), by the primary
        // key, found through the `commands_finished` partial index (0011).
        // SKIP LOCKED: nodes pruning at once split the rows.
        let deleted = sqlx::query(
            "DELETE FROM commands WHERE id IN (
                 SELECT id FROM commands
                 WHERE status IN ('succeeded', 'failed') AND finished_at <= $1
                 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(finished_before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    async fn mark_announced(
        &self,
        company_id: &str,
        id: &str,
        rank: i16,
    ) -> Result<(), StoreError> {
        // In SET, `announced` is the old value: both use the same GREATEST.
        sqlx::query(&format!(
            "UPDATE commands SET announced = GREATEST(announced, $3),
                    announce_due = CASE WHEN GREATEST(announced, $3) >= {STATUS_RANK_SQL}
                                        THEN NULL ELSE announce_due END
             WHERE company_id = $1 AND id = $2"
        ))
        .bind(company_id)
        .bind(id)
        .bind(rank)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_unannounced(
        &self,
        now: i64,
        retry_at: i64,
        limit: i64,
    ) -> Result<Vec<StoredCommand>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE commands SET announce_due = $2
             WHERE seq IN (
                 SELECT seq FROM commands WHERE announce_due <= $1
                 ORDER BY announce_due LIMIT $3 FOR UPDATE SKIP LOCKED)
               AND announce_due <= $1
             RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(retry_at)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(command_from_row).collect()
    }
}
