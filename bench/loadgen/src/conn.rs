//! Dialing: a TCP connection from one of several loopback source addresses,
//! the WebSocket upgrade, Engine.IO open, Socket.IO CONNECT with an auth
//! payload, and the server's `session` event.
//!
//! Each source address (127.0.0.2, 127.0.0.3, …) has its own ephemeral port
//! range, so tens of thousands of connections (and the TIME_WAIT sockets of
//! earlier runs) never exhaust the ports of a single address.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::proto::{self, Packet};

pub type Ws = WebSocketStream<TcpStream>;

/// The server under test: an IPv4 address in 127.0.0.0/8 only.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddrV4,
}

impl Target {
    /// Accepts `http://127.0.0.1:3001` (or `ws://…`, or `host:port`).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .trim_start_matches("http://")
            .trim_start_matches("ws://")
            .trim_end_matches('/');
        let addr: SocketAddrV4 = rest
            .parse()
            .with_context(|| format!("target `{url}` must be http://127.x.y.z:port"))?;
        if !addr.ip().is_loopback() {
            bail!("target {addr} is outside 127.0.0.0/8; the load generator only targets loopback");
        }
        Ok(Self { addr })
    }

    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/socket.io/?EIO=4&transport=websocket", self.addr)
    }
}

/// Source addresses handed out round-robin.
pub struct Sources {
    addrs: Vec<Ipv4Addr>,
    next: Cell<usize>,
}

impl Sources {
    /// `count` addresses starting at 127.0.0.2 (127.0.0.1 is left to the server).
    pub fn new(count: u16) -> Self {
        let addrs = (0..count.max(1))
            .map(|i| {
                let n = u32::from(Ipv4Addr::new(127, 0, 0, 2)) + u32::from(i);
                Ipv4Addr::from(n)
            })
            .collect();
        Self {
            addrs,
            next: Cell::new(0),
        }
    }

    fn next(&self) -> Ipv4Addr {
        let i = self.next.get();
        self.next.set((i + 1) % self.addrs.len());
        self.addrs[i]
    }
}

/// Why a connection did not reach `session`.
#[derive(Debug)]
pub enum ConnError {
    Tcp(std::io::Error),
    Handshake(String),
    /// CONNECT_ERROR from the server, with its message.
    Refused(String),
    Protocol(String),
    Closed,
    Timeout,
}

impl ConnError {
    pub fn kind(&self) -> &'static str {
        match self {
            ConnError::Tcp(_) => "tcp",
            ConnError::Handshake(_) => "handshake",
            ConnError::Refused(_) => "refused",
            ConnError::Protocol(_) => "protocol",
            ConnError::Closed => "closed",
            ConnError::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Tcp(e) => write!(f, "tcp: {e}"),
            ConnError::Handshake(e) => write!(f, "websocket handshake: {e}"),
            ConnError::Refused(m) => write!(f, "refused: {m}"),
            ConnError::Protocol(m) => write!(f, "protocol: {m}"),
            ConnError::Closed => write!(f, "connection closed"),
            ConnError::Timeout => write!(f, "timed out"),
        }
    }
}

/// A connected, authenticated socket.
pub struct Conn {
    pub ws: Ws,
    /// The `session` event's payload.
    pub session: Value,
    /// Event bodies received between CONNECT and `session` (replayed events).
    pub before_session: Vec<String>,
}

pub struct Dialer {
    pub target: Target,
    sources: Sources,
    config: WebSocketConfig,
    pub timeout: Duration,
}

