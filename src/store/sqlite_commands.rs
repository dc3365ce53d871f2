//! SQLite implementation of [`CommandStore`]. Writes go through the single
//! writer connection, so guarded updates never interleave; the guard still
//! decides which caller made a transition.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::StoreError;
use super::commands::{
    ANNOUNCE_GRACE_MS, CommandStore, Inserted, NewCommand, Outcome, STATUS_RANK_SQL, StoredCommand,
    TIMEOUT_CODE, from_list, status_of, time_column,
};
use super::documents::{from_text, to_text};
use crate::domain::command::Step;

const COLUMNS: &str = "id, company_id, target, name, args, sender, status, timeout_ms, deadline_at,
    created_at, sent_at, acked_at, finished_at, actual_value, error_code, error_message, answered_by,
    announced";

fn command_from_row(row: &SqliteRow) -> Result<StoredCommand, StoreError> {
    let args: String = row.try_get("args")?;
    let actual: Option<String> = row.try_get("actual_value")?;
    let status: String = row.try_get("status")?;
    Ok(StoredCommand {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        target: row.try_get("target")?,
        name: row.try_get("name")?,
        args: from_text::<Value>(&args)?,
        sender: row.try_get("sender")?,
        status: status_of(&status)?,
        timeout_ms: row.try_get("timeout_ms")?,
        deadline_at: row.try_get("deadline_at")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
        acked_at: row.try_get("acked_at")?,
        finished_at: row.try_get("finished_at")?,
        actual_value: actual.as_deref().map(from_text::<Value>).transpose()?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        answered_by: row.try_get("answered_by")?,
        announced: row.try_get("announced")?,
    })
}

#[async_trait]
impl CommandStore for SqliteStore {
    async fn insert_command(&self, c: &NewCommand) -> Result<Inserted, StoreError> {
        let mut tx = self.writer.begin().await?;
        if let Some(key) = &c.idempotency_key {
            let first = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM commands WHERE company_id = ? AND idempotency_key = ?"
            ))
            .bind(&c.company_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = first {
                return Ok(Inserted {
                    command: command_from_row(&row)?,
                    duplicate: true,
                });
            }
        }
        let row = sqlx::query(&format!(
            "INSERT INTO commands (id, company_id, target, name, args, sender, status, timeout_ms,
                                   deadline_at, created_at, idempotency_key, announced,
                                   announce_due)
             VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, 0, ?) RETURNING {COLUMNS}"
        ))
        .bind(&c.id)
        .bind(&c.company_id)
        .bind(&c.target)
        .bind(&c.name)
        .bind(to_text(&c.args)?)
        .bind(&c.sender)
        .bind(c.timeout_ms)
        .bind(c.created_at.saturating_add(c.timeout_ms))
        .bind(c.created_at)
        .bind(&c.idempotency_key)
        .bind(c.created_at.saturating_add(ANNOUNCE_GRACE_MS))
        .fetch_one(&mut *tx)
        .await?;
        let command = command_from_row(&row)?;
        tx.commit().await?;
        Ok(Inserted {
            command,
            duplicate: false,
        })
    }

    async fn command(
        &self,
        company_id: &str,
        id: &str,
    ) -> Result<Option<StoredCommand>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM commands WHERE company_id = ? AND id = ?"
        ))
        .bind(company_id)
        .bind(id)
        .fetch_optional(&self.reader)
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
            "UPDATE commands SET status = ?, {time} = ?,
                    deadline_at = COALESCE(?, deadline_at),
                    actual_value = COALESCE(?, actual_value),
                    error_code = COALESCE(?, error_code),
                    error_message = COALESCE(?, error_message),
                    answered_by = COALESCE(?, answered_by),
                    announce_due = ?
             WHERE company_id = ? AND id = ? AND status IN ({from})
             RETURNING {COLUMNS}",
            time = time_column(step),
            from = from_list(step),
        );
        let actual = outcome.actual_value.as_ref().map(to_text).transpose()?;
        sqlx::query(&sql)
            .bind(step.to().as_str())
            .bind(at)
            .bind(outcome.deadline_at)
            .bind(actual)
            .bind(&outcome.error_code)
            .bind(&outcome.error_message)
            .bind(&outcome.answered_by)
            .bind(at.saturating_add(ANNOUNCE_GRACE_MS))
            .bind(company_id)
            .bind(id)
            .fetch_optional(&self.writer)
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
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM commands
             WHERE company_id = ? AND target IN (SELECT value FROM json_each(?))
               AND status IN ('queued', 'sent') AND deadline_at > ?
             ORDER BY seq"
        ))
        .bind(company_id)
        .bind(to_text(&targets)?)
        .bind(now)
        .fetch_all(&self.reader)
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
             WHERE company_id = ? AND (? IS NULL OR target = ?)
               AND created_at >= ? AND created_at < ?
             ORDER BY created_at, seq LIMIT ?"
        ))
        .bind(company_id)
        .bind(target)
        .bind(target)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(command_from_row).collect()
    }

    async fn expire_commands(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<StoredCommand>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE commands SET status = 'failed', finished_at = ?, error_code = ?,
                    error_message = 'no answer before the deadline', announce_due = ?
             WHERE seq IN (
                 SELECT seq FROM commands
                 WHERE status IN ('queued', 'sent', 'acked') AND deadline_at <= ?
                 ORDER BY deadline_at LIMIT ?)
             RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(TIMEOUT_CODE)
        .bind(now.saturating_add(ANNOUNCE_GRACE_MS))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(command_from_row).collect()
    }

    async fn prune_commands(&self, finished_before: i64, limit: i64) -> Result<u64, StoreError> {
        // A bounded batch per statement, so the single writer is never held
        // long (the caller repeats); found through `commands_finished` (0011).
        let deleted = sqlx::query(
            "DELETE FROM commands WHERE seq IN (
                 SELECT seq FROM commands
                 WHERE status IN ('succeeded', 'failed') AND finished_at <= ?
                 ORDER BY finished_at LIMIT ?)",
        )
        .bind(finished_before)
        .bind(limit)
        .execute(&self.writer)
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
        // In SET, `announced` is the old value: both use the same MAX.
        sqlx::query(&format!(
            "UPDATE commands SET announced = MAX(announced, ?1),
                    announce_due = CASE WHEN MAX(announced, ?1) >= {STATUS_RANK_SQL}
                                        THEN NULL ELSE announce_due END
             WHERE company_id = ?2 AND id = ?3"
        ))
        .bind(rank)
        .bind(company_id)
        .bind(id)
        .execute(&self.writer)
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
            "UPDATE commands SET announce_due = ?1
             WHERE seq IN (
                 SELECT seq FROM commands WHERE announce_due <= ?2
                 ORDER BY announce_due LIMIT ?3)
             RETURNING {COLUMNS}"
        ))
        .bind(retry_at)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(command_from_row).collect()
    }
}
