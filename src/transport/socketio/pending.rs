//! Engine.IO sessions before their CONNECT is accepted ("pending"), which
//! socketioxide lets anyone open: a tower layer in front of the Socket.IO
//! service counts them per client address (`crate::client_ip`: behind
//! `TRUSTED_PROXIES`, the forwarded one) and refuses handshakes beyond
//! `WS_MAX_PENDING_PER_IP` (or `WS_MAX_CONNECTIONS_PER_IP`, if lower) with
//! 429, and closes sessions whose CONNECT was refused.
//!
//! The count is held by a [`Pending`] value put in the handshake request's
//! extensions: engineioxide keeps those request parts for the session's
//! life, so the slot is freed when the session is dropped, or earlier when
//! the connect middleware accepts the socket ([`Pending::authenticated`]).
//! Sessions that never CONNECT are closed by socketioxide's connect timeout
//! (`WS_CONNECT_TIMEOUT_MS`); refused ones are closed here: a WebSocket by
//! ending its TCP connection, a polling session by handing engineioxide the
//! close packet its client would send. Both wait a moment first so the
//! CONNECT_ERROR goes out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::Request;
use socketioxide::socket::Sid;
use socketioxide::{ProtocolVersion, TransportType};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::error::{AppError, Code};
use crate::server::io::ConnectionHandle;
use crate::tasks::Tasks;

/// How long a refused connection stays open for its CONNECT_ERROR to leave.
const REFUSED_CLOSE_DELAY: Duration = Duration::from_secs(1);

type Engine = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// Pending sessions per IP. A std mutex: held for one map update.
pub struct PendingSessions {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    /// Owner of the delayed closes of refused sessions.
    tasks: Tasks,
}

