//! Replies as typed values. Each serializes to the body socket.io clients
//! receive as their ack (`{ ok: true, … }`; `ping` answers `{ pong, serverTime }`);
//! another transport may wrap the same value in its own frame. Refusals
//! are [`crate::error::AppError`]s, whose one wire form is `AppError::ack`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::RoomName;
use crate::rooms::Denial;
use crate::store::PresentUser;

/// The answer to one request.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Pong(Pong),
    Rooms(Rooms),
    Subscribed(Subscribed),
    Unsubscribed(Unsubscribed),
    Refreshed(Refreshed),
    Published(Published),
    Acked(Acked),
    Document(Document),
    Updated(Updated),
    Presence(Presence),
    Done(Done),
    Status(Status),
    Command(Command),
}

/// `ping` → `{ pong: true, serverTime }` (ms since the epoch).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    pub pong: bool,
    pub server_time: i64,
}

/// `rooms` → the logical names the session is in, sorted.
#[derive(Debug, Serialize)]
pub struct Rooms {
    pub ok: bool,
    pub rooms: Vec<String>,
}

/// `subscribe` → what was joined and what was not; `replayed` when the
/// request carried offsets.
#[derive(Debug, Serialize)]
pub struct Subscribed {
    pub ok: bool,
    pub rooms: Vec<RoomName>,
    pub denied: Vec<Denial>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<usize>,
}

/// `unsubscribe` → the rooms left and the names refused.
#[derive(Debug, Serialize)]
pub struct Unsubscribed {
    pub ok: bool,
    pub rooms: Vec<String>,
    pub denied: Vec<Denial>,
}

/// `auth:refresh` → the new expiry (ms).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refreshed {
    pub ok: bool,
    pub expires_at: i64,
}

/// `event:publish` → the event id; its offset when durable; `duplicate`
/// for a retried `clientEventId`; `suppressed` inside a deadband.
#[derive(Debug, Serialize)]
pub struct Published {
    pub ok: bool,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Within a telemetry rule's deadband: neither stored nor delivered.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suppressed: bool,
}

/// `events:ack` → the position acknowledged.
#[derive(Debug, Serialize)]
pub struct Acked {
    pub ok: bool,
    pub room: RoomName,
    pub offset: i64,
}

/// `document:get` → the document (`documents::view::document`).
#[derive(Debug, Serialize)]
pub struct Document {
    pub ok: bool,
    pub document: Value,
}

/// `document:update` → `{ ok, status, version, document, conflict? }`
/// (`documents::view::result`); `duplicate` for a retried `clientMutationId`.
#[derive(Debug, Serialize)]
pub struct Updated {
    pub ok: bool,
    #[serde(flatten)]
    pub result: Map<String, Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// `presence:list` → the users present.
#[derive(Debug, Serialize)]
pub struct Presence {
    pub ok: bool,
    pub users: Vec<PresentUser>,
}

/// `session:status` (plain WebSocket: `getStatus`) → who and where the
/// session is.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub ok: bool,
    pub session_id: String,
    pub transport: &'static str,
    pub user_id: String,
    pub company_id: String,
    pub role: crate::domain::Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub rooms: Vec<String>,
    pub connected_at: i64,
    /// Token expiry, ms since the epoch.
    pub expires_at: i64,
    pub server_time: i64,
}

/// `command:send|ack|result` → the command's id and status;
/// `duplicate` for a retried `clientCommandId`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub ok: bool,
    pub command_id: String,
    pub status: crate::domain::command::Status,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// `{ ok: true }` (`user:typing`).
#[derive(Debug, Serialize)]
pub struct Done {
    pub ok: bool,
}

impl Reply {
    /// The reply as JSON (what socket.io sends as the ack).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
