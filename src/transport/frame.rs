//! How the plain-WebSocket and SSE transports write what a session is
//! sent, as JSON objects (pure; no I/O).
//!
//! A domain event (`type`, payload, meta) in one of three shapes
//! ([`Format`], `?format=`), each the shape one of the seeds' clients reads:
//! - `envelope` (default, the factory monitor): `{ type, payload, room,
//!   offset?, id, sequenceId, timestamp, source, priority }`;
//! - `data`: `{ type, data, room, offset?, id, timestamp }`;
//! - `flat` (the control panel): `{ type, ...payload, room, offset?,
//!   timestamp }`; `type` and `room` are ours, a payload's own `timestamp`
//!   is kept.
//!
//! A server message (`session`, `replay:truncated`, presence, typing, …)
//! has the same three shapes without the event's meta.

use serde_json::{Map, Value, json};

use crate::domain::{iso8601, now_ms};
use crate::error::{AppError, Code};

/// The frame shape a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Envelope,
    Data,
    Flat,
}

impl Format {
    pub fn parse(raw: &str) -> Result<Format, AppError> {
        match raw {
            "envelope" | "" => Ok(Format::Envelope),
            "data" => Ok(Format::Data),
            "flat" => Ok(Format::Flat),
            other => Err(AppError::new(
                Code::ValidationFailed,
                format!("`format`: `{other}` must be envelope, data or flat"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Envelope => "envelope",
            Format::Data => "data",
            Format::Flat => "flat",
        }
    }
}

/// A domain event as a frame. `sequence` is the connection's running count
/// of frames (the envelope's `sequenceId`).
pub fn event(format: Format, event: &str, payload: &Value, meta: &Value, sequence: u64) -> Value {
    let field = |name: &str| meta.get(name).cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("type".into(), json!(event));
    match format {
        Format::Envelope => {
            out.insert("payload".into(), payload.clone());
        }
        Format::Data => {
            out.insert("data".into(), payload.clone());
        }
        Format::Flat => {
            if let Value::Object(fields) = payload {
                for (k, v) in fields {
                    if k != "type" && k != "room" && k != "offset" {
                        out.insert(k.clone(), v.clone());
                    }
                }
            } else {
                out.insert("value".into(), payload.clone());
            }
        }
    }
    out.insert("room".into(), field("room"));
    if let Some(offset) = meta.get("offset") {
        out.insert("offset".into(), offset.clone());
    }
    if format != Format::Flat {
        out.insert("id".into(), field("id"));
    }
    if format == Format::Envelope {
        out.insert("sequenceId".into(), json!(sequence));
    }
    out.entry("timestamp").or_insert_with(|| field("timestamp"));
    if format == Format::Envelope {
        out.insert("source".into(), field("source"));
        out.insert("priority".into(), field("priority"));
        if let Some(p) = meta.get("publisher") {
            out.insert("publisher".into(), p.clone());
        }
    }
    Value::Object(out)
}

/// A server message (one body) as a frame.
pub fn message(format: Format, name: &str, data: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!(name));
    match (format, data) {
        (Format::Envelope, _) => {
            out.insert("payload".into(), data.clone());
        }
        (Format::Data, _) => {
            out.insert("data".into(), data.clone());
        }
        (Format::Flat, Value::Object(fields)) => {
            for (k, v) in fields {
                if k != "type" {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        (Format::Flat, other) => {
            out.insert("value".into(), other.clone());
        }
    }
    out.entry("timestamp")
        .or_insert_with(|| json!(iso8601(now_ms())));
    Value::Object(out)
}

/// Whether an event frame must never wait in a batch.
pub fn is_critical(meta: &Value) -> bool {
    meta.get("priority").and_then(Value::as_str) == Some("critical")
}

/// `{ type: "batch", messages, timestamp }`.
pub fn batch(messages: Vec<Value>) -> Value {
    json!({ "type": "batch", "messages": messages, "timestamp": iso8601(now_ms()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Value {
        json!({
            "id": "e1", "type": "alarm", "room": "alarms", "offset": 7,
            "timestamp": "2026-01-01T00:00:00.000Z", "source": "api", "priority": "critical"
        })
    }

    #[test]
    fn the_three_formats() {
        let payload =
            json!({"alarmId": 42, "severity": "critical", "timestamp": "T0", "type": "x"});
        let e = event(Format::Envelope, "alarm", &payload, &meta(), 3);
        assert_eq!(e["payload"], payload);
        assert_eq!(
            (
                e["type"].clone(),
                e["room"].clone(),
                e["offset"].clone(),
                e["id"].clone()
            ),
            (json!("alarm"), json!("alarms"), json!(7), json!("e1"))
        );
        assert_eq!(e["sequenceId"], 3);
        assert_eq!(e["timestamp"], "2026-01-01T00:00:00.000Z");
        assert_eq!(
            (e["source"].clone(), e["priority"].clone()),
            (json!("api"), json!("critical"))
        );
        let d = event(Format::Data, "alarm", &payload, &meta(), 3);
        assert_eq!(d["data"], payload);
        assert!(d.get("payload").is_none() && d.get("sequenceId").is_none());
        assert_eq!(d["id"], "e1");
        let f = event(Format::Flat, "alarm", &payload, &meta(), 3);
        assert_eq!(f["alarmId"], 42);
        assert_eq!(f["type"], "alarm", "our type wins over a payload field");
        assert_eq!(f["timestamp"], "T0", "the payload's own timestamp is kept");
        assert_eq!(f["offset"], 7);
        assert!(f.get("payload").is_none() && f.get("id").is_none());
    }

    #[test]
    fn ephemeral_events_have_no_offset_and_messages_no_meta() {
        let mut m = meta();
        m.as_object_mut().unwrap().remove("offset");
        let e = event(
            Format::Envelope,
            "telemetry",
            &json!({"endpointId": 59}),
            &m,
            1,
        );
        assert!(e.get("offset").is_none());
        let s = message(Format::Flat, "session", &json!({"userId": "u1"}));
        assert_eq!(
            (s["type"].clone(), s["userId"].clone()),
            (json!("session"), json!("u1"))
        );
        assert!(s["timestamp"].is_string());
        let s = message(Format::Envelope, "session", &json!({"userId": "u1"}));
        assert_eq!(s["payload"]["userId"], "u1");
        assert!(is_critical(&meta()));
        assert_eq!(
            Format::parse("nope").unwrap_err().code,
            Code::ValidationFailed
        );
    }
}
