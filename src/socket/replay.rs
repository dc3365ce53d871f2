//! The socket side of log and replay: a socket as a [`Sink`] of durable
//! events, the offline queue on connect, `subscribe` offsets, `events:ack`,
//! and saving cursors when a socket goes away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;
use socketioxide::{SendError, SocketError};

use super::Ctx;
use super::rooms::automatic_rooms;
use super::session::Session;
use crate::domain::{Role, RoomName, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::replay::{Member, SendFail, Sink};
use crate::state::AppState;
use crate::store::CursorKey;

pub struct SocketSink<A: Adapter> {
    socket: SocketRef<A>,
    id: String,
    role: Role,
    state: AppState,
    session: std::sync::Weak<Session>,
}

fn send_fail(e: SendError) -> SendFail {
    match e {
        SendError::Socket(SocketError::InternalChannelFull) => SendFail::Full,
        _ => SendFail::Closed,
    }
}

impl<A: Adapter> Sink for SocketSink<A> {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn emit(&self, event: &str, payload: &Value, meta: &Value) -> Result<(), SendFail> {
        self.socket.emit(event, &(payload, meta)).map_err(send_fail)
    }

    fn emit_one(&self, event: &str, data: &Value) -> Result<(), SendFail> {
        self.socket.emit(event, data).map_err(send_fail)
    }

    fn overflowed(&self) {
        tracing::warn!(sid = %self.id, "slow consumer: outgoing buffer full, disconnecting (its durable events will be replayed)");
        crate::metrics::slow_consumer_disconnect();
        // With a full buffer socketioxide cannot queue the DISCONNECT packet
        // and leaves the socket open; the engine's heartbeat then closes it,
        // but socketioxide runs disconnect handlers only once the blocked
        // write returns, which for a client that stopped reading means a TCP
        // timeout. So the socket is cleaned up here and now: it leaves every
        // durable feed, stops counting, and its cursor rolls back a
        // heartbeat window, so what it did not read is replayed later.
        let _ = self.socket.clone().disconnect();
        if let Some(session) = self.session.upgrade() {
            let state = self.state.clone();
            let id = self.id.clone();
            tokio::spawn(async move {
                super::connection::cleanup::<A>(
                    &state,
                    &id,
                    &session,
                    Some(DisconnectReason::HeartbeatTimeout),
                )
                .await;
            });
        }
    }
}

fn sink<A: Adapter>(ctx: &Ctx<A>) -> Arc<dyn Sink> {
    Arc::new(SocketSink {
        socket: ctx.socket.clone(),
        id: ctx.socket.id.to_string(),
        role: ctx.session.identity().role,
        state: ctx.state.clone(),
        session: Arc::downgrade(&ctx.session),
    })
}

/// Puts the socket in `room`'s durable feed after `start` (`None` = from
/// the current head). Replaces an existing membership for the same room.
pub fn attach<A: Adapter>(ctx: &Ctx<A>, room: &RoomName, start: Option<i64>) -> Arc<Member> {
    let company = ctx.session.identity().company_id;
    let member = Member::new(sink(ctx), &company, room.as_str(), start.unwrap_or(-1));
    ctx.state.durable.feeds.attach(member.clone());
    ctx.session.set_member(member.clone());
    member
}

pub fn detach<A: Adapter>(ctx: &Ctx<A>, room: &RoomName) {
    let company = ctx.session.identity().company_id;
    ctx.state
        .durable
        .feeds
        .detach(&company, room.as_str(), &ctx.socket.id.to_string());
    ctx.session.remove_member(room.as_str());
}

pub fn cursor_key(session: &Session) -> CursorKey {
    let identity = session.identity();
    CursorKey {
        company_id: identity.company_id,
        user_id: identity.user_id,
        device_id: session.device_id.clone().unwrap_or_default(),
    }
}

async fn load_cursors(state: &AppState, key: &CursorKey) -> Option<HashMap<String, i64>> {
    match state.store.load_cursors(key).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot load offline-queue cursors; replaying from the head");
            None
        }
    }
}

