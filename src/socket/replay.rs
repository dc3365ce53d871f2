//! The socket side of log and replay: a socket as a [`Sink`] of durable
//! events, the offline queue on connect, `subscribe` offsets, `events:ack`,
//! and saving cursors when a socket goes away.

use std::collections::HashMap;
use std::sync::Arc;

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
    let window = super::proof::proof_window(&ctx.state, &ctx.socket);
    let member = Member::new(
        sink(ctx),
        &company,
        room.as_str(),
        start.unwrap_or(-1),
        window,
    );
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
            tracing::warn!(error = %e, "cannot load offline-queue cursors now; each room reads its cursor when the database answers");
            None
        }
    }
}

/// The offline queue and `auth.offsets` resume, run before `session`.
/// The rooms stay in catch-up mode until [`go_live`] after `session` went
/// out. A room of the user's own with no stored cursor gets one now, at
/// its start position, before anything is sent: a node that dies at any
/// moment after this leaves the device a cursor to come back to.
pub async fn replay_on_connect<A: Adapter>(
    ctx: &Ctx<A>,
    extra_rooms: &[RoomName],
) -> Vec<Arc<Member>> {
    let identity = ctx.session.identity();
    let key = cursor_key(&ctx.session);
    // `None`: the database is down; each automatic room then reads its
    // stored cursor before sending anything (see `DurableHub::start_of`).
    let cursors = load_cursors(&ctx.state, &key).await;
    let known = cursors.is_some();
    let cursors = cursors.unwrap_or_default();
    let automatic = automatic_rooms(&identity);
    let mut fresh = Vec::new();
    let mut members = Vec::new();
    let mut tracked = Vec::new();
    for room in automatic.iter().chain(extra_rooms) {
        let stored = cursors.get(room.as_str()).copied();
        let mut start = ctx.session.offsets.get(room.as_str()).copied().or(stored);
        let is_automatic = automatic.contains(room) && known;
        if start.is_none() && is_automatic {
            start = first_start(&ctx.state, &identity.company_id, room).await;
            if let Some(s) = start {
                fresh.push((room.to_string(), s));
            }
        }
        let member = attach(ctx, room, start);
        if is_automatic {
            tracked.push((member.clone(), stored, start));
        } else if start.is_none() && automatic.contains(room) {
            member.start_from_stored_cursor(key.clone());
        }
        members.push(member);
    }
    let fresh_saved = fresh.is_empty()
        || match ctx.state.store.save_cursors(&key, &fresh, now_ms()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not store first cursors; the next save retries");
                false
            }
        };
    for (member, stored, start) in tracked {
        let saved = stored.or(start.filter(|_| fresh_saved));
        member.track_cursor(key.clone(), saved.unwrap_or(-1));
    }
    members
}

/// Where an automatic room without a cursor starts: a user's own room keeps
/// what was addressed to them before their first connection; shared rooms
/// start at the head. `None` (resolved later) if the head cannot be read.
async fn first_start(state: &AppState, company: &str, room: &RoomName) -> Option<i64> {
    if matches!(room.kind(), crate::domain::room::RoomKind::User(_)) {
        return Some(0);
    }
    state.store.head_offset(company, room.as_str()).await.ok()
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

/// Saves the offline-queue cursors of the socket's automatic rooms and
/// leaves every feed. Whatever the reason, the cursor is what the client
/// surely processed (see [`super::proof::proof_window`]): a client that closed the
/// connection itself may not have read what was in flight either.
pub async fn leave(
    state: &AppState,
    socket_id: &str,
    session: &Session,
    reason: Option<DisconnectReason>,
) {
    let identity = session.identity();
    let automatic = automatic_rooms(&identity);
    let mut cursors = Vec::new();
    for member in session.take_members() {
        state
            .durable
            .feeds
            .detach(&member.company, &member.room, socket_id);
        if automatic.iter().any(|r| r.as_str() == member.room) {
            let offset = member.safe();
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
    // A position still unresolved (database down since the connect) is -1
    // and was left out: the stored cursor stays as it was.
    if cursors.is_empty() {
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
