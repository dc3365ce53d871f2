//! Requests as typed values, parsed once on the way in: every field is a
//! type that only holds valid values (room names, priorities, offsets, …),
//! and a refusal names the failing field (`details.field`, see
//! [`crate::domain::parse`]). Unknown fields are ignored, as clients send
//! extra keys. Room lists of `subscribe`/`unsubscribe` stay text: each bad
//! name is refused on its own, in `denied`, not the whole request.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::routes::Verb;
use crate::catalog::Priority;
use crate::commands::request::{AckCommand, CommandResult, SendCommand};
use crate::documents::request::{DocRef, UpdateRequest, parse_update};
use crate::domain::RoomName;
use crate::domain::parse::from_value;
use crate::error::{AppError, AppResult, Code};

/// Rooms one `subscribe`/`unsubscribe` may name.
pub const MAX_ROOMS_PER_REQUEST: usize = 256;

/// One parsed request.
#[derive(Debug)]
pub enum Request {
    Ping,
    Subscribe(Subscribe),
    Unsubscribe(RoomList),
    Rooms,
    AuthRefresh(AuthRefresh),
    Publish(Publish),
    Ack(Ack),
    DocumentGet(DocRef),
    DocumentUpdate(DocumentUpdate),
    PresenceList(PresenceList),
    Typing(Typing),
    Status,
    CommandSend(SendCommand),
    CommandAck(AckCommand),
    CommandResult(CommandResult),
}

impl Request {
    /// Parses the body of a `verb` request. A missing body (`null`) is an
    /// empty object. `max_payload` bounds a document update before it is
    /// read (SPEC §8: the size check comes first).
    pub fn parse(verb: Verb, data: Value, max_payload: usize) -> AppResult<Request> {
        let data = if data.is_null() {
            Value::Object(Default::default())
        } else {
            data
        };
        Ok(match verb {
            Verb::Ping => Request::Ping,
            Verb::Rooms => Request::Rooms,
            Verb::Status => Request::Status,
            Verb::Subscribe => Request::Subscribe(from_value(&data, ROOMS_SHAPE)?),
            Verb::Unsubscribe => Request::Unsubscribe(from_value(&data, ROOMS_SHAPE)?),
            Verb::AuthRefresh => Request::AuthRefresh(from_value(&data, "{ token }")?),
            Verb::Publish => Request::Publish(from_value(
                &data,
                "{ type, room?, payload, priority?, clientEventId? }",
            )?),
            Verb::Ack => Request::Ack(from_value(&data, "{ room, offset }")?),
            Verb::DocumentGet => Request::DocumentGet(DocRef::from_payload(&data)?),
            Verb::DocumentUpdate => {
                Request::DocumentUpdate(DocumentUpdate::parse(&data, max_payload)?)
            }
            Verb::PresenceList => {
                Request::PresenceList(from_value(&data, "{ room?: string, batches?: boolean }")?)
            }
            Verb::Typing => {
                Request::Typing(from_value(&data, "{ room: string, isTyping: boolean }")?)
            }
            Verb::CommandSend => Request::CommandSend(from_value(
                &data,
                "{ target, name, args, timeoutMs?, clientCommandId? }",
            )?),
            Verb::CommandAck => Request::CommandAck(from_value(&data, "{ commandId }")?),
            Verb::CommandResult => {
                Request::CommandResult(from_value(&data, "{ commandId, ok, value?, error? }")?)
            }
        })
    }
}

const ROOMS_SHAPE: &str = "{ room: string } or { rooms: [string, ...] }";

/// `{ room }` or `{ rooms: [...] }` as it arrives.
#[derive(Deserialize)]
struct RoomListIn {
    room: Option<String>,
    rooms: Option<Vec<String>>,
}

/// The rooms a request named, in order (at most [`MAX_ROOMS_PER_REQUEST`]).
#[derive(Debug, Deserialize)]
#[serde(try_from = "RoomListIn")]
pub struct RoomList(pub Vec<String>);

impl TryFrom<RoomListIn> for RoomList {
    type Error = AppError;

    fn try_from(r: RoomListIn) -> AppResult<Self> {
        match (r.room, r.rooms) {
            (Some(room), _) => Ok(Self(vec![room])),
            (None, Some(rooms)) if rooms.len() > MAX_ROOMS_PER_REQUEST => Err(AppError::new(
                Code::ValidationFailed,
                format!("`rooms`: at most {MAX_ROOMS_PER_REQUEST} rooms per request"),
            )),
            (None, Some(rooms)) => Ok(Self(rooms)),
            (None, None) => Err(AppError::new(
                Code::ValidationFailed,
                format!("expected {ROOMS_SHAPE}"),
            )),
        }
    }
}