impl PendingSessions {
    pub fn new(max_per_ip: usize, tasks: Tasks) -> Arc<Self> {
        Arc::new(Self {
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
            tasks,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_take(&self, ip: IpAddr) -> bool {
        let mut map = self.map();
        let count = map.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut map = self.map();
        if let Some(count) = map.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// One pending session's slot (in its handshake request's extensions).
#[derive(Clone)]
pub struct Pending(Arc<Slot>);

struct Slot {
    ip: IpAddr,
    sessions: Arc<PendingSessions>,
    released: AtomicBool,
    /// The Socket.IO service, to hand it a close packet.
    engine: Engine,
    path: String,
    /// The TCP connection of a session opened directly as a WebSocket.
    websocket: Option<ConnectionHandle>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.sessions.release(self.ip);
        }
    }
}

impl Pending {
    /// The socket was accepted: it now counts as a connection, not as pending.
    pub fn authenticated(&self) {
        if !self.0.released.swap(true, Ordering::AcqRel) {
            self.0.sessions.release(self.0.ip);
        }
    }

    /// Closes a session whose CONNECT was refused, after a short delay. A
    /// session that moved from polling to WebSocket before its CONNECT is
    /// left to the connect timeout.
    pub fn close_refused(&self, sid: Sid, transport: TransportType, protocol: ProtocolVersion) {
        let pending = self.clone();
        self.0.sessions.tasks.clone().spawn(async move {
            tokio::time::sleep(REFUSED_CLOSE_DELAY).await;
            let slot = &pending.0;
            match (&slot.websocket, transport) {
                (Some(conn), _) => conn.close(),
                (None, TransportType::Polling) => {
                    let _ = slot
                        .engine
                        .clone()
                        .oneshot(close_packet(&slot.path, sid, protocol))
                        .await;
                }
                (None, TransportType::Websocket) => {}
            }
        });
    }
}

/// What a polling client sends to end its session: the engine.io `close`
/// packet (`1`; length-prefixed in engine.io v3).
fn close_packet(path: &str, sid: Sid, protocol: ProtocolVersion) -> Request<Body> {
    let (eio, body) = match protocol {
        ProtocolVersion::V4 => ("3", "1:1"),
        ProtocolVersion::V5 => ("4", "1"),
    };
    let uri = format!("{path}?EIO={eio}&transport=polling&sid={sid}");
    let mut req = Request::new(Body::from(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri.parse().unwrap_or_default();
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    req
}

/// An engine.io handshake: a GET under the Socket.IO path without a session id.
fn is_handshake(req: &Request<Body>, path: &str) -> bool {
    let query = req.uri().query().unwrap_or_default();
    req.method() == http::Method::GET
        && req.uri().path().starts_with(path)
        && query.split('&').any(|kv| kv.starts_with("EIO="))
        && !query.split('&').any(|kv| kv.starts_with("sid="))
}

#[derive(Clone)]
pub struct PendingLayer {
    sessions: Arc<PendingSessions>,
    /// The Socket.IO path, e.g. `/socket.io`.
    path: &'static str,
}

impl PendingLayer {
    pub fn new(sessions: Arc<PendingSessions>, path: &'static str) -> Self {
        Self { sessions, path }
    }
}

impl<S> Layer<S> for PendingLayer
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + Sync,
    S::Future: Send + 'static,
    S: 'static,
{
    type Service = PendingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PendingService {
            engine: BoxCloneSyncService::new(inner.clone()),
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct PendingService<S> {
    inner: S,
    engine: Engine,
    layer: PendingLayer,
}

impl<S> Service<Request<Body>> for PendingService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if is_handshake(&req, self.layer.path)
            && let Some(ip) = crate::client_ip::of(req.extensions())
        {
            if !self.layer.sessions.try_take(ip) {
                crate::metrics::refused(Code::LimitExceeded.as_str());
                let refusal = AppError::new(
                    Code::LimitExceeded,
                    format!("too many connections from {ip} waiting to authenticate; retry later"),
                );
                return Box::pin(async move { Ok(refusal.into_response()) });
            }
            let websocket = req
                .uri()
                .query()
                .unwrap_or_default()
                .contains("transport=websocket");
            let pending = Pending(Arc::new(Slot {
                ip,
                sessions: self.layer.sessions.clone(),
                released: AtomicBool::new(false),
                engine: self.engine.clone(),
                path: req.uri().path().to_string(),
                websocket: websocket
                    .then(|| req.extensions().get::<ConnectionHandle>().cloned())
                    .flatten(),
            }));
            req.extensions_mut().insert(pending);
        }
        Box::pin(self.inner.call(req))
    }
}

/// After the connect middleware refused `sid`: close its session (see the module doc).
pub fn close_refused(
    parts: &http::request::Parts,
    sid: Sid,
    transport: TransportType,
    protocol: ProtocolVersion,
) {
    if let Some(pending) = parts.extensions.get::<Pending>() {
        pending.close_refused(sid, transport, protocol);
    }
}

/// After the connect middleware accepted the socket.
pub fn authenticated(parts: &http::request::Parts) {
    if let Some(pending) = parts.extensions.get::<Pending>() {
        pending.authenticated();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_sessions_are_counted_per_ip() {
        let sessions = PendingSessions::new(2, Tasks::new());
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(sessions.try_take(a) && sessions.try_take(a));
        assert!(!sessions.try_take(a), "a third from the same address");
        assert!(sessions.try_take(b));
        sessions.release(a);
        assert!(sessions.try_take(a));
    }

    #[test]
    fn handshakes_are_gets_without_a_session_id() {
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        assert!(is_handshake(
            &get("/socket.io/?EIO=4&transport=polling"),
            "/socket.io"
        ));
        assert!(is_handshake(
            &get("/socket.io/?EIO=3&transport=websocket&token=x"),
            "/socket.io"
        ));
        assert!(!is_handshake(
            &get("/socket.io/?EIO=4&transport=polling&sid=abc"),
            "/socket.io"
        ));
        assert!(!is_handshake(&get("/health/live"), "/socket.io"));
        let post = Request::post("/socket.io/?EIO=4&transport=polling")
            .body(Body::empty())
            .unwrap();
        assert!(!is_handshake(&post, "/socket.io"));
    }

    #[test]
    fn close_packets_follow_the_protocol() {
        let sid = Sid::new();
        let v3 = close_packet("/socket.io/", sid, ProtocolVersion::V4);
        assert_eq!(
            v3.uri().query(),
            Some(format!("EIO=3&transport=polling&sid={sid}").as_str())
        );
        assert_eq!(v3.method(), http::Method::POST);
    }
}
