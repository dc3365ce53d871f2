//! The SSE resume token: every room's offset as of an event, written as
//! the event's `id:` so the browser's automatic `Last-Event-ID` resumes
//! each room exactly after what it received (pure).
//!
//! The form is `room=offset` pairs joined by `,` (`company=12,order:1=7`):
//! room names never contain `,` or `=`, and the token is plain ASCII, as an
//! `id:` line must be.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::domain::RoomName;
use crate::error::AppResult;

/// Rooms a token may name (like `auth.offsets`).
const MAX_ROOMS: usize = crate::rooms::resume::MAX_RESUME_ROOMS;

pub fn encode(positions: &BTreeMap<String, i64>) -> String {
    positions
        .iter()
        .map(|(room, offset)| format!("{room}={offset}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The offsets of a `Last-Event-ID`, as `auth.offsets` would give them.
pub fn decode(token: &str) -> AppResult<Value> {
    let bad = || {
        crate::domain::parse::invalid(
            "Last-Event-ID",
            "expected the id of an event this server sent (room=offset,...)",
        )
    };
    let mut offsets = Map::new();
    for pair in token.split(',').filter(|p| !p.trim().is_empty()) {
        let (room, offset) = pair.trim().rsplit_once('=').ok_or_else(bad)?;
        let room = RoomName::parse(room).map_err(|_| bad())?;
        let offset: i64 = offset.parse().ok().filter(|o| *o >= 0).ok_or_else(bad)?;
        offsets.insert(room.as_str().to_string(), json!(offset));
        if offsets.len() > MAX_ROOMS {
            return Err(bad());
        }
    }
    Ok(Value::Object(offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let positions: BTreeMap<String, i64> =
            [("company".to_string(), 12), ("order:1".to_string(), 0)].into();
        let token = encode(&positions);
        assert_eq!(token, "company=12,order:1=0");
        assert_eq!(
            decode(&token).unwrap(),
            json!({"company": 12, "order:1": 0})
        );
        assert_eq!(decode("").unwrap(), json!({}));
        for bad in ["company", "company=-1", "Bad Room=1", "a=x"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
