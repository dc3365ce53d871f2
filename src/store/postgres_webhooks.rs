//! PostgreSQL implementation of [`WebhookStore`] (see `webhooks.rs`).

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};

use super::webhooks::{
    Claimed, DeadLetter, DeliveryStats, Endpoint, NewDelivery, Outcome, WebhookStore,
    outcome_columns,
};
use super::{NewEvent, PgStore, StoreError};

/// Writes the deliveries of a batch's appended events in its append
/// transaction: one statement for the whole batch (a per-row insert costs a
/// round trip each, inside the transaction that holds the rooms' counters).
pub(super) async fn enqueue_in(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&NewEvent],
) -> Result<(), StoreError> {
    let mut cols: [Vec<String>; 5] = Default::default();
    let mut at: Vec<i64> = Vec::new();
    for ev in events {
        for entry in &ev.webhooks {
            cols[0].push(entry.endpoint_id.clone());
            cols[1].push(ev.company_id.clone());
            cols[2].push(ev.id.clone());
            cols[3].push(ev.event_type.clone());
            cols[4].push(entry.body.clone());
            at.push(ev.created_at);
        }
    }
    if at.is_empty() {
        return Ok(());
    }
    let [endpoints, companies, ids, types, bodies] = cols;
    sqlx::query(
        "INSERT INTO webhook_outbox (endpoint_id, company_id, event_id, event_type, body, next_at, schedule_from, created_at)
         SELECT en, c, ev, t, b, a, a, a
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) AS r(en, c, ev, t, b, a)
         ON CONFLICT DO NOTHING",
    )
    .bind(endpoints)
    .bind(companies)
    .bind(ids)
    .bind(types)
    .bind(bodies)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn endpoint(row: &PgRow) -> Result<Endpoint, StoreError> {
    let Json(types): Json<Vec<String>> = row.try_get("types")?;
    Ok(Endpoint {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        types,
        min_priority: row.try_get("min_priority")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
    })
}

const ENDPOINT_COLUMNS: &str =
    "id, company_id, url, secret, types, min_priority, description, created_at";

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_webhook(&self, e: &Endpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, company_id, url, secret, types, min_priority, description, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&e.id)
        .bind(&e.company_id)
        .bind(&e.url)
        .bind(&e.secret)
        .bind(Json(&e.types))
        .bind(&e.min_priority)
        .bind(&e.description)
        .bind(e.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn webhooks(&self, company_id: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
             WHERE $1::text IS NULL OR company_id = $1 ORDER BY created_at, id"
        ))
        .bind(company_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint).collect()
    }

    async fn webhook(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(endpoint).transpose()
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM webhook_outbox WHERE endpoint_id = $1")
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
        let col = |f: fn(&NewDelivery) -> &String| rows.iter().map(f).cloned().collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO webhook_outbox (endpoint_id, company_id, event_id, event_type, body, next_at, schedule_from, created_at)
             SELECT en, c, ev, t, b, $6, $6, $6
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS r(en, c, ev, t, b)
             ON CONFLICT DO NOTHING",
        )
        .bind(col(|r| &r.endpoint_id))
        .bind(col(|r| &r.company_id))
        .bind(col(|r| &r.event_id))
        .bind(col(|r| &r.event_type))
        .bind(col(|r| &r.body))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        // SKIP LOCKED: nodes claiming at once take disjoint rows instead of
        // waiting on each other; the lease keeps a row away from the others
        // after this transaction commits.
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT o.id FROM webhook_outbox o
                 WHERE o.state = 'pending' AND o.next_at <= $2
                   AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = o.endpoint_id)
                 ORDER BY o.next_at LIMIT $4
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE webhook_outbox o
             SET lease_owner = $1, next_at = $3, attempts = o.attempts + 1
             FROM due, webhook_endpoints e
             WHERE o.id = due.id AND e.id = o.endpoint_id
             RETURNING o.id, o.endpoint_id, e.url, e.secret, o.event_id, o.event_type, o.body, o.attempts, o.schedule_from",
        )
        .bind(owner)
        .bind(now)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.try_get("id")?,
                    endpoint_id: r.try_get("endpoint_id")?,
                    url: r.try_get("url")?,
                    secret: r.try_get("secret")?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get("attempts")?,
                    schedule_from: r.try_get("schedule_from")?,
                })
            })
            .collect()
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
             SET state = $3, next_at = COALESCE($4, next_at), last_status = $5,
                 last_error = $6, done_at = $7, lease_owner = NULL
             WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
        )
        .bind(id)
        .bind(owner)
        .bind(state)
        .bind(next_at)
        .bind(status)
        .bind(error)
        .bind(done)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn delivery_stats(&self, endpoint_id: &str) -> Result<DeliveryStats, StoreError> {
        let row = sqlx::query(super::webhooks::STATS_SQL)
            .bind(endpoint_id)
            .fetch_one(&self.pool)
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
            .fetch_all(&self.pool)
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
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn outbox_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(super::webhooks::COUNTS_SQL)
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("pending")?, row.try_get("dead")?))
    }

    async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        let mut n =
            sqlx::query("DELETE FROM webhook_outbox WHERE state = 'delivered' AND done_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        n += sqlx::query(super::webhooks::ORPHANS_SQL)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }
}
