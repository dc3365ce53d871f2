//! SQLite implementation of [`RuleStore`]: each change is one guarded
//! `UPDATE … RETURNING` on the single writer connection, so changes never
//! interleave and the guard decides who made one.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::StoreError;
use super::rules::{RuleChange, RuleStore, ThresholdKey, change_sql};
use crate::domain::rule::ThresholdState;

const KEY: &str = "company_id = ?1 AND rule_id = ?2 AND threshold_id = ?3 AND stream_key = ?4";

fn state_from_row(row: &SqliteRow) -> Result<ThresholdState, StoreError> {
    Ok(ThresholdState {
        raised: row.try_get("raised")?,
        armed_at: row.try_get("armed_at")?,
        alarm_id: row.try_get("alarm_id")?,
    })
}

#[async_trait]
impl RuleStore for SqliteStore {
    async fn threshold_state(&self, key: &ThresholdKey) -> Result<ThresholdState, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT raised, armed_at, alarm_id FROM rule_states WHERE {KEY}"
        ))
        .bind(&key.company_id)
        .bind(&key.rule_id)
        .bind(&key.threshold_id)
        .bind(&key.stream_key)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref()
            .map(state_from_row)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn ensure_threshold(&self, key: &ThresholdKey, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rule_states (company_id, rule_id, threshold_id, stream_key, raised, changed_at)
             VALUES (?1, ?2, ?3, ?4, FALSE, ?5) ON CONFLICT DO NOTHING",
        )
        .bind(&key.company_id)
        .bind(&key.rule_id)
        .bind(&key.threshold_id)
        .bind(&key.stream_key)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn change_threshold(
        &self,
        key: &ThresholdKey,
        change: &RuleChange,
        now: i64,
    ) -> Result<Option<ThresholdState>, StoreError> {
        let (set, guard) = change_sql(change);
        let fill = |s: &str| {
            s.replace("{now}", "?5")
                .replace("{hold}", "?6")
                .replace("{alarm}", "?7")
        };
        let sql = format!(
            "UPDATE rule_states SET {}, changed_at = ?5 WHERE {KEY} AND {}
             RETURNING raised, armed_at, alarm_id",
            fill(set),
            fill(guard)
        );
        let mut q = sqlx::query(&sql)
            .bind(&key.company_id)
            .bind(&key.rule_id)
            .bind(&key.threshold_id)
            .bind(&key.stream_key)
            .bind(now);
        if let RuleChange::Raise { hold_ms, alarm_id } = change {
            q = q.bind(*hold_ms).bind(alarm_id);
        }
        q.fetch_optional(&self.writer)
            .await?
            .as_ref()
            .map(state_from_row)
            .transpose()
    }
}
