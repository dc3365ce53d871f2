//! The outgoing side shared by the plain-WebSocket and SSE transports: a
//! bounded queue of frames between a session's producers (replies, durable
//! feeds, fan-out) and the one task that writes its connection, and the
//! [`OutboxSink`] through which a session's services send.
//!
//! The queue holds [`QUEUE`] frames, socket.io's per-socket buffer: when a
//! client stops reading, sends fail with [`SendFail::Full`] and the
//! session is treated as a slow consumer the same way (ephemeral events
//! dropped and counted; durable feeds wait, then cut it off, see
//! `replay::catch_up`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame::{self, Format};
use super::local::LocalRooms;
use crate::domain::{Role, RoomName, SessionId};
use crate::session::{SendFail, Session, Sink};
use crate::state::AppState;

/// Frames a connection may have waiting (socket.io's `max_buffer_size`).
pub const QUEUE: usize = 256;

/// One frame for the writer.
#[derive(Debug)]
pub enum Out {
    /// A domain event; `durable` events carry an offset, `critical` ones
    /// never wait in a batch.
    Event {
        frame: Value,
        room: String,
        offset: Option<i64>,
        critical: bool,
    },
    /// A reply or a server message.
    Message(Value),
}

/// A session's outgoing queue, with how the connection ends.
pub struct Outbox {
    tx: mpsc::Sender<Out>,
    format: Format,
    sequence: AtomicU64,
    /// Cancelled to end the connection (the writer then closes it).
    pub end: CancellationToken,
    /// The close code and reason to end with, if not the default (first
    /// set wins). A std mutex: set once, read once.
    close: Mutex<Option<(u16, String)>>,
}

impl Outbox {
    pub fn new(format: Format) -> (Arc<Self>, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let outbox = Arc::new(Self {
            tx,
            format,
            sequence: AtomicU64::new(0),
            end: CancellationToken::new(),
            close: Mutex::new(None),
        });
        (outbox, rx)
    }

    fn push(&self, out: Out) -> Result<(), SendFail> {
        self.tx.try_send(out).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendFail::Full,
            mpsc::error::TrySendError::Closed(_) => SendFail::Closed,
        })
    }

    /// Ends the connection with `code` (unless an end was already decided).
    pub fn finish(&self, code: u16, reason: &str) {
        self.close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| (code, reason.to_string()));
        self.end.cancel();
    }

    /// The close code decided by [`Outbox::finish`], if any.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        self.close.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Frames waiting for the writer.
    pub fn backlog(&self) -> usize {
        QUEUE - self.tx.capacity()
    }

    /// A reply or a frame of the transport's own (already shaped).
    pub fn send(&self, frame: Value) -> Result<(), SendFail> {
        self.push(Out::Message(frame))
    }

    pub fn event(&self, event: &str, payload: &Value, meta: &Value) -> Result<(), SendFail> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        self.push(Out::Event {
            frame: frame::event(self.format, event, payload, meta, sequence),
            room: meta
                .get("room")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            offset: meta.get("offset").and_then(Value::as_i64),
            critical: frame::is_critical(meta),
        })
    }

    pub fn message(&self, name: &str, data: &Value) -> Result<(), SendFail> {
        self.push(Out::Message(frame::message(self.format, name, data)))
    }
}

/// A plain-WebSocket or SSE connection as a session's [`Sink`].
pub struct OutboxSink {
    outbox: Arc<Outbox>,
    id: SessionId,
    role: Role,
    local: Arc<LocalRooms>,
    /// Itself, for the room index ([`LocalRooms`] holds sinks).
    me: Weak<OutboxSink>,
    window: Duration,
    /// For a slow consumer's immediate clean-up ([`Sink::overflowed`]).
    state: AppState,
    session: Weak<Session>,
}

impl OutboxSink {
    pub fn new(
        outbox: Arc<Outbox>,
        session: &Arc<Session>,
        local: Arc<LocalRooms>,
        window: Duration,
        state: AppState,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            outbox,
            id: session.id,
            role: session.identity().role,
            local,
            me: me.clone(),
            window,
            state,
            session: Arc::downgrade(session),
        })
    }
}

impl Sink for OutboxSink {
    fn emit(&self, event: &str, payload: &Value, meta: &Value) -> Result<(), SendFail> {
        self.outbox.event(event, payload, meta)
    }

    fn emit_one(&self, event: &str, data: &Value) -> Result<(), SendFail> {
        self.outbox.message(event, data)
    }

    fn join(&self, company: &str, rooms: &[RoomName]) {
        if let Some(me) = self.me.upgrade() {
            let sink: Arc<dyn Sink> = me;
            self.local.join(self.id, self.role, &sink, company, rooms);
        }
    }

    fn leave(&self, company: &str, room: &RoomName) {
        self.local.leave(self.id, company, room);
    }

    fn disconnect(&self) {
        self.outbox.end.cancel();
    }

    fn overflowed(&self) {
        tracing::warn!(session = %self.id, "slow consumer: outgoing queue full, disconnecting (its durable events will be replayed)");
        crate::metrics::slow_consumer_disconnect();
        // 1013 "try again later": clients that reconnect on anything but
        // 1000 come back, and are replayed what they missed.
        self.outbox.finish(1013, "slow consumer; reconnect");
        if let Some(session) = self.session.upgrade() {
            let state = self.state.clone();
            self.state.tasks.spawn(async move {
                crate::api::close(&state, &session, "slow consumer").await;
            });
        }
    }

    fn proof_window(&self) -> Duration {
        self.window
    }
}
