//! The delivery loop of a node: claim due outbox rows with a lease, POST
//! each (bounded concurrency, `WEBHOOK_TIMEOUT_MS` per request), record the
//! outcome. At-least-once: a node that dies after the receiver answered but
//! before the outcome is recorded leaves the row to be sent again when its
//! lease ends; receivers de-duplicate by `Switchyard-Event-Id`.
//! Also here: the writer of ephemeral/lifecycle deliveries, the outbox
//! gauges and the pruning of delivered rows.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::schedule::RetryPolicy;
use super::{Webhooks, sign, target};
use crate::config::WebhookSettings;
use crate::domain::now_ms;
use crate::store::webhooks::{Claimed, NewDelivery, Outcome};

/// Rows claimed per round.
const CLAIM_BATCH: i64 = 64;
/// Delivered rows are kept this long (stats), then pruned.
const KEEP_DELIVERED_MS: i64 = 7 * 24 * 3600 * 1000;
/// How often the outbox gauges are sampled (and delivered rows pruned, every 240th time).
const GAUGE_EVERY: Duration = Duration::from_secs(15);
/// Most bytes of an error kept with a row.
const MAX_ERROR: usize = 300;

pub const HEADER_EVENT_ID: &str = "switchyard-event-id";
pub const HEADER_EVENT_TYPE: &str = "switchyard-event-type";
pub const HEADER_DELIVERY_ID: &str = "switchyard-delivery-id";
pub const HEADER_ATTEMPT: &str = "switchyard-delivery-attempt";
pub const HEADER_TIMESTAMP: &str = "switchyard-timestamp";
pub const HEADER_SIGNATURE: &str = "switchyard-signature";

/// The outbound client: request timeout, no redirects, no proxy from the
/// environment, and (unless private targets are allowed) a resolver that
/// drops non-public addresses.
pub fn client(settings: &WebhookSettings) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("switchyard-webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.allow_private {
        builder = builder.dns_resolver(Arc::new(target::PublicOnly));
    }
    builder.build().unwrap_or_else(|e| {
        tracing::error!(error = %e, "webhook client not built with its settings; using defaults");
        reqwest::Client::new()
    })
}

pub fn policy(settings: &WebhookSettings) -> RetryPolicy {
    RetryPolicy {
        base: settings.retry_base,
        max: settings.retry_max,
        window: settings.retry_for,
    }
}

/// Claims and delivers until shutdown.
pub async fn run(hooks: Arc<Webhooks>, client: reqwest::Client) {
    let mut tick = tokio::time::interval(hooks.settings.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges = tokio::time::interval(GAUGE_EVERY);
    gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hooks.wake.notified() => {}
            _ = gauges.tick() => {
                sample(&hooks, rounds % 240 == 0).await;
                rounds += 1;
                continue;
            }
        }
        while deliver_due(&hooks, &client).await >= CLAIM_BATCH as usize {}
    }
}

/// One claim round; returns how many rows it took.
pub async fn deliver_due(hooks: &Webhooks, client: &reqwest::Client) -> usize {
    let owner = format!("{}:{}", hooks.node_id, uuid::Uuid::new_v4().simple());
    let lease = super::lease(&hooks.settings).as_millis() as i64;
    let claimed = match hooks
        .store
        .claim_deliveries(&owner, now_ms(), lease, CLAIM_BATCH)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "webhook deliveries not claimed");
            crate::metrics::db_error();
            return 0;
        }
    };
    let n = claimed.len();
    futures::stream::iter(claimed)
        .for_each_concurrent(hooks.settings.concurrency, |c| {
            attempt(hooks, client, c, &owner)
        })
        .await;
    n
}

