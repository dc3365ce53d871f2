//! Ephemeral deliveries between nodes for the plain-WebSocket and SSE
//! sessions ([`super::local`]). socket.io sockets are reached on every node
//! by socketioxide's Redis adapter; these sessions have no adapter, so this
//! node's deliveries are also published on one Redis channel
//! (`{REDIS_PREFIX}#local`) when another node has such sessions in the
//! delivery's room ([`super::interest`], announced on the same channel), and
//! every other node hands what it receives to its own [`LocalRooms`].
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

use super::interest::{self, Announcement, Remote};
use super::local::LocalRooms;
use crate::catalog::RoleSet;
use crate::cluster::{builder, probe, subscriber_builder};
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

/// What travels on the channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Msg {
    Delivery(Wire),
    Interest(Announcement),
    /// A node started or reconnected: everyone announces its whole set.
    Hello {
        node: String,
    },
}

/// This node's local hub, plus the announcement to the other nodes.
pub struct Relay {
    local: Arc<LocalRooms>,
    remote: Arc<Remote>,
    node: String,
    queue: mpsc::Sender<Msg>,
}

impl Relay {
    fn send(&self, wire: Wire) {
        if !self.remote.wants(&wire.company, &wire.room) {
            return;
        }
        if self.queue.try_send(Msg::Delivery(wire)).is_err() {
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
    let client = builder(url)?.build()?;
    client
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let remote = Arc::new(Remote::default());
    let listener = Listener {
        own: node.clone(),
        local: local.clone(),
        remote: remote.clone(),
        queue: tx.clone(),
    };
    tasks.spawn(listener.run(
        subscriber.message_rx(),
        subscriber.reconnect_rx(),
        subscriber,
    ));
    tasks.spawn(drain(client, channel, rx));
    let _ = tx.try_send(Msg::Hello { node: node.clone() });
    let announce = tx.clone();
    tasks.spawn(interest::announce_forever(
        local.clone(),
        remote.clone(),
        node.clone(),
        move |a| announce.try_send(Msg::Interest(a)).is_ok(),
    ));
    Ok(Relay {
        local,
        remote,
        node,
        queue: tx,
    })
}

/// Publishes queued messages in order.
async fn drain(client: Client, channel: String, mut queue: mpsc::Receiver<Msg>) {
    while let Some(msg) = queue.recv().await {
        let Ok(text) = serde_json::to_string(&msg) else {
            continue;
        };
        if let Err(e) = client.publish::<i64, _, _>(&channel, text).await {
            crate::metrics::redis_error();
            if matches!(msg, Msg::Delivery(_)) {
                crate::metrics::dropped_ephemeral(1);
            }
            tracing::debug!(error = %e, "relay publish failed; the ephemeral event is lost for other nodes");
        }
    }
}

/// Hands other nodes' deliveries to this node's sessions and keeps track
/// of which rooms they want.
struct Listener {
    own: String,
    local: Arc<LocalRooms>,
    remote: Arc<Remote>,
    queue: mpsc::Sender<Msg>,
}

impl Listener {
    async fn run(
        self,
        mut messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
        mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
        _subscriber: fred::clients::SubscriberClient,
    ) {
        loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Ok(msg) => {
                        let Some(text) = msg.value.as_str() else { continue };
                        match serde_json::from_str::<Msg>(&text) {
                            Ok(m) => self.handle(m),
                            Err(e) => tracing::warn!(error = %e, "unreadable relay message"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        crate::metrics::dropped_ephemeral(n);
                        self.remote.full_wanted.notify_one();
                    }
                    Err(_) => return,
                },
                r = reconnects.recv() => {
                    // Lagged: several reconnects at once, still a reconnect.
                    if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { return; }
                    // Announcements may have been missed both ways.
                    let _ = self.queue.try_send(Msg::Hello { node: self.own.clone() });
                    self.remote.full_wanted.notify_one();
                }
            }
        }
    }

    fn handle(&self, msg: Msg) {
        match msg {
            Msg::Delivery(w) if w.node == self.own => {}
            Msg::Delivery(w) => match (w.meta, w.receive) {
                (Some(meta), Some(receive)) => self.local.deliver(&Delivery {
                    company: w.company,
                    room: w.room,
                    event_type: w.event,
                    payload: w.payload,
                    meta,
                    receive: RoleSet::from_bits(receive),
                    exclude: w.exclude,
                }),
                _ => self
                    .local
                    .signal(&w.company, &w.room, &w.event, &w.payload, w.exclude),
            },
            Msg::Interest(a) if a.node == self.own => {}
            Msg::Interest(a) => self.remote.apply(a),
            Msg::Hello { node } if node == self.own => {}
            Msg::Hello { .. } => self.remote.full_wanted.notify_one(),
        }
    }
}
