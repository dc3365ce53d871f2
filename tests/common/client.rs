//! A minimal Socket.IO v5 client over a raw WebSocket (EIO=4).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub struct Client {
    out: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedReceiver<(String, Vec<Value>)>,
    acks: mpsc::UnboundedReceiver<(u64, Value)>,
    next_ack: u64,
    early_acks: std::collections::HashMap<u64, Value>,
    pub sid: Option<String>,
}

#[derive(Debug)]
pub enum ConnectError {
    /// CONNECT_ERROR with its message.
    Refused(String),
    Io(String),
}

impl Client {
    /// Connects and sends CONNECT with `auth`; resolves on CONNECT or CONNECT_ERROR.
    pub async fn connect(base: &str, query: &str, auth: Value) -> Result<Client, ConnectError> {
        Self::connect_with_headers(base, query, auth, &[]).await
    }

    /// [`Client::connect`] with extra handshake headers (e.g. `X-Forwarded-For`).
    pub async fn connect_with_headers(
        base: &str,
        query: &str,
        auth: Value,
        headers: &[(&str, &str)],
    ) -> Result<Client, ConnectError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket{query}",
            base.replacen("http", "ws", 1)
        );
        let mut request = url
            .into_client_request()
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ConnectError::Io(e.to_string()))?;
            let value =
                http::HeaderValue::from_str(value).map_err(|e| ConnectError::Io(e.to_string()))?;
            request.headers_mut().append(name, value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (conn_tx, mut conn_rx) = mpsc::unbounded_channel::<Result<String, String>>();
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        });
        let pong = out_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let text = text.as_str();
                if text == "2" {
                    let _ = pong.send("3".into());
                } else if let Some(rest) = text.strip_prefix("40") {
                    let sid = serde_json::from_str::<Value>(rest)
                        .ok()
                        .and_then(|v| v["sid"].as_str().map(String::from));
                    let _ = conn_tx.send(Ok(sid.unwrap_or_default()));
                } else if let Some(rest) = text.strip_prefix("44") {
                    let msg = serde_json::from_str::<Value>(rest)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(String::from));
                    let _ = conn_tx.send(Err(msg.unwrap_or_default()));
                } else if text == "41" {
                    let _ = ev_tx.send(("__disconnect".into(), vec![]));
                } else if let Some(rest) = text.strip_prefix("42") {
                    if let Ok(Value::Array(mut arr)) = serde_json::from_str::<Value>(rest)
                        && !arr.is_empty()
                    {
                        let name = arr.remove(0).as_str().unwrap_or_default().to_string();
                        let _ = ev_tx.send((name, arr));
                    }
                } else if let Some(rest) = text.strip_prefix("43") {
                    let split = rest.find('[').unwrap_or(rest.len());
                    if let (Ok(id), Ok(Value::Array(mut arr))) = (
                        rest[..split].parse::<u64>(),
                        serde_json::from_str::<Value>(&rest[split..]),
                    ) {
                        let _ = ack_tx.send((
                            id,
                            if arr.is_empty() {
                                Value::Null
                            } else {
                                arr.remove(0)
                            },
                        ));
                    }
                }
            }
            // The transport closed: tests tell a plain close (clients
            // reconnect) from a DISCONNECT packet (they do not).
            let _ = ev_tx.send(("__closed".into(), vec![]));
        });
        out_tx
            .send(format!("40{auth}"))
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(5), conn_rx.recv()).await {
            Ok(Some(Ok(sid))) => Ok(Client {
                out: out_tx,
                events,
                acks,
                next_ack: 0,
                early_acks: Default::default(),
                sid: Some(sid),
            }),
            Ok(Some(Err(message))) => Err(ConnectError::Refused(message)),
            _ => Err(ConnectError::Io("no CONNECT answer".into())),
        }
    }

    pub async fn with_token(base: &str, token: &str) -> Client {
        match Self::connect(base, "", json!({ "token": token })).await {
            Ok(c) => c,
            Err(e) => panic!("connect failed: {e:?}"),
        }
    }

    /// Emits without waiting; returns the ack id.
    pub fn emit_ack_id(&mut self, event: &str, data: Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        let _ = self.out.send(format!("42{id}{}", json!([event, data])));
        id
    }

    pub fn emit(&self, event: &str, data: Value) {
        let _ = self.out.send(format!("42{}", json!([event, data])));
    }

    /// Socket.IO DISCONNECT: the server runs its disconnect handler.
    pub fn disconnect(&self) {
        let _ = self.out.send("41".into());
    }

    pub fn send_raw(&self, text: &str) {
        let _ = self.out.send(text.to_string());
    }

    pub async fn emit_with_ack(&mut self, event: &str, data: Value) -> Value {
        let id = self.emit_ack_id(event, data);
        self.ack(id).await
    }

    /// The ack with this id; acks may arrive in any order (refusals such as
    /// RATE_LIMITED are answered before queued events).
    pub async fn ack(&mut self, id: u64) -> Value {
        if let Some(v) = self.early_acks.remove(&id) {
            return v;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.acks.recv()).await {
                Ok(Some((got, v))) if got == id => return v,
                Ok(Some((got, v))) => {
                    self.early_acks.insert(got, v);
                }
                _ => panic!("no ack {id}"),
            }
        }
    }

    /// Next event with this name (other events are dropped).
    pub async fn expect(&mut self, name: &str) -> Vec<Value> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.events.recv()).await {
                Ok(Some((n, args))) if n == name => return args,
                Ok(Some(_)) => continue,
                _ => panic!("no `{name}` event"),
            }
        }
    }

    /// The next event, whatever its name.
    pub async fn next_event(&mut self) -> (String, Vec<Value>) {
        match tokio::time::timeout(Duration::from_secs(10), self.events.recv()).await {
            Ok(Some(ev)) => ev,
            _ => panic!("no event"),
        }
    }

    /// Every event received within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<(String, Vec<Value>)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(ev);
        }
        out
    }
}