async fn attempt(hooks: &Webhooks, client: &reqwest::Client, c: Claimed, owner: &str) {
    let result = post(client, &c, hooks.settings.allow_private).await;
    let now = now_ms();
    let outcome = match result {
        Ok(status) if (200..300).contains(&status) => Outcome::Delivered { status },
        failed => {
            let (status, error) = match failed {
                Ok(status) => (Some(status), format!("HTTP {status}")),
                Err(e) => (None, e),
            };
            let failed_attempts = u32::try_from(c.attempts).unwrap_or(1).max(1);
            match policy(&hooks.settings).next_at(
                failed_attempts,
                c.schedule_from,
                now,
                rand::random::<f64>(),
            ) {
                Some(next_at) => Outcome::Retry {
                    next_at,
                    status,
                    error,
                },
                None => Outcome::Dead { status, error },
            }
        }
    };
    crate::metrics::webhook_attempt(match &outcome {
        Outcome::Delivered { .. } => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead { .. } => "dead",
    });
    if let Outcome::Dead { error, .. } = &outcome {
        tracing::warn!(endpoint = %c.endpoint_id, event = %c.event_id, attempts = c.attempts, %error, "webhook delivery dead");
    }
    match hooks
        .store
        .finish_delivery(c.id, owner, &outcome, now)
        .await
    {
        // A new dead letter shows in the gauge at once, not at the next sample.
        Ok(true) if matches!(outcome, Outcome::Dead { .. }) => sample(hooks, false).await,
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(
                delivery = c.id,
                "webhook lease lost before the outcome was recorded"
            )
        }
        Err(e) => {
            // The lease runs out and the row is tried again: at-least-once.
            tracing::warn!(error = %e, delivery = c.id, "webhook outcome not recorded");
            crate::metrics::db_error();
        }
    }
}

/// One POST; the status, or why there was none.
async fn post(client: &reqwest::Client, c: &Claimed, allow_private: bool) -> Result<u16, String> {
    // Checked again at send time: an address written in the URL does not
    // go through the resolver (and the setting may have changed).
    target::validate(&c.url, allow_private).map_err(|e| e.to_string())?;
    let timestamp = now_ms() / 1000;
    let response = client
        .post(&c.url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(HEADER_EVENT_ID, &c.event_id)
        .header(HEADER_EVENT_TYPE, &c.event_type)
        .header(HEADER_DELIVERY_ID, c.id.to_string())
        .header(HEADER_ATTEMPT, c.attempts.to_string())
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(
            HEADER_SIGNATURE,
            sign::signature(&c.secret, timestamp, &c.body),
        )
        .body(c.body.clone())
        .send()
        .await
        .map_err(|e| {
            let mut text = format!("{e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text.chars().take(MAX_ERROR).collect::<String>()
        })?;
    // The body is not read: a receiver's answer carries nothing we need.
    Ok(response.status().as_u16())
}

/// Writes queued ephemeral/lifecycle deliveries in batches until shutdown;
/// a batch the database refuses is retried (new ones wait in the queue).
pub async fn write_queue(hooks: Arc<Webhooks>, mut rx: mpsc::Receiver<NewDelivery>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut wait = Duration::from_millis(100);
        while let Err(e) = hooks.store.enqueue_deliveries(&batch, now_ms()).await {
            tracing::warn!(error = %e, rows = batch.len(), "webhook deliveries not written; retrying");
            crate::metrics::db_error();
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        batch.clear();
        hooks.kick();
    }
}

/// The outbox gauges (cluster-wide counts), and with `prune` the removal
/// of old delivered rows.
async fn sample(hooks: &Webhooks, prune: bool) {
    match hooks.store.outbox_counts().await {
        Ok((pending, dead)) => crate::metrics::webhook_outbox(pending as f64, dead as f64),
        Err(e) => tracing::debug!(error = %e, "webhook outbox not measured"),
    }
    if prune {
        if let Err(e) = hooks
            .store
            .prune_deliveries(now_ms() - KEEP_DELIVERED_MS)
            .await
        {
            tracing::warn!(error = %e, "delivered webhook rows not pruned");
        }
    }
}

/// Samples the gauges once (at startup, so a fresh node reports them).
pub async fn sample_now(hooks: &Webhooks) {
    sample(hooks, false).await;
}
