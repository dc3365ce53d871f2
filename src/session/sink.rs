//! Where a session's messages go: the one trait a transport implements.
//!
//! Messages are typed by what they are, not by how a transport frames
//! them: a domain event is `(type, payload, meta)`, a server message
//! (`session`, `replay:truncated`, `document:conflict`, `session:expired`)
//! is `(name, data)`. socket.io sends them as events with two and one
//! arguments; other transports frame them their own way.

use std::time::Duration;

use serde_json::Value;

use crate::domain::RoomName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFail {
    /// The connection's outgoing buffer is full.
    Full,
    /// The connection is gone.
    Closed,
}

pub trait Sink: Send + Sync + 'static {
    /// A domain event with its meta (`id`, `type`, `room`, `offset?`, …).
    fn emit(&self, event: &str, payload: &Value, meta: &Value) -> Result<(), SendFail>;

    /// A server message with one body.
    fn emit_one(&self, event: &str, data: &Value) -> Result<(), SendFail>;

    /// The session joined `rooms` of `company` (already recorded on the
    /// session): a transport whose broadcasts use rooms of its own joins
    /// them too. The default does nothing.
    fn join(&self, _company: &str, _rooms: &[RoomName]) {}

    /// The session left `room`; see [`Sink::join`].
    fn leave(&self, _company: &str, _room: &RoomName) {}

    /// Ends the connection; the transport then closes the session (`api::close`).
    fn disconnect(&self);

    /// A send found the buffer full (a slow consumer): the connection is
    /// dropped and the session closed now, so its durable events are
    /// replayed when it returns instead of being silently lost.
    fn overflowed(&self);

    /// How long after a send a still-open connection proves that the client
    /// processed it (the transport's heartbeat argument): offline-queue
    /// cursors never run ahead of that.
    fn proof_window(&self) -> Duration;
}
