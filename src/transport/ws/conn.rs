//! A plain-WebSocket connection's life: the token (query, header, or a
//! first `auth` message within [`AUTH_WAIT`]), the checks socket.io's
//! connect middleware makes, the session, then requests read in order
//! onto the session's queue while [`super::writer`] writes, until the
//! client leaves, the heartbeat fails or the session is closed.
//!
//! Refusals: a JSON `{ type: "error", error: { code, message } }`, then a
//! close frame with [`Code::close_code`] (4401 for tokens, 4403, 4429 for
//! limits, 4503 while shutting down). Bad input (not JSON, unknown verb,
//! over `WS_MAX_PAYLOAD`, binary) is answered and the connection kept; a
//! frame over the engine limit (twice `WS_MAX_PAYLOAD`) closes it (1009).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::TRANSPORT;
use super::request::{self, Call, Inbound, Key};
use super::writer::{Shared, Writer, proof_window};
use crate::domain::Identity;
use crate::error::{AppError, Code};
use crate::session::Session;
use crate::transport::outbox::Outbox;
use crate::transport::plain::{self, Open, Params, Plain};

/// How long a connection without a token may take to send `auth`.
pub const AUTH_WAIT: Duration = Duration::from_secs(10);
/// How often the reader checks the heartbeat.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A connection from `ip` still waiting for its `auth` message: counted
/// against `WS_MAX_PENDING_PER_IP` until dropped.
pub struct Waiting {
    plain: Plain,
    ip: Option<IpAddr>,
}

impl Waiting {
    pub fn take(plain: &Plain, ip: Option<IpAddr>) -> Option<Waiting> {
        let max = plain.state.config.max_pending_per_ip;
        plain.pending.admit(ip, 0, None, Some(max)).ok()?;
        Some(Waiting {
            plain: plain.clone(),
            ip,
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.plain.pending.release(self.ip);
    }
}

/// What the upgrade handler knows.
pub struct Start {
    pub plain: Plain,
    pub params: Params,
    pub token: Option<String>,
    pub ip: Option<IpAddr>,
    pub waiting: Option<Waiting>,
}

pub async fn run(mut ws: WebSocket, start: Start) {
    let Start {
        plain,
        params,
        token,
        ip,
        waiting,
    } = start;
    match authenticate(&mut ws, &plain, token, ip, waiting).await {
        Ok((identity, auth)) => serve(ws, &plain, params, ip, identity, auth).await,
        Err((key, request_id, e)) => refuse(ws, key, request_id, e).await,
    }
}

/// A refusal, with what is known of the request that carried the token.
type Refusal = (Key, Option<Value>, AppError);

/// The token (given, or from the first message) and the connect checks.
async fn authenticate(
    ws: &mut WebSocket,
    plain: &Plain,
    token: Option<String>,
    ip: Option<IpAddr>,
    waiting: Option<Waiting>,
) -> Result<(Identity, Option<Inbound>), Refusal> {
    let (token, auth) = match token {
        Some(t) => (t, None),
        None => {
            let (t, inb) = first_auth(ws).await?;
            (t, Some(inb))
        }
    };
    drop(waiting);
    match plain::admit(plain, Some(&token), ip) {
        Ok(identity) => Ok((identity, auth)),
        Err(e) => {
            let (key, id) = auth.map_or((Key::Type, None), |a| (a.key, a.request_id));
            Err((key, id, e))
        }
    }
}

/// The session's life once admitted: writer and reader until either ends.
async fn serve(
    ws: WebSocket,
    plain: &Plain,
    params: Params,
    ip: Option<IpAddr>,
    identity: Identity,
    auth: Option<Inbound>,
) {
    let config = &plain.state.config;
    let first = auth.map(|inb| {
        let ok = json!({ "ok": true, "userId": identity.user_id, "companyId": identity.company_id,
            "role": identity.role, "expiresAt": identity.expires_at_ms() });
        request::answer(&inb, Map::new(), Ok(ok))
    });
    let resume = plain::resume(plain, &identity, params.offsets.as_ref());
    let (session, outbox, rx) = plain::open(
        plain,
        Open {
            transport: TRANSPORT,
            identity,
            ip,
            device_id: params.device_id,
            format: params.format,
            window: proof_window(config.ping_interval, config.ping_timeout),
            resume,
            first,
        },
    );
    let shared = Shared::new(outbox.clone());
    let (tx, rx_ws) = ws.split();
    let writer = Writer {
        tx,
        rx,
        shared: shared.clone(),
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        batch: params.batch,
        tasks: plain.state.tasks.clone(),
    };
    let reader = Reader {
        plain: plain.clone(),
        session: session.clone(),
        outbox,
        shared,
    };
    let ((), reason) = tokio::join!(writer.run(), reader.run(rx_ws));
    plain::close(plain, &session, reason).await;
}

/// Waits for `{ type|action: "auth", token }`.
async fn first_auth(ws: &mut WebSocket) -> Result<(String, Inbound), Refusal> {
    let missing = || {
        AppError::new(
            Code::Unauthorized,
            "no token: pass ?token=, an Authorization: Bearer header, or send \
             {\"type\": \"auth\", \"token\": ...} first (within 10 s)",
        )
    };
    let deadline = tokio::time::Instant::now() + AUTH_WAIT;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.recv()).await {
            Ok(Some(Ok(msg))) => msg,
            _ => return Err((Key::Type, None, missing())),
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => return Err((Key::Type, None, missing())),
        };
        let inb = request::read(&text).map_err(|u| (u.key, u.request_id, missing()))?;
        return match request::route(&inb) {
            Ok(Call::Auth(token)) => Ok((token, inb)),
            _ => Err((inb.key, inb.request_id, missing())),
        };
    }
}

