//! Engine.IO v4 / Socket.IO v5 text packets over WebSocket, namespace `/`.
//!
//! Over WebSocket every Engine.IO packet is one text frame: `0` open, `1`
//! close, `2` ping, `3` pong, `4` message, `6` noop. A message carries a
//! Socket.IO packet: `0` CONNECT, `1` DISCONNECT, `2` EVENT, `3` ACK,
//! `4` CONNECT_ERROR, optionally followed by an ack id, then JSON.
//!
//! The hot paths (fan-out deliveries) only need the event name and one
//! integer field, so those are found without parsing the whole frame.

use serde_json::Value;

/// One parsed frame; bodies borrow the frame's text.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Open(&'a str),
    Close,
    Ping,
    Pong,
    Noop,
    /// CONNECT answer: `{ sid }`.
    Connect(&'a str),
    Disconnect,
    /// EVENT: `body` is the JSON array `["name", args...]`.
    Event {
        ack: Option<u64>,
        body: &'a str,
    },
    /// ACK: `body` is the JSON array of the ack's arguments.
    Ack {
        id: u64,
        body: &'a str,
    },
    ConnectError(&'a str),
    Other,
}

/// Splits a leading decimal ack id off `rest`.
fn ack_id(rest: &str) -> (Option<u64>, &str) {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return (None, rest);
    }
    (rest[..digits].parse().ok(), &rest[digits..])
}

pub fn parse(text: &str) -> Packet<'_> {
    let Some(kind) = text.as_bytes().first() else {
        return Packet::Other;
    };
    match kind {
        b'0' => Packet::Open(&text[1..]),
        b'1' => Packet::Close,
        b'2' => Packet::Ping,
        b'3' => Packet::Pong,
        b'6' => Packet::Noop,
        b'4' => {
            let rest = &text[1..];
            let Some(sio) = rest.as_bytes().first() else {
                return Packet::Other;
            };
            let rest = &rest[1..];
            match sio {
                b'0' => Packet::Connect(rest),
                b'1' => Packet::Disconnect,
                b'2' => {
                    let (ack, body) = ack_id(rest);
                    Packet::Event { ack, body }
                }
                b'3' => match ack_id(rest) {
                    (Some(id), body) => Packet::Ack { id, body },
                    (None, _) => Packet::Other,
                },
                b'4' => Packet::ConnectError(rest),
                _ => Packet::Other,
            }
        }
        _ => Packet::Other,
    }
}

/// The name of an event body `["name", ...]`, without parsing the rest.
/// Event names never contain quotes or backslashes in this protocol.
pub fn event_name(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("[\"")?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// The first unsigned integer after `"key":` anywhere in `text`.
pub fn find_u64(text: &str, key: &str) -> Option<u64> {
    let needle = format!("\"{key}\":");
    let at = text.find(&needle)? + needle.len();
    let rest = text[at..].trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// The first string after `"key":"` anywhere in `text` (no escapes expected).
pub fn find_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":\"");
    let at = text.find(&needle)? + needle.len();
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

/// A Socket.IO EVENT frame, with an ack id when one is wanted.
pub fn event(name: &str, data: Option<&Value>, ack: Option<u64>) -> String {
    let args = match data {
        Some(d) => serde_json::json!([name, d]),
        None => serde_json::json!([name]),
    };
    match ack {
        Some(id) => format!("42{id}{args}"),
        None => format!("42{args}"),
    }
}

/// The CONNECT frame for namespace `/` with an auth payload.
pub fn connect(auth: &Value) -> String {
    format!("40{auth}")
}

/// The first argument of an ACK body, parsed.
pub fn ack_value(body: &str) -> Value {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(mut args)) if !args.is_empty() => args.swap_remove(0),
        _ => Value::Null,
    }
}

/// An EVENT body split into name and arguments, parsed.
pub fn event_args(body: &str) -> Option<(String, Vec<Value>)> {
    match serde_json::from_str::<Value>(body).ok()? {
        Value::Array(mut items) if !items.is_empty() => {
            let name = items.remove(0).as_str()?.to_string();
            Some((name, items))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_engine_and_socket_packets() {
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("0{\"sid\":\"x\"}"), Packet::Open("{\"sid\":\"x\"}"));
        assert_eq!(
            parse("40{\"sid\":\"a\"}"),
            Packet::Connect("{\"sid\":\"a\"}")
        );
        assert_eq!(parse("41"), Packet::Disconnect);
        assert_eq!(
            parse("44{\"message\":\"m\"}"),
            Packet::ConnectError("{\"message\":\"m\"}")
        );
        assert_eq!(
            parse("42[\"a\",1]"),
            Packet::Event {
                ack: None,
                body: "[\"a\",1]"
            }
        );
        assert_eq!(
            parse("4217[\"a\"]"),
            Packet::Event {
                ack: Some(17),
                body: "[\"a\"]"
            }
        );
        assert_eq!(
            parse("4312[{\"ok\":true}]"),
            Packet::Ack {
                id: 12,
                body: "[{\"ok\":true}]"
            }
        );
        assert_eq!(parse(""), Packet::Other);
    }

    #[test]
    fn finds_fields_without_parsing() {
        let body = r#"["dashboard:refresh",{"timestamp":"t","sentAt": 123},{"offset":9}]"#;
        assert_eq!(event_name(body), Some("dashboard:refresh"));
        assert_eq!(find_u64(body, "sentAt"), Some(123));
        assert_eq!(find_u64(body, "offset"), Some(9));
        assert_eq!(find_u64(body, "missing"), None);
        assert_eq!(find_str(r#"[{"room":"order:1"}]"#, "room"), Some("order:1"));
    }

    #[test]
    fn encodes_events() {
        assert_eq!(event("ping", None, Some(3)), "423[\"ping\"]");
        assert_eq!(
            event("e", Some(&json!({"a":1})), None),
            "42[\"e\",{\"a\":1}]"
        );
        assert_eq!(ack_value("[{\"ok\":true}]"), json!({"ok": true}));
        let (name, args) = event_args("[\"x\",1,2]").expect("event");
        assert_eq!((name.as_str(), args.len()), ("x", 2));
    }
}