/// `subscribe { room | rooms, offsets? }`.
#[derive(Debug, Deserialize)]
pub struct Subscribe {
    #[serde(flatten)]
    pub rooms: RoomList,
    /// Room → the last offset the client has; replay resumes after it.
    #[serde(default, deserialize_with = "offsets")]
    pub offsets: HashMap<String, i64>,
}

fn offsets<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, i64>, D::Error> {
    Option::<HashMap<String, Offset>>::deserialize(d).map(|m| {
        m.unwrap_or_default()
            .into_iter()
            .map(|(r, o)| (r, o.0))
            .collect()
    })
}

/// A position in a room's log: a non-negative integer.
#[derive(Debug, Clone, Copy)]
pub struct Offset(pub i64);

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d)?
            .as_i64()
            .filter(|o| *o >= 0)
            .map(Offset)
            .ok_or_else(|| serde::de::Error::custom("an offset must be a non-negative integer"))
    }
}

/// `auth:refresh { token }`.
#[derive(Debug, Deserialize)]
pub struct AuthRefresh {
    pub token: String,
}

/// `event:publish { type, room?, payload, priority?, clientEventId? }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publish {
    #[serde(rename = "type")]
    pub event_type: String,
    /// Default: `company`.
    pub room: Option<RoomName>,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, deserialize_with = "priority")]
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "client_event_id")]
    pub client_event_id: Option<String>,
}

/// `priority`: low, medium, high or critical (absent or null: the type's).
pub fn priority<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Priority>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(p) => Priority::parse(&p).map(Some).ok_or_else(|| {
            serde::de::Error::custom("`priority` must be low, medium, high or critical")
        }),
    }
}

fn client_event_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(id) if id.is_empty() || id.len() > 128 => Err(serde::de::Error::custom(
            "`clientEventId` must be 1-128 characters",
        )),
        id => Ok(id),
    }
}

/// `events:ack { room, offset }`.
#[derive(Debug, Deserialize)]
pub struct Ack {
    pub room: RoomName,
    pub offset: Offset,
}

/// `document:update { type, id, baseVersion, changes, editedAt?, clientMutationId? }`.
#[derive(Debug)]
pub struct DocumentUpdate {
    pub doc: DocRef,
    pub update: UpdateRequest,
}

impl DocumentUpdate {
    fn parse(data: &Value, max_payload: usize) -> AppResult<Self> {
        let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
        if size > max_payload {
            return Err(AppError::new(
                Code::PayloadTooLarge,
                format!("the update is {size} bytes; the limit is {max_payload}"),
            ));
        }
        Ok(Self {
            doc: DocRef::from_payload(data)?,
            update: parse_update(data)?,
        })
    }
}

/// `presence:list { room?, batches? }` (default: `company`, no batches).
#[derive(Debug, Deserialize)]
pub struct PresenceList {
    pub room: Option<RoomName>,
    /// Also receive `presence:batch` frames from now on (company list only).
    #[serde(default)]
    pub batches: bool,
}

/// `user:typing { room, isTyping }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub room: RoomName,
    pub is_typing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(verb: Verb, v: Value) -> AppResult<Request> {
        Request::parse(verb, v, 65_536)
    }

    #[test]
    fn room_lists_and_their_refusals() {
        let Ok(Request::Subscribe(s)) = parse(
            Verb::Subscribe,
            json!({"rooms": ["a", "B"], "offsets": {"a": 3}}),
        ) else {
            panic!("parses");
        };
        assert_eq!(s.rooms.0, vec!["a", "B"]);
        assert_eq!(s.offsets["a"], 3);
        for bad in [
            json!({}),
            json!({"room": 1}),
            json!({"rooms": "a"}),
            json!({"rooms": [1]}),
            json!([1]),
            json!({"rooms": ["a"], "offsets": {"a": -1}}),
        ] {
            let e = parse(Verb::Subscribe, bad.clone()).unwrap_err();
            assert_eq!(e.code, Code::ValidationFailed, "{bad}");
        }
    }

    #[test]
    fn fields_are_parsed_with_their_codes() {
        let e = parse(Verb::Publish, json!({"type": "a:b", "room": "Bad Room"})).unwrap_err();
        assert_eq!(
            (e.code, e.details.unwrap()["field"].clone()),
            (Code::InvalidRoom, json!("room"))
        );
        let e = parse(Verb::Publish, json!({"type": "a:b", "priority": "urgent"})).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "priority");
        let e = parse(Verb::Ack, json!({"room": "company", "offset": 1.5})).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "offset");
        let e = parse(
            Verb::DocumentUpdate,
            json!({"type": "t", "id": 1, "changes": {"a": 1}}),
        )
        .unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "baseVersion");
        assert!(matches!(parse(Verb::Ping, Value::Null), Ok(Request::Ping)));
    }
}
