//! A socket.io socket as a session's [`Sink`]: domain events go out as
//! events with two arguments `(payload, meta)`, server messages with one;
//! rooms are mirrored into socketioxide's rooms (tenant-scoped internal
//! names, plus the socket's receive room, see [`super::hub`]), which the
//! adapter's broadcasts use.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

use crate::domain::{Role, RoomName, receive_room};
use crate::session::{SendFail, Session, Sink};
use crate::state::AppState;

pub struct SocketSink<A: Adapter> {
    socket: SocketRef<A>,
    role: Role,
    /// For a slow consumer's immediate clean-up ([`Sink::overflowed`]).
    state: AppState,
    session: Weak<Session>,
}

impl<A: Adapter> SocketSink<A> {
    pub fn new(socket: SocketRef<A>, role: Role, state: AppState, session: &Arc<Session>) -> Self {
        Self {
            socket,
            role,
            state,
            session: Arc::downgrade(session),
        }
    }
}

fn send_fail(e: SendError) -> SendFail {
    match e {
        SendError::Socket(SocketError::InternalChannelFull) => SendFail::Full,
        _ => SendFail::Closed,
    }
}

impl<A: Adapter> Sink for SocketSink<A> {
    fn emit(&self, event: &str, payload: &Value, meta: &Value) -> Result<(), SendFail> {
        self.socket.emit(event, &(payload, meta)).map_err(send_fail)
    }

    fn emit_one(&self, event: &str, data: &Value) -> Result<(), SendFail> {
        self.socket.emit(event, data).map_err(send_fail)
    }

    fn join(&self, company: &str, rooms: &[RoomName]) {
        self.socket.join(
            rooms
                .iter()
                .map(|r| r.internal(company))
                .chain([receive_room(company, self.role)])
                .collect::<Vec<_>>(),
        );
    }

    fn leave(&self, company: &str, room: &RoomName) {
        self.socket.leave(room.internal(company));
    }

    fn disconnect(&self) {
        let _ = self.socket.clone().disconnect();
    }

    fn overflowed(&self) {
        tracing::warn!(sid = %self.socket.id, "slow consumer: outgoing buffer full, disconnecting (its durable events will be replayed)");
        crate::metrics::slow_consumer_disconnect();
        // With a full buffer socketioxide cannot queue the DISCONNECT packet
        // and leaves the socket open; the engine's heartbeat then closes it,
        // but socketioxide runs disconnect handlers only once the blocked
        // write returns, which for a client that stopped reading means a TCP
        // timeout. So the session is closed here and now: it leaves every
        // durable feed, stops counting, and its cursor rolls back a
        // heartbeat window, so what it did not read is replayed later.
        let _ = self.socket.clone().disconnect();
        if let Some(session) = self.session.upgrade() {
            let state = self.state.clone();
            self.state.tasks.spawn(async move {
                crate::api::close(&state, &session, "slow consumer").await;
            });
        }
    }

    fn proof_window(&self) -> Duration {
        super::proof::proof_window(&self.state.config, &self.socket)
    }
}
