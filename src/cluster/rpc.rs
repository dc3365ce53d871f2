//! Ask every node, over Redis, and know who did not answer: the admin API's
//! cluster-wide view ([`crate::admin`]) without socketioxide's
//! `fetch_sockets`, which returns partial results silently on a timeout.
//!
//! - **Who the nodes are.** Each node writes its name with the current time
//!   into one sorted set (`{prefix}#nodes`) every [`HEARTBEAT_EVERY`]; a
//!   node whose entry is older than the stale window (`WS_PRESENCE_TTL`,
//!   when presence also calls a node dead) is forgotten, and a node that
//!   shuts down removes itself. So a node that stopped (crashed, paused,
//!   cut off) stays *known* for that window, and every question asked
//!   meanwhile names it in `incomplete`.
//! - **Asking.** A request goes out on one channel (`{prefix}#rpc`); every
//!   other node answers from its own memory ([`Responder`]) on the same
//!   channel, tagged with the request id; the asking node answers for itself
//!   directly. The asker waits until every known node answered or the
//!   deadline passed, whichever is first. A question read after its
//!   deadline is dropped, not answered or acted on. (Deadlines are wall
//!   clock: a node whose clock runs ahead of the asker's by more than the
//!   wait drops every question, and is named in `incomplete` every time.)
//! - **Names.** Nodes are addressed by `NODE_ID`, so a node restarted under
//!   the same name is the same node; two live processes sharing one are
//!   detected (a question under our name that we did not ask) and logged as
//!   an error.
//! - **Redis away.** The asker answers for itself and names every node it
//!   last knew in `incomplete`: never a silently partial answer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{builder, probe, subscriber_builder};
use crate::config::Config;
use crate::tasks::Tasks;

/// How often a node refreshes its entry in the node set.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Answers a question from this node's memory (no I/O: quick and bounded).
pub trait Responder: Send + Sync + 'static {
    fn answer(&self, kind: &str, body: &Value) -> Value;
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Message {
    Request {
        id: String,
        from: String,
        kind: String,
        body: Value,
        /// Ms since the epoch after which the asker no longer waits: a node
        /// that reads the question later (it was paused or cut off) drops
        /// it, so a kick reported as not done is never done behind the
        /// admin's back.
        deadline: i64,
    },
    Reply {
        id: String,
        to: String,
        node: String,
        body: Value,
    },
}

/// Every node's answer, and the known nodes that gave none in time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    /// `(node, answer)`, this node's first.
    pub answers: Vec<(String, Value)>,
    /// Known nodes without an answer, sorted.
    pub incomplete: Vec<String>,
}

/// The known nodes that did not answer (pure).
pub fn missing(known: &BTreeSet<String>, answered: &[(String, Value)]) -> Vec<String> {
    known
        .iter()
        .filter(|n| !answered.iter().any(|(a, _)| a == *n))
        .cloned()
        .collect()
}