/// The final JSON error and the close frame of a refused connection.
async fn refuse(mut ws: WebSocket, key: Key, request_id: Option<Value>, e: AppError) {
    plain::refused(&e);
    let text = request::refusal(key, request_id, &e).to_string();
    let _ = ws.send(Message::Text(text.into())).await;
    let frame = CloseFrame {
        code: e.code.close_code(),
        reason: e.code.as_str().into(),
    };
    let _ = ws.send(Message::Close(Some(frame))).await;
}

struct Reader {
    plain: Plain,
    session: Arc<Session>,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
}

impl Reader {
    /// Reads until the connection ends; returns why.
    async fn run(self, mut rx: futures::stream::SplitStream<WebSocket>) -> &'static str {
        let timeout = self.plain.state.config.ping_timeout;
        let mut check = tokio::time::interval(CHECK_EVERY);
        let reason = loop {
            let msg = tokio::select! {
                _ = self.shared.end().cancelled() => break "closed by the server",
                _ = self.session.closed.cancelled() => break "session closed",
                _ = check.tick() => {
                    if self.shared.is_dead(timeout) {
                        // Frames were waiting: a reader too slow to keep up,
                        // not only a silent one.
                        if self.outbox.backlog() > 0 {
                            tracing::warn!(session = %self.session.id, "slow consumer: no pong with frames waiting, disconnecting (its durable events will be replayed)");
                            crate::metrics::slow_consumer_disconnect();
                        }
                        break "ping timeout";
                    }
                    continue;
                }
                msg = rx.next() => msg,
            };
            match msg {
                None | Some(Ok(Message::Close(_))) => break "client closed",
                Some(Err(e)) => {
                    // tungstenite's capacity error (`Space limit exceeded:
                    // Message too long`); axum does not expose its type.
                    let text = e.to_string().to_ascii_lowercase();
                    let over = text.contains("space limit") || text.contains("too long");
                    if over {
                        self.shared.finish(1009, "frame over the engine limit");
                        break "frame over the engine limit";
                    }
                    // Not WebSocket (bad UTF-8, unmasked or malformed frames).
                    self.shared.finish(1002, "protocol error");
                    break "transport error";
                }
                Some(Ok(Message::Text(text))) => self.text(&text),
                Some(Ok(Message::Binary(_))) => self.refuse(
                    Key::Type,
                    None,
                    AppError::new(
                        Code::ValidationFailed,
                        "binary frames are not accepted; send JSON text",
                    ),
                ),
                Some(Ok(Message::Pong(_))) => self.shared.pong(),
                Some(Ok(Message::Ping(_))) => {}
            }
        };
        self.shared.end().cancel();
        reason
    }

    fn refuse(&self, key: Key, request_id: Option<Value>, e: AppError) {
        crate::metrics::refused(e.code.as_str());
        let _ = self.outbox.send(request::refusal(key, request_id, &e));
    }

    fn answer(&self, inb: &Inbound, e: AppError) {
        crate::metrics::refused(e.code.as_str());
        let _ = self.outbox.send(request::answer(inb, Map::new(), Err(e)));
    }

    /// One request: size, shape, rate, then a job on the session's queue.
    fn text(&self, text: &str) {
        let state = &self.plain.state;
        let max = state.config.max_payload;
        if text.len() > max {
            let e = AppError::new(
                Code::PayloadTooLarge,
                format!("message is {} bytes; the limit is {max}", text.len()),
            );
            return self.refuse(Key::Type, None, e);
        }
        // Every frame draws from the rate buckets, readable or not.
        let read = request::read(text);
        if let Err(refusal) = self.session.admit() {
            crate::metrics::rate_limited();
            let e = AppError::new(
                Code::RateLimited,
                "too many requests on this connection; slow down",
            );
            match &read {
                Ok(inb) => self.answer(inb, e),
                Err(u) => self.refuse(u.key, u.request_id.clone(), e),
            }
            if refusal.abusive {
                tracing::warn!(session = %self.session.id, "sustained rate-limit abuse: disconnecting");
                self.shared
                    .finish(Code::RateLimited.close_code(), "rate limit abuse");
            }
            return;
        }
        let inb = match read {
            Ok(inb) => inb,
            Err(u) => return self.refuse(u.key, u.request_id, u.error),
        };
        crate::metrics::message(crate::api::alias_label(&inb.name), "in");
        let (verb, body, echo) = match request::route(&inb) {
            Ok(Call::Api { verb, body, echo }) => (verb, body, echo),
            Ok(Call::Auth(token)) => (
                crate::api::Verb::AuthRefresh,
                json!({ "token": token }),
                Map::new(),
            ),
            Err(e) => return self.answer(&inb, e),
        };
        let Some(slot) = self.session.reserve() else {
            let e = AppError::new(
                Code::RateLimited,
                "too many requests waiting on this connection; slow down",
            );
            return self.answer(&inb, e);
        };
        let (state, session, outbox) = (state.clone(), self.session.clone(), self.outbox.clone());
        // One request at a time, durable publishes included (no pipelining
        // as on socket.io): answers go out in request order, and clients
        // of this transport may match them by order (`requestId` is
        // optional).
        slot.send(Box::pin(async move {
            let result = crate::api::call_verb(&state, &session, verb, body).await;
            let _ = outbox.send(request::answer(&inb, echo, result.map(|r| r.to_value())));
        }));
    }
}
