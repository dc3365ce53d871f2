//! Keeping this node subscribed, and proving it.
//!
//! After a Redis restart fred's `resubscribe_all` sends `SUBSCRIBE` with an
//! empty channel list first; Redis answers `ERR wrong number of arguments`
//! and the adapter's sharded subscriptions (the fred driver of
//! socketioxide-redis uses `SSUBSCRIBE` only) are never re-issued: the node
//! no longer hears the other nodes. So each subscriber here re-issues every
//! channel it tracks, one command per kind and channel, after each
//! reconnect.
//!
//! And every [`PROBE_EVERY`] the node proves that it receives cluster
//! traffic: it publishes, from its plain client, an adapter `Heartbeat`
//! request (a no-op for every node) on the adapter's request channel and on
//! its own node channel, and a message without events on the durable bus,
//! and waits until its own subscribers see all three. Until a probe passes
//! health says `redis: "error"` (status `degraded`); a failed probe
//! re-subscribes again. (A node starts subscribed: startup fails otherwise.)

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use socketioxide_core::Uid;
use socketioxide_core::adapter::remote_packet::{RequestOut, RequestTypeOut};
use tokio::sync::broadcast::error::RecvError;

use super::RedisLink;

/// How often the node proves it hears the cluster.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a probe message may take to come back.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The durable bus subscriber and its channel, probed with the adapter's.
pub struct Bus {
    pub subscriber: SubscriberClient,
    pub channel: String,
    /// A fresh message its listeners ignore (the bus's own format).
    pub message: fn() -> String,
}

/// Re-issues every tracked subscription after each reconnect, forever.
pub async fn resubscribe_on_reconnect(subscriber: SubscriberClient) {
    let mut reconnects = subscriber.reconnect_rx();
    // Lagged means several reconnects at once: re-subscribe all the same.
    while !matches!(reconnects.recv().await, Err(RecvError::Closed)) {
        if let Err(e) = resubscribe(&subscriber).await {
            tracing::warn!(error = %e, "redis: re-subscribing failed; the probe retries");
        }
    }
}

/// Subscribes again to every channel, pattern and shard channel the client
/// tracks, each with its own command (never an empty one). Re-subscribing
/// to a channel already subscribed is harmless.
pub async fn resubscribe(subscriber: &SubscriberClient) -> Result<(), Error> {
    for channel in subscriber.tracked_channels() {
        subscriber.subscribe(channel.to_string()).await?;
    }
    for pattern in subscriber.tracked_patterns() {
        subscriber.psubscribe(pattern.to_string()).await?;
    }
    for channel in subscriber.tracked_shard_channels() {
        subscriber.ssubscribe(channel.to_string()).await?;
    }
    Ok(())
}

/// Probes every [`PROBE_EVERY`] and records the result in `link`.
pub async fn watch(link: RedisLink, bus: Bus) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ok = match probe_once(&link, &bus).await {
            Ok(()) => true,
            Err(Missed::NotYet) => continue,
            Err(Missed::Probe(missing)) => {
                if link.subscribed.load(Ordering::Acquire) {
                    tracing::warn!(%missing, "redis: this node does not hear the cluster; re-subscribing until it does");
                } else {
                    tracing::debug!(%missing, "redis: probe failed again");
                }
                crate::metrics::redis_error();
                for subscriber in [&link.adapter_subscriber, &bus.subscriber] {
                    if let Err(e) = resubscribe(subscriber).await {
                        tracing::debug!(error = %e, "redis: re-subscribing failed");
                    }
                }
                false
            }
        };
        if ok != link.subscribed.swap(ok, Ordering::AcqRel) && ok {
            tracing::info!("redis: this node hears the cluster");
        }
    }
}

enum Missed {
    /// The adapter is not initialised yet (startup): nothing to prove.
    NotYet,
    /// What did not come back.
    Probe(String),
}

impl From<String> for Missed {
    fn from(s: String) -> Self {
        Self::Probe(s)
    }
}

/// One round: what must come back, on which channel. `Err` names what did not.
async fn probe_once(link: &RedisLink, bus: &Bus) -> Result<(), Missed> {
    let global = format!("{}-request#/#", link.prefix);
    let tracked = link.adapter_subscriber.tracked_shard_channels();
    let own = tracked
        .iter()
        .map(|c| c.to_string())
        .find(|c| c.starts_with(&global) && c.len() > global.len())
        .ok_or(Missed::NotYet)?;
    let heartbeat = rmp_serde::to_vec(&RequestOut::new_empty(
        Uid::new(),
        RequestTypeOut::Heartbeat,
    ))
    .map_err(|e| e.to_string())?;
    let bus_probe = (bus.message)();
    let mut adapter_rx = link.adapter_subscriber.message_rx();
    let mut bus_rx = bus.subscriber.message_rx();
    let sent = async {
        link.client
            .spublish::<i64, _, _>(global.as_str(), heartbeat.clone())
            .await?;
        link.client
            .spublish::<i64, _, _>(own.as_str(), heartbeat.clone())
            .await?;
        link.client
            .publish::<i64, _, _>(bus.channel.as_str(), bus_probe.clone())
            .await
    };
    sent.await.map_err(|e| format!("publish failed: {e}"))?;
    let mut waiting: HashSet<String> = [global, own].into_iter().collect();
    let mut bus_seen = false;
    // Each branch matches every outcome of `recv`: a pattern that can fail
    // (`Ok(m) = rx.recv()`) disables its branch, and with the other branch
    // already done `select!` has none left and panics, ending the probe
    // while health says `degraded`. A lagged receiver (fred's channels are
    // bounded) lost messages, perhaps the probe's: keep reading, the
    // timeout decides.
    let wait = async {
        while !(waiting.is_empty() && bus_seen) {
            tokio::select! {
                got = adapter_rx.recv(), if !waiting.is_empty() => match got {
                    Ok(m) => {
                        if m.value.as_bytes() == Some(heartbeat.as_slice()) {
                            waiting.remove(&m.channel.to_string());
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Err("the adapter's subscriber closed"),
                },
                got = bus_rx.recv(), if !bus_seen => match got {
                    Ok(m) => bus_seen = m.value.as_str().as_deref() == Some(bus_probe.as_str()),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Err("the durable bus's subscriber closed"),
                },
            }
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, wait).await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(closed)) => Err(closed.to_string().into()),
        Err(_) => {
            let mut missing: Vec<String> = waiting.into_iter().collect();
            if !bus_seen {
                missing.push(bus.channel.clone());
            }
            Err(format!("no probe came back on {}", missing.join(", ")).into())
        }
    }
}