/// The offline queue and `auth.offsets` resume, run before `session`.
/// Returns the number of events replayed. The rooms stay in catch-up mode
/// until [`go_live`] after `session` went out.
pub async fn replay_on_connect<A: Adapter>(
    ctx: &Ctx<A>,
    extra_rooms: &[RoomName],
) -> Vec<Arc<Member>> {
    let identity = ctx.session.identity();
    let cursors = match load_cursors(&ctx.state, &cursor_key(&ctx.session)).await {
        Some(c) => c,
        None => {
            ctx.session
                .cursors_known
                .store(false, std::sync::atomic::Ordering::Release);
            HashMap::new()
        }
    };
    let mut members = Vec::new();
    for room in automatic_rooms(&identity).iter().chain(extra_rooms) {
        let start = ctx
            .session
            .offsets
            .get(room.as_str())
            .or_else(|| cursors.get(room.as_str()))
            .copied()
            // A user's own room keeps what was addressed to them before
            // their first connection; shared rooms start at the head.
            .or(matches!(room.kind(), crate::domain::room::RoomKind::User(_)).then_some(0));
        members.push(attach(ctx, room, start));
    }
    members
}

pub fn go_live<A: Adapter>(ctx: &Ctx<A>, members: Vec<Arc<Member>>) {
    for member in members {
        ctx.state.durable.spawn_catch_up(member);
    }
}

fn parse_offset(v: &Value) -> Option<i64> {
    v.as_i64().filter(|o| *o >= 0)
}

/// `subscribe { offsets }`: room → offset, validated.
pub fn requested_offsets(data: &Value) -> AppResult<HashMap<String, i64>> {
    match data.get("offsets") {
        None | Some(Value::Null) => Ok(HashMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(room, v)| {
                parse_offset(v).map(|o| (room.clone(), o)).ok_or_else(|| {
                    AppError::new(
                        Code::ValidationFailed,
                        "offsets must map room names to non-negative integers",
                    )
                })
            })
            .collect(),
        Some(_) => Err(AppError::new(
            Code::ValidationFailed,
            "offsets must be an object { room: offset }",
        )),
    }
}

/// `events:ack { room, offset }`: the client confirms what it processed.
pub async fn ack<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let room = data.get("room").and_then(Value::as_str).ok_or_else(|| {
        AppError::new(Code::ValidationFailed, "events:ack needs { room, offset }")
    })?;
    let offset = data.get("offset").and_then(parse_offset).ok_or_else(|| {
        AppError::new(
            Code::ValidationFailed,
            "offset must be a non-negative integer",
        )
    })?;
    let room = RoomName::parse(room)?;
    let member = ctx.session.member(room.as_str()).ok_or_else(|| {
        AppError::new(
            Code::ValidationFailed,
            format!("not subscribed to `{room}`"),
        )
    })?;
    let acked = member.ack(offset);
    if automatic_rooms(&ctx.session.identity()).contains(&room) {
        ctx.state
            .store
            .save_cursors(
                &cursor_key(&ctx.session),
                &[(room.to_string(), acked)],
                now_ms(),
            )
            .await
            .map_err(AppError::unavailable)?;
    }
    Ok(json!({ "ok": true, "room": room.as_str(), "offset": acked }))
}

/// How far back a cursor goes when a socket leaves. A client that closed
/// the connection itself had what was sent before it left; a connection
/// that died silently (or that we cut) may have swallowed what was sent in
/// its last heartbeat window, so that is sent again.
fn rollback_window(state: &AppState, reason: Option<DisconnectReason>) -> Duration {
    match reason {
        Some(DisconnectReason::ClientNSDisconnect | DisconnectReason::TransportClose) => {
            Duration::ZERO
        }
        // Two heartbeat windows: the connection may have been dead for one
        // before the heartbeat noticed, and data sent just before that may
        // still have been in flight.
        _ => 2 * (state.config.ping_interval + state.config.ping_timeout),
    }
}

/// Saves the offline-queue cursors of the socket's automatic rooms and
/// leaves every feed.
pub async fn leave(
    state: &AppState,
    socket_id: &str,
    session: &Session,
    reason: Option<DisconnectReason>,
) {
    let identity = session.identity();
    let window = rollback_window(state, reason);
    let automatic = automatic_rooms(&identity);
    let mut cursors = Vec::new();
    for member in session.take_members() {
        state
            .durable
            .feeds
            .detach(&member.company, &member.room, socket_id);
        if automatic.iter().any(|r| r.as_str() == member.room) {
            let offset = member.acked().unwrap_or_else(|| member.confirmed(window));
            if offset >= 0 {
                cursors.push((member.room.clone(), offset));
            }
        }
    }
    tracing::debug!(
        socket = socket_id,
        ?reason,
        ?cursors,
        "saving offline-queue cursors"
    );
    if cursors.is_empty()
        || !session
            .cursors_known
            .load(std::sync::atomic::Ordering::Acquire)
    {
        return;
    }
    if let Err(e) = state
        .store
        .save_cursors(&cursor_key(session), &cursors, now_ms())
        .await
    {
        tracing::warn!(error = %e, "could not save offline-queue cursors; the client may get duplicates");
    }
}
