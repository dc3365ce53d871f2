//! SQLite implementation of [`WebhookStore`] (see `webhooks.rs`). Every
//! write goes through the single writer connection, so a claim (one
//! `UPDATE … RETURNING`) can never hand a row to two workers.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::webhooks::{
    Claimed, DeadLetter, DeliveryStats, Endpoint, NewDelivery, Outcome, WebhookStore,
    outcome_columns, parse_types, types_json,
};
use super::{NewEvent, SqliteStore, StoreError};

const INSERT: &str = "INSERT INTO webhook_outbox (endpoint_id, company_id, event_id, event_type, body, next_at, schedule_from, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6) ON CONFLICT DO NOTHING";

/// Writes an appended event's deliveries in its append transaction.
pub(super) async fn enqueue_in(
    tx: &mut Transaction<'_, Sqlite>,
    ev: &NewEvent,
) -> Result<(), StoreError> {
    for entry in &ev.webhooks {
        sqlx::query(INSERT)
            .bind(&entry.endpoint_id)
            .bind(&ev.company_id)
            .bind(&ev.id)
            .bind(&ev.event_type)
            .bind(&entry.body)
            .bind(ev.created_at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn endpoint(row: &SqliteRow) -> Result<Endpoint, StoreError> {
    let types: String = row.try_get("types")?;
    Ok(Endpoint {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        types: parse_types(&types)?,
        min_priority: row.try_get("min_priority")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
    })
}

const ENDPOINT_COLUMNS: &str =
    "id, company_id, url, secret, types, min_priority, description, created_at";

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, e: &Endpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, company_id, url, secret, types, min_priority, description, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(&e.company_id)
        .bind(&e.url)
        .bind(&e.secret)
        .bind(types_json(&e.types))
        .bind(&e.min_priority)
        .bind(&e.description)
        .bind(e.created_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn webhooks(&self, company_id: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
             WHERE ?1 IS NULL OR company_id = ?1 ORDER BY created_at, id"
        ))
        .bind(company_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(endpoint).collect()
    }

    async fn webhook(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(endpoint).transpose()
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM webhook_outbox WHERE endpoint_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted == 1)
    }

    async fn enqueue_deliveries(&self, rows: &[NewDelivery], now: i64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for r in rows {
            sqlx::query(INSERT)
                .bind(&r.endpoint_id)
                .bind(&r.company_id)
                .bind(&r.event_id)
                .bind(&r.event_type)
                .bind(&r.body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "UPDATE webhook_outbox
             SET lease_owner = ?1, next_at = ?3, attempts = attempts + 1
             WHERE id IN (
                 SELECT o.id FROM webhook_outbox o JOIN webhook_endpoints e ON e.id = o.endpoint_id
                 WHERE o.state = 'pending' AND o.next_at <= ?2
                 ORDER BY o.next_at LIMIT ?4)
             RETURNING id, endpoint_id, event_id, event_type, body, attempts, schedule_from",
        )
        .bind(owner)
        .bind(now)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let endpoint_id: String = r.try_get("endpoint_id")?;
            let (url, secret): (String, String) =
                sqlx::query_as("SELECT url, secret FROM webhook_endpoints WHERE id = ?")
                    .bind(&endpoint_id)
                    .fetch_one(&mut *tx)
                    .await?;
            claimed.push(Claimed {
                id: r.try_get("id")?,
                endpoint_id,
                url,
                secret,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("event_type")?,
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
                schedule_from: r.try_get("schedule_from")?,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_delivery(
        &self,
        id: i64,
        owner: &str,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (state, next_at, status, error, done) = outcome_columns(outcome, now);
        let n = sqlx::query(
            "UPDATE webhook_outbox
             SET state = ?3, next_at = COALESCE(?4, next_at), last_status = ?5,
                 last_error = ?6, done_at = ?7, lease_owner = NULL
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'pending'",
        )
        .bind(id)
        .bind(owner)
        .bind(state)
        .bind(next_at)
        .bind(status)
        .bind(error)
        .bind(done)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn delivery_stats(&self, endpoint_id: &str) -> Result<DeliveryStats, StoreError> {
        let row = sqlx::query(super::webhooks::STATS_SQL)
            .bind(endpoint_id)
            .fetch_one(&self.reader)
            .await?;
        Ok(DeliveryStats {
            pending: row.try_get("pending")?,
            delivered: row.try_get("delivered")?,
            dead: row.try_get("dead")?,
            last_delivered_at: row.try_get("last_delivered_at")?,
        })
    }

    async fn dead_letters(
        &self,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(super::webhooks::DEAD_SQL)
            .bind(endpoint_id)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    attempts: r.try_get("attempts")?,
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                    created_at: r.try_get("created_at")?,
                    failed_at: r.try_get("done_at")?,
                })
            })
            .collect()
    }

    async fn redeliver(
        &self,
        endpoint_id: &str,
        delivery_id: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(super::webhooks::REDELIVER_SQL)
            .bind(endpoint_id)
            .bind(delivery_id)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn outbox_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(super::webhooks::COUNTS_SQL)
            .fetch_one(&self.reader)
            .await?;
        Ok((row.try_get("pending")?, row.try_get("dead")?))
    }

    async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        let mut n =
            sqlx::query("DELETE FROM webhook_outbox WHERE state = 'delivered' AND done_at < ?")
                .bind(before)
                .execute(&self.writer)
                .await?
                .rows_affected();
        n += sqlx::query(super::webhooks::ORPHANS_SQL)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n)
    }
}