/// The asking side, and this node's entry in the node set.
pub struct Rpc {
    node: String,
    client: Client,
    channel: String,
    nodes_key: String,
    stale: Duration,
    responder: Arc<dyn Responder>,
    // std Mutex: one map operation at a time, never across an await.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<(String, Value)>>>,
    /// The node set as last read, for when Redis does not answer.
    last_known: Mutex<BTreeSet<String>>,
    /// Set once another process was seen asking under our name.
    duplicate_warned: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> f64 {
    crate::domain::now_ms() as f64
}

impl Rpc {
    /// Subscribes, registers this node, and starts its listener and heartbeat.
    pub async fn start(
        config: &Config,
        node: String,
        stale: Duration,
        responder: Arc<dyn Responder>,
        tasks: &Tasks,
    ) -> anyhow::Result<Arc<Self>> {
        let url = config
            .redis_url
            .as_ref()
            .map(crate::secret::SecretUrl::expose)
            .ok_or_else(|| anyhow::anyhow!("REDIS_URL is not set"))?;
        let channel = format!("{}#rpc", config.redis_prefix);
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
        let rpc = Arc::new(Self {
            node,
            client,
            channel,
            nodes_key: format!("{}#nodes", config.redis_prefix),
            stale,
            responder,
            pending: Mutex::new(HashMap::new()),
            last_known: Mutex::new(BTreeSet::new()),
            duplicate_warned: std::sync::atomic::AtomicBool::new(false),
        });
        rpc.beat().await;
        let messages = subscriber.message_rx();
        tasks.spawn(listen(rpc.clone(), messages, subscriber));
        let heartbeat = rpc.clone();
        let token = tasks.child_token();
        tasks.spawn_until_done(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => heartbeat.beat().await,
                    _ = token.cancelled() => break,
                }
            }
            heartbeat.leave().await;
        });
        Ok(rpc)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    async fn beat(&self) {
        let now = now_ms();
        let r: Result<(), Error> = async {
            self.client
                .zadd::<(), _, _>(
                    &self.nodes_key,
                    None,
                    None,
                    false,
                    false,
                    (now, self.node.as_str()),
                )
                .await?;
            let before = now - self.stale.as_millis() as f64;
            self.client
                .zremrangebyscore::<(), _, _, _>(&self.nodes_key, f64::NEG_INFINITY, before)
                .await
        }
        .await;
        if let Err(e) = r {
            // At warn: until a beat lands, the other nodes' admin answers
            // cannot name this node when it goes silent.
            tracing::warn!(error = %e, "rpc: node heartbeat failed");
        }
    }

    /// Removes this node from the node set (shutdown): it is gone, not silent.
    async fn leave(&self) {
        let _ = self
            .client
            .zrem::<(), _, _>(&self.nodes_key, self.node.as_str())
            .await;
    }

    /// The nodes whose heartbeat is within the stale window (falls back to
    /// the last known set when Redis does not answer).
    pub async fn known(&self) -> BTreeSet<String> {
        let since = now_ms() - self.stale.as_millis() as f64;
        let read: Result<Vec<String>, Error> = self
            .client
            .zrangebyscore(&self.nodes_key, since, f64::INFINITY, false, None)
            .await;
        match read {
            Ok(nodes) => {
                let nodes: BTreeSet<String> = nodes.into_iter().collect();
                *lock(&self.last_known) = nodes.clone();
                nodes
            }
            Err(e) => {
                tracing::warn!(error = %e, "rpc: cannot read the node set; using the last one");
                lock(&self.last_known).clone()
            }
        }
    }

    /// Asks every node `kind` with `body`; waits at most `wait`.
    pub async fn ask(&self, kind: &str, body: Value, wait: Duration) -> Gathered {
        let mut known = self.known().await;
        known.insert(self.node.clone());
        let mut answers = vec![(self.node.clone(), self.responder.answer(kind, &body))];
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(id.clone(), tx);
        let request = Message::Request {
            id: id.clone(),
            from: self.node.clone(),
            kind: kind.to_string(),
            body,
            deadline: crate::domain::now_ms() + wait.as_millis() as i64,
        };
        let sent = match serde_json::to_string(&request) {
            Ok(text) => self
                .client
                .publish::<i64, _, _>(&self.channel, text)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "rpc: cannot ask the other nodes");
        } else {
            let deadline = tokio::time::Instant::now() + wait;
            while !missing(&known, &answers).is_empty() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((node, answer))) => {
                        if !answers.iter().any(|(n, _)| *n == node) {
                            // A node that answers is known, even if its
                            // heartbeat has not been read yet.
                            known.insert(node.clone());
                            answers.push((node, answer));
                        }
                    }
                    _ => break,
                }
            }
        }
        lock(&self.pending).remove(&id);
        let incomplete = missing(&known, &answers);
        Gathered {
            answers,
            incomplete,
        }
    }

    async fn on_message(&self, text: &str) {
        match serde_json::from_str::<Message>(text) {
            Ok(Message::Request {
                id,
                from,
                kind,
                body,
                deadline,
            }) if from != self.node => {
                if crate::domain::now_ms() > deadline {
                    tracing::info!(%kind, "rpc: question arrived after its deadline; dropped");
                    return;
                }
                let reply = Message::Reply {
                    id,
                    to: from,
                    node: self.node.clone(),
                    body: self.responder.answer(&kind, &body),
                };
                if let Ok(text) = serde_json::to_string(&reply)
                    && let Err(e) = self.client.publish::<i64, _, _>(&self.channel, text).await
                {
                    tracing::warn!(error = %e, "rpc: cannot answer");
                }
            }
            Ok(Message::Request { id, from, .. })
                if from == self.node && !lock(&self.pending).contains_key(&id) =>
            {
                // Nodes are addressed by NODE_ID: two processes sharing one
                // would each ignore the other's questions and answers.
                if !self
                    .duplicate_warned
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::error!(
                        node = %self.node,
                        "another process uses this NODE_ID: admin answers will miss one of them; give every node its own NODE_ID"
                    );
                }
            }
            Ok(Message::Reply { id, to, node, body }) if to == self.node => {
                if let Some(tx) = lock(&self.pending).get(&id) {
                    let _ = tx.send((node, body));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rpc: unreadable message"),
        }
    }
}

async fn listen(
    rpc: Arc<Rpc>,
    mut messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    _subscriber: fred::clients::SubscriberClient,
) {
    loop {
        match messages.recv().await {
            Ok(msg) => {
                let Some(text) = msg.value.as_str() else {
                    continue;
                };
                rpc.on_message(&text).await;
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    lost = n,
                    "rpc: listener lagged; some questions go unanswered"
                );
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_names_known_nodes_without_an_answer() {
        let known: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let answered = vec![("a".to_string(), json!(1)), ("c".to_string(), json!(2))];
        assert_eq!(missing(&known, &answered), vec!["b".to_string()]);
        assert!(missing(&BTreeSet::new(), &answered).is_empty());
    }

    #[test]
    fn messages_round_trip() {
        let m = Message::Reply {
            id: "1".into(),
            to: "a".into(),
            node: "b".into(),
            body: json!({"x": 1}),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""t":"reply""#));
        assert!(matches!(
            serde_json::from_str::<Message>(&text).unwrap(),
            Message::Reply { .. }
        ));
    }
}
