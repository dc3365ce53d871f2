//! Redis wiring shared by everything that crosses nodes: client settings
//! ([`builder`]), the socketioxide-redis adapter's subscriber (fred driver;
//! the socket.io transport's cluster), a Redis link used for health, and the
//! self-probe that keeps this node subscribed ([`probe`]). The durable bus
//! is `replay::bus`, which uses these.
//!
//! Facts of socketioxide-redis 0.4 / fred 10.1 this module designs around:
//! - the fred driver subscribes with `SSUBSCRIBE` only, and fred's own
//!   re-subscription (`manage_subscriptions`) first sends `SUBSCRIBE` with no
//!   channel, fails on Redis' error and never re-issues the sharded ones: so
//!   [`probe`] re-subscribes every tracked channel itself after a reconnect
//!   and proves, every few seconds, that this node receives cluster traffic;
//! - a broadcast is published to Redis before local delivery, so with Redis
//!   down even same-node delivery fails: the socket.io hub retries
//!   locally; commands time out quickly instead of queueing while Redis is away;
//! - `fetch_sockets` silently returns partial results after its timeout, so
//!   nothing correctness-critical rests on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr, drivers::fred::FredDriver};

use crate::config::Config;
use crate::tasks::Tasks;

pub mod probe;
pub mod rpc;

/// How long a Redis command may take before we call Redis unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

/// A plain Redis client for health probes, the adapter's subscriber, and
/// the last probes' results.
#[derive(Clone)]
pub struct RedisLink {
    client: Client,
    /// Redis answers `PING`.
    healthy: Arc<AtomicBool>,
    /// This node receives what other nodes publish (see [`probe`]).
    subscribed: Arc<AtomicBool>,
    adapter_subscriber: SubscriberClient,
    prefix: String,
}

impl RedisLink {
    /// Redis is reachable and this node receives cluster traffic.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && self.subscribed.load(Ordering::Acquire)
    }
}

pub fn builder(url: &str) -> Result<Builder, Error> {
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

/// How many pub/sub messages a subscriber's readers may fall behind before
/// they lose some (fred's default is 32). A burst from the other nodes
/// (a reconnect storm's presence, a busy room) overran 32 while the reader
/// task waited for its turn, and the adapter dropped cross-node messages.
/// Every channel of a client gets this capacity, allocated up front, so
/// only subscribers take it.
const SUBSCRIBER_BACKLOG: usize = 1024;

/// [`builder`] for a subscriber client: room for bursts (see [`SUBSCRIBER_BACKLOG`]).
pub fn subscriber_builder(url: &str) -> Result<Builder, Error> {
    let mut builder = builder(url)?;
    builder.with_performance_config(|p| p.broadcast_channel_capacity = SUBSCRIBER_BACKLOG);
    Ok(builder)
}

/// Connects the adapter's subscriber and the health client; spawns the probe.
pub async fn connect(
    config: &Config,
    tasks: &Tasks,
) -> anyhow::Result<(RedisAdapterCtr<FredDriver>, RedisLink)> {
    let url = config
        .redis_url
        .as_ref()
        .map(crate::secret::SecretUrl::expose)
        .ok_or_else(|| anyhow::anyhow!("REDIS_URL is not set"))?;
    let subscriber = subscriber_builder(url)?.build_subscriber_client()?;
    let adapter_config = RedisAdapterConfig::new()
        .with_prefix(config.redis_prefix.clone())
        .with_request_timeout(Duration::from_secs(2));
    let ctr = RedisAdapterCtr::new_with_fred_config(subscriber.clone(), adapter_config)
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot connect the adapter: {e}"))?;
    tasks.spawn(probe::resubscribe_on_reconnect(subscriber.clone()));

    let client = builder(url)?.build()?;
    client
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    let link = RedisLink {
        client,
        healthy: Arc::new(AtomicBool::new(true)),
        subscribed: Arc::new(AtomicBool::new(true)),
        adapter_subscriber: subscriber,
        prefix: config.redis_prefix.clone(),
    };
    tasks.spawn(ping(link.clone()));
    Ok((ctr, link))
}

/// Records every second whether Redis answers `PING`.
async fn ping(link: RedisLink) {
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