impl Dialer {
    /// `read_buffer` is tungstenite's per-connection read buffer: small for
    /// many idle connections, larger for few busy ones.
    pub fn new(target: Target, sources: u16, read_buffer: usize, timeout: Duration) -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(0);
        Self {
            target,
            sources: Sources::new(sources),
            config,
            timeout,
        }
    }

    /// Connects and authenticates; resolves once `session` has arrived.
    pub async fn open(&self, auth: &Value) -> Result<Conn, ConnError> {
        match tokio::time::timeout(self.timeout, self.open_inner(auth)).await {
            Ok(r) => r,
            Err(_) => Err(ConnError::Timeout),
        }
    }

    async fn open_inner(&self, auth: &Value) -> Result<Conn, ConnError> {
        let socket = TcpSocket::new_v4().map_err(ConnError::Tcp)?;
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(self.sources.next(), 0)))
            .map_err(ConnError::Tcp)?;
        let tcp = socket
            .connect(SocketAddr::V4(self.target.addr))
            .await
            .map_err(ConnError::Tcp)?;
        tcp.set_nodelay(true).map_err(ConnError::Tcp)?;
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(
            self.target.ws_url(),
            tcp,
            Some(self.config),
        )
        .await
        .map_err(|e| ConnError::Handshake(e.to_string()))?;
        match next_text(&mut ws).await? {
            t if matches!(proto::parse(&t), Packet::Open(_)) => {}
            t => return Err(ConnError::Protocol(format!("expected OPEN, got {t:.80}"))),
        }
        send(&mut ws, proto::connect(auth)).await?;
        loop {
            let t = next_text(&mut ws).await?;
            match proto::parse(&t) {
                Packet::Connect(_) => break,
                Packet::ConnectError(body) => {
                    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                    let msg = v["message"].as_str().unwrap_or(body);
                    return Err(ConnError::Refused(msg.to_string()));
                }
                Packet::Noop | Packet::Pong => {}
                _ => {
                    return Err(ConnError::Protocol(format!(
                        "expected CONNECT, got {t:.80}"
                    )));
                }
            }
        }
        let mut before_session = Vec::new();
        loop {
            let t = next_text(&mut ws).await?;
            match proto::parse(&t) {
                Packet::Event { body, .. } if proto::event_name(body) == Some("session") => {
                    let session = proto::event_args(body)
                        .and_then(|(_, mut args)| (!args.is_empty()).then(|| args.swap_remove(0)))
                        .unwrap_or(Value::Null);
                    return Ok(Conn {
                        ws,
                        session,
                        before_session,
                    });
                }
                Packet::Event { body, .. } => before_session.push(body.to_string()),
                Packet::Disconnect | Packet::Close => return Err(ConnError::Closed),
                _ => {}
            }
        }
    }
}

pub async fn send(ws: &mut Ws, text: String) -> Result<(), ConnError> {
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| ConnError::Protocol(format!("send: {e}")))
}

/// The next text frame that is not an Engine.IO ping (pings are answered).
pub async fn next_text(ws: &mut Ws) -> Result<String, ConnError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if t.as_str() == "2" {
                    send(ws, "3".into()).await?;
                    continue;
                }
                return Ok(t.as_str().to_owned());
            }
            Some(Ok(Message::Close(_))) | None => return Err(ConnError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ConnError::Protocol(e.to_string())),
        }
    }
}

/// Sends `event` with ack id `id` and waits for that ack (other frames are
/// passed to `other`). Returns the ack's first argument.
pub async fn call(
    ws: &mut Ws,
    event: &str,
    data: Option<&Value>,
    id: u64,
    mut other: impl FnMut(&str),
) -> Result<Value, ConnError> {
    send(ws, proto::event(event, data, Some(id))).await?;
    loop {
        let t = next_text(ws).await?;
        match proto::parse(&t) {
            Packet::Ack { id: got, body } if got == id => return Ok(proto::ack_value(body)),
            Packet::Disconnect | Packet::Close => return Err(ConnError::Closed),
            _ => other(&t),
        }
    }
}

/// Keeps a connection alive (answering pings) until `stop` flips; returns
/// false when the server closed it first.
pub async fn hold(mut ws: Ws, mut stop: tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            r = next_text(&mut ws) => match r {
                Ok(t) if matches!(proto::parse(&t), Packet::Disconnect | Packet::Close) => return false,
                Ok(_) => {}
                Err(_) => return false,
            },
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return true;
            }
        }
    }
}

/// Socket.IO DISCONNECT, then a WebSocket close: the server runs its
/// disconnect handler at once.
pub async fn leave(mut ws: Ws) {
    let _ = send(&mut ws, "41".into()).await;
    let _ = ws.close(None).await;
}
