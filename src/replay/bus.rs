//! The durable bus: committed durable events announced to the other nodes,
//! which deliver them to their own members (see [`crate::replay`]).
//!
//! Announcing never sits in a publisher's latency: events go into a bounded
//! queue drained by one task. An announcement that cannot be made (queue
//! full, Redis down or slow) is healed from the database: the drain task
//! then publishes a resync request as soon as Redis takes it, and every node
//! that receives it (or that reconnects to Redis) re-reads each of its
//! members' rooms. A node that loses its subscription is caught by the
//! self-probe ([`crate::cluster::probe`]), which this module hands its
//! subscriber and a probe message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use tokio::sync::mpsc;

use super::{DurableHub, LogEvent};
use crate::cluster::{RedisLink, builder, probe, subscriber_builder};
use crate::config::Config;
use crate::tasks::Tasks;

/// Announcements waiting for Redis; beyond this they are dropped (and healed).
const QUEUE: usize = 4096;

/// The publishing side: a bounded queue in front of Redis.
#[derive(Clone)]
pub struct DurableBus {
    queue: mpsc::Sender<Vec<LogEvent>>,
    /// Set when an announcement was lost; cleared once a resync went out.
    lost: Arc<AtomicBool>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BusMessage {
    pub node: String,
    pub events: Vec<LogEvent>,
    /// Every receiver re-reads its members' rooms from the database.
    #[serde(default)]
    pub resync: bool,
}

impl DurableBus {
    /// Queues an announcement; never waits.
    pub fn announce(&self, events: Vec<LogEvent>) {
        if self.queue.try_send(events).is_err() {
            crate::metrics::redis_error();
            if !self.lost.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    "durable bus queue full; other nodes will catch up from the database"
                );
            }
        }
    }
}

/// Publishes queued announcements in order; after a loss, a resync request.
async fn drain(
    client: Client,
    channel: String,
    node: String,
    mut queue: mpsc::Receiver<Vec<LogEvent>>,
    lost: Arc<AtomicBool>,
) {
    let send = |events: Vec<LogEvent>, resync: bool| {
        let msg = BusMessage {
            node: node.clone(),
            events,
            resync,
        };
        let (client, channel) = (client.clone(), channel.clone());
        async move {
            let text = serde_json::to_string(&msg).map_err(|e| e.to_string())?;
            client
                .publish::<i64, _, _>(&channel, text)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    loop {
        let next = if lost.load(Ordering::Acquire) {
            // Retry the resync while nothing else is queued.
            match tokio::time::timeout(Duration::from_millis(500), queue.recv()).await {
                Ok(next) => next,
                Err(_) => Some(Vec::new()),
            }
        } else {
            queue.recv().await
        };
        let Some(events) = next else { return };
        if !events.is_empty()
            && let Err(e) = send(events, false).await
        {
            crate::metrics::redis_error();
            if !lost.swap(true, Ordering::AcqRel) {
                tracing::warn!(error = %e, "durable bus publish failed; other nodes will catch up from the database");
            }
            continue;
        }
        if lost.load(Ordering::Acquire) && queue.is_empty() && send(Vec::new(), true).await.is_ok()
        {
            lost.store(false, Ordering::Release);
            tracing::info!("durable bus: resync requested after lost announcements");
        }
    }
}

/// A message without events from a node that does not exist: every
/// listener ignores it, and the self-probe waits for it to come back.
fn probe_message() -> String {
    serde_json::to_string(&BusMessage {
        node: format!("probe-{}", uuid::Uuid::new_v4()),
        events: Vec::new(),
        resync: false,
    })
    .unwrap_or_default()
}

/// Subscribes this node to the durable bus, starts the self-probe, and
/// returns the publishing side.
pub async fn durable_bus(
    config: &Config,
    hub: Arc<DurableHub>,
    link: &RedisLink,
    tasks: &Tasks,
) -> anyhow::Result<DurableBus> {
    let url = config
        .redis_url
        .as_ref()
        .map(crate::secret::SecretUrl::expose)
        .ok_or_else(|| anyhow::anyhow!("REDIS_URL is not set"))?;
    let channel = format!("{}#durable", config.redis_prefix);
    let node = uuid::Uuid::new_v4().to_string();
    let subscriber = subscriber_builder(url)?.build_subscriber_client()?;
    subscriber
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    subscriber
        .subscribe(channel.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: subscribe: {e}"))?;
    tasks.spawn(probe::resubscribe_on_reconnect(subscriber.clone()));
    let probe_subscriber = subscriber.clone();
    // Receivers first: nothing published after the subscription is missed.
    let inbox = Inbox {
        messages: subscriber.message_rx(),
        reconnects: subscriber.reconnect_rx(),
        _subscriber: subscriber,
    };
    tasks.spawn(listen(inbox, node.clone(), hub));
    let client = builder(url)?.build()?;
    client
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    tasks.spawn(probe::watch(
        link.clone(),
        probe::Bus {
            subscriber: probe_subscriber,
            channel: channel.clone(),
            message: probe_message,
        },
    ));
    let (tx, rx) = mpsc::channel(QUEUE);
    let lost = Arc::new(AtomicBool::new(false));
    tasks.spawn(drain(client, channel, node, rx, lost.clone()));
    Ok(DurableBus { queue: tx, lost })
}

/// The bus subscriber's message and reconnect streams.
struct Inbox {
    messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    _subscriber: fred::clients::SubscriberClient,
}

/// Delivers other nodes' announcements on this node; re-reads every room
/// after a resync request, a lag or a reconnect.
async fn listen(inbox: Inbox, own: String, listener_hub: Arc<DurableHub>) {
    let Inbox {
        mut messages,
        mut reconnects,
        _subscriber,
    } = inbox;
    {
        loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Ok(msg) => {
                        let Some(text) = msg.value.as_str() else { continue };
                        match serde_json::from_str::<BusMessage>(&text) {
                            Ok(m) if m.resync && m.node != own => {
                                tracing::info!("durable bus: another node lost announcements; re-checking every room");
                                listener_hub.sweep();
                            }
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
                    // Lagged: several reconnects at once, still a reconnect.
                    if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { return; }
                    tracing::info!("durable bus reconnected; re-checking every room");
                    listener_hub.sweep();
                }
            }
        }
    }
}
