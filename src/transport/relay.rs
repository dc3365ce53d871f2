//! Ephemeral deliveries between nodes for the plain-WebSocket and SSE
//! sessions ([`super::local`]). socket.io sockets are reached on every node
//! by socketioxide's Redis adapter; these sessions have no adapter, so this
//! node's deliveries are also published on one Redis channel
//! (`{REDIS_PREFIX}#local`), and every other node hands what it receives
//! to its own [`LocalRooms`].
//!
//! Ephemeral means at most once, and this keeps that: publishing goes
//! through a bounded queue drained by one task (never in a publisher's
//! latency), and what cannot be published (queue full, Redis down) is
//! dropped and counted. Durable events do not come this way: every node's
//! durable feeds serve them (see `replay`).

use std::sync::Arc;

use async_trait::async_trait;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::local::LocalRooms;
use crate::catalog::RoleSet;
use crate::cluster::{builder, probe};
use crate::config::Config;
use crate::domain::SessionId;
use crate::fanout::{Delivery, Hub, Signal};
use crate::tasks::Tasks;

/// Deliveries waiting for Redis; beyond this they are dropped.
const QUEUE: usize = 4096;

/// One delivery on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    node: String,
    company: String,
    room: String,
    event: String,
    /// A domain event's payload and meta; a server message's body is `payload`.
    payload: Value,
    #[serde(default)]
    meta: Option<Value>,
    /// A domain event's receive roles; `None` for a server message.
    #[serde(default)]
    receive: Option<u8>,
    #[serde(default)]
    exclude: Option<SessionId>,
}

/// This node's local hub, plus the announcement to the other nodes.
pub struct Relay {
    local: Arc<LocalRooms>,
    node: String,
    queue: mpsc::Sender<Wire>,
}

impl Relay {
    fn send(&self, wire: Wire) {
        if self.queue.try_send(wire).is_err() {
            crate::metrics::redis_error();
            crate::metrics::dropped_ephemeral(1);
        }
    }
}

#[async_trait]
impl Hub for Relay {
    async fn deliver(&self, d: &Delivery) {
        Hub::deliver(self.local.as_ref(), d).await;
        self.send(Wire {
            node: self.node.clone(),
            company: d.company.clone(),
            room: d.room.clone(),
            event: d.event_type.clone(),
            payload: d.payload.clone(),
            meta: Some(d.meta.clone()),
            receive: Some(d.receive.bits()),
            exclude: d.exclude,
        });
    }

    async fn emit(&self, s: &Signal) {
        Hub::emit(self.local.as_ref(), s).await;
        self.send(Wire {
            node: self.node.clone(),
            company: s.company.clone(),
            room: s.room.clone(),
            event: s.event.to_string(),
            payload: s.data.clone(),
            meta: None,
            receive: None,
            exclude: s.exclude,
        });
    }
}

/// Subscribes this node to the relay channel and returns the hub that
/// delivers locally and announces to the other nodes.
pub async fn relay(
    config: &Config,
    local: Arc<LocalRooms>,
    tasks: &Tasks,
) -> anyhow::Result<Relay> {
    let url = config
        .redis_url
        .as_ref()
        .map(crate::secret::SecretUrl::expose)
        .ok_or_else(|| anyhow::anyhow!("REDIS_URL is not set"))?;
    let channel = format!("{}#local", config.redis_prefix);
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
    tasks.spawn(probe::resubscribe_on_reconnect(subscriber.clone()));
    tasks.spawn(listen(
        subscriber.message_rx(),
        subscriber,
        node.clone(),
        local.clone(),
    ));
    let client = builder(url)?.build()?;
    client
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    let (tx, rx) = mpsc::channel(QUEUE);
    tasks.spawn(drain(client, channel, rx));
    Ok(Relay {
        local,
        node,
        queue: tx,
    })
}

/// Publishes queued deliveries in order.
async fn drain(client: Client, channel: String, mut queue: mpsc::Receiver<Wire>) {
    while let Some(wire) = queue.recv().await {
        let Ok(text) = serde_json::to_string(&wire) else {
            continue;
        };
        if let Err(e) = client.publish::<i64, _, _>(&channel, text).await {
            crate::metrics::redis_error();
            crate::metrics::dropped_ephemeral(1);
            tracing::debug!(error = %e, "relay publish failed; the ephemeral event is lost for other nodes");
        }
    }
}

/// Hands other nodes' deliveries to this node's sessions.
async fn listen(
    mut messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    _subscriber: fred::clients::SubscriberClient,
    own: String,
    local: Arc<LocalRooms>,
) {
    loop {
        let msg = match messages.recv().await {
            Ok(msg) => msg,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                crate::metrics::dropped_ephemeral(n);
                continue;
            }
            Err(_) => return,
        };
        let Some(text) = msg.value.as_str() else {
            continue;
        };
        match serde_json::from_str::<Wire>(&text) {
            Ok(w) if w.node == own => {}
            Ok(w) => match (w.meta, w.receive) {
                (Some(meta), Some(receive)) => local.deliver(&Delivery {
                    company: w.company,
                    room: w.room,
                    event_type: w.event,
                    payload: w.payload,
                    meta,
                    receive: RoleSet::from_bits(receive),
                    exclude: w.exclude,
                }),
                _ => local.signal(&w.company, &w.room, &w.event, &w.payload, w.exclude),
            },
            Err(e) => tracing::warn!(error = %e, "unreadable relay message"),
        }
    }
}
