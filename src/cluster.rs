//! Cluster wiring: the socketioxide-redis adapter (fred driver) and a Redis
//! link used for health.
//!
//! Facts of socketioxide-redis 0.4 this module designs around:
//! - the fred driver's subscriptions are not re-issued after a reconnect, so
//!   the subscriber client runs fred's `manage_subscriptions` task;
//! - a broadcast is published to Redis before local delivery, so with Redis
//!   down even same-node delivery fails: [`crate::socket::broadcast`] retries
//!   locally; commands time out quickly instead of queueing while Redis is away;
//! - `fetch_sockets` silently returns partial results after its timeout, so
//!   nothing correctness-critical rests on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr, drivers::fred::FredDriver};

use crate::config::Config;
use crate::replay::{DurableHub, LogEvent};

/// How long a Redis command may take before we call Redis unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

/// A plain Redis client for health probes, plus the last probe's result.
#[derive(Clone)]
pub struct RedisLink {
    client: Client,
    healthy: Arc<AtomicBool>,
}

impl RedisLink {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

fn builder(url: &str) -> Result<Builder, Error> {
    let mut config = fred::types::config::Config::from_url(url)?;
    // socketioxide-redis publishes on its subscriber connection, which Redis
    // only allows under RESP3.
    config.version = fred::types::RespVersion::RESP3;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
        })
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.max_command_attempts = 1;
        })
        // Reconnect forever with backoff capped at 2 s: Redis coming back must
        // heal the cluster without a restart.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

/// Connects the adapter's subscriber and the health client; spawns the probe.
pub async fn connect(config: &Config) -> anyhow::Result<(RedisAdapterCtr<FredDriver>, RedisLink)> {
    let url = config
        .redis_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("REDIS_URL is not set"))?;
    let subscriber = builder(url)?.build_subscriber_client()?;
    let adapter_config = RedisAdapterConfig::new()
        .with_prefix(config.redis_prefix.clone())
        .with_request_timeout(Duration::from_secs(2));
    let ctr = RedisAdapterCtr::new_with_fred_config(subscriber.clone(), adapter_config)
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot connect the adapter: {e}"))?;
    subscriber.manage_subscriptions();

    let client = builder(url)?.build()?;
    client
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    let link = RedisLink {
        client,
        healthy: Arc::new(AtomicBool::new(true)),
    };
    tokio::spawn(probe(link.clone()));
    Ok((ctr, link))
}

async fn probe(link: RedisLink) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let ok = link.client.ping::<String>(None).await.is_ok();
        if ok != link.healthy.swap(ok, Ordering::AcqRel) {
            if ok {
                tracing::info!("redis is reachable again");
            } else {
                tracing::warn!("redis is unreachable: serving local sockets only");
            }
        }
    }
}

/// Carries committed durable events to the other nodes, which deliver them
/// to their own members (see [`crate::replay`]). A lost message is healed:
/// the next event of the room reveals the gap, and after a Redis reconnect
/// every member re-checks the database.
#[derive(Clone)]
pub struct DurableBus {
    client: Client,
    channel: String,
    node: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BusMessage {
    node: String,
    events: Vec<LogEvent>,
}

impl DurableBus {
    pub async fn publish(&self, events: &[LogEvent]) {
        let msg = BusMessage {
            node: self.node.clone(),
            events: events.to_vec(),
        };
        let Ok(text) = serde_json::to_string(&msg) else {
            return;
        };
        if let Err(e) = self.client.publish::<i64, _, _>(&self.channel, text).await {
            tracing::warn!(error = %e, "durable bus publish failed; other nodes will catch up from the database");
        }
    }
}

/// Subscribes this node to the durable bus and returns the publishing side.
pub async fn durable_bus(config: &Config, hub: Arc<DurableHub>) -> anyhow::Result<DurableBus> {
    let url = config
        .redis_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("REDIS_URL is not set"))?;
    let channel = format!("{}#durable", config.redis_prefix);
    let node = uuid::Uuid::new_v4().to_string();
    let subscriber = builder(url)?.build_subscriber_client()?;
    subscriber
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    subscriber
        .subscribe(channel.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: subscribe: {e}"))?;
    subscriber.manage_subscriptions();
    let mut messages = subscriber.message_rx();
    let mut reconnects = subscriber.reconnect_rx();
    let own = node.clone();
    let listener_hub = hub.clone();
    tokio::spawn(async move {
        let _keep = subscriber;
        loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Ok(msg) => {
                        let Some(text) = msg.value.as_str() else { continue };
                        match serde_json::from_str::<BusMessage>(&text) {
                            Ok(m) if m.node != own => {
                                for ev in &m.events {
                                    listener_hub.notify_local(ev);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "unreadable durable bus message"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "durable bus lagged; re-checking every room");
                        listener_hub.sweep();
                    }
                    Err(_) => return,
                },
                r = reconnects.recv() => {
                    if r.is_err() { return; }
                    tracing::info!("durable bus reconnected; re-checking every room");
                    listener_hub.sweep();
                }
            }
        }
    });
    let client = builder(url)?.build()?;
    client
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    Ok(DurableBus {
        client,
        channel,
        node,
    })
}
