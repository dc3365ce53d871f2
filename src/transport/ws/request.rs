//! What plain-WebSocket clients send, read into the one route table's
//! verbs, and how they are answered (pure; no I/O).
//!
//! A request is a JSON object whose verb is under `action` or `type` (the
//! seeds use both), with its arguments in `data` or at the top level, and
//! an optional `requestId`. The reply uses the caller's key: `{ action:
//! "getRooms", rooms, count }` to an `action` client, `{ type: "pong" }` to
//! a `type` client, and echoes `requestId`.
//!
//! Names beyond the route table's: `auth` (a first message carrying the
//! token; later, a refresh), `subscribeTo<Kind>` / `unsubscribeFrom<Kind>`
//! with `<kind>Id` (room `<kind>:<id>`), and `subscribe`/`unsubscribe`
//! with `channel` (room `channel`, or with `<x>Ids: [...]` the rooms
//! `<channel, singular>:<id>`: `{ channel: "telemetry", endpointIds: [59] }`
//! is `telemetry:59`, `{ channel: "commands", commandIds: [7] }` is
//! `command:7`) or with `<kind>Ids` alone (`<kind>:<id>`).

use serde_json::{Map, Value, json};

use crate::api::Verb;
use crate::domain::now_ms;
use crate::error::{AppError, AppResult, Code};

/// Which key named the verb; the reply uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Key {
    Action,
    #[default]
    Type,
}

impl Key {
    pub fn as_str(self) -> &'static str {
        match self {
            Key::Action => "action",
            Key::Type => "type",
        }
    }
}

/// One request as read.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub key: Key,
    pub name: String,
    pub request_id: Option<Value>,
    /// The arguments (an object).
    pub args: Value,
}

/// A frame that is not a request, with what is known of it for the answer.
#[derive(Debug)]
pub struct Unreadable {
    pub key: Key,
    pub request_id: Option<Value>,
    pub error: AppError,
}

/// Reads one text frame.
pub fn read(text: &str) -> Result<Inbound, Unreadable> {
    let unreadable = |key, request_id, message: String| Unreadable {
        key,
        request_id,
        error: AppError::new(Code::ValidationFailed, message),
    };
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(text) else {
        return Err(unreadable(
            Key::Type,
            None,
            "expected a JSON object such as {\"type\": \"ping\"}".into(),
        ));
    };
    let request_id = obj.remove("requestId");
    let (key, name) = match (obj.get("action"), obj.get("type")) {
        (Some(Value::String(a)), _) => (Key::Action, a.clone()),
        (_, Some(Value::String(t))) => (Key::Type, t.clone()),
        (Some(_), _) => {
            return Err(unreadable(
                Key::Action,
                request_id,
                "`action` must be a string".into(),
            ));
        }
        _ => {
            return Err(unreadable(
                Key::Type,
                request_id,
                "name the request in `type` or `action`".into(),
            ));
        }
    };
    obj.remove(key.as_str());
    let args = match obj.remove("data") {
        Some(Value::Object(data)) => Value::Object(data),
        Some(Value::Null) | None => Value::Object(obj),
        Some(_) => {
            return Err(unreadable(
                key,
                request_id,
                "`data` must be an object".into(),
            ));
        }
    };
    Ok(Inbound {
        key,
        name,
        request_id,
        args,
    })
}

/// What a request asks for.
#[derive(Debug, PartialEq)]
pub enum Call {
    /// `auth { token }`.
    Auth(String),
    /// A verb of the route table with its body; `echo` is added to the reply
    /// (`subscribeToOrder` answers with its `orderId`).
    Api {
        verb: Verb,
        body: Value,
        echo: Map<String, Value>,
    },
}

/// Maps a request onto the route table.
pub fn route(inb: &Inbound) -> AppResult<Call> {
    let name = inb.name.as_str();
    let args = &inb.args;
    let api = |verb, body| {
        Ok(Call::Api {
            verb,
            body,
            echo: Map::new(),
        })
    };
    if name == "auth" {
        return match args.get("token") {
            Some(Value::String(t)) if !t.is_empty() => Ok(Call::Auth(t.clone())),
            _ => Err(crate::domain::parse::invalid(
                "token",
                "`auth` needs { token: string }",
            )),
        };
    }
    if let Some((verb, kind)) = entity_verb(name) {
        return entity(verb, &kind, args);
    }
    match Verb::from_alias(name) {
        Some(verb @ (Verb::Subscribe | Verb::Unsubscribe)) => api(verb, rooms(args)),
        Some(Verb::Publish) => api(Verb::Publish, publish_body(args)),
        Some(verb) => api(verb, args.clone()),
        None => Err(AppError::new(
            Code::UnknownEvent,
            format!(
                "`{}` is not a request this server handles",
                name.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// `subscribeToOrder` → (Subscribe, "order"); `unsubscribeFromOrder` → (Unsubscribe, "order").
fn entity_verb(name: &str) -> Option<(Verb, String)> {
    let (verb, rest) = if let Some(rest) = name.strip_prefix("subscribeTo") {
        (Verb::Subscribe, rest)
    } else {
        (Verb::Unsubscribe, name.strip_prefix("unsubscribeFrom")?)
    };
    let mut chars = rest.chars();
    let first = chars.next().filter(char::is_ascii_uppercase)?;
    Some((
        verb,
        format!("{}{}", first.to_ascii_lowercase(), chars.as_str()),
    ))
}

fn entity(verb: Verb, kind: &str, args: &Value) -> AppResult<Call> {
    let field = format!("{kind}Id");
    let id = args.get(&field).and_then(id_text).ok_or_else(|| {
        crate::domain::parse::invalid(&field, format!("expected {{ {field}: string or number }}"))
    })?;
    let mut body = json!({ "room": format!("{kind}:{id}") });
    if let Some(offsets) = args.get("offsets") {
        body["offsets"] = offsets.clone();
    }
    let mut echo = Map::new();
    echo.insert(field.clone(), args[&field].clone());
    Ok(Call::Api { verb, body, echo })
}

/// An identifier sent as a string or an integer.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// `subscribe`/`unsubscribe` arguments as the route table reads them
/// (`{ room | rooms, offsets? }`); see the module doc for `channel`.
fn rooms(args: &Value) -> Value {
    if args.get("room").is_some() || args.get("rooms").is_some() {
        return args.clone();
    }
    let channel = args.get("channel").and_then(Value::as_str);
    let ids = args.as_object().and_then(|obj| {
        obj.iter()
            .find(|(k, v)| k.len() > 3 && k.ends_with("Ids") && v.is_array())
            .map(|(k, v)| (k[..k.len() - 3].to_string(), v))
    });
    let rooms: Vec<Value> = match (channel, ids) {
        (channel, Some((kind, Value::Array(ids)))) => {
            let prefix = channel.map_or(kind, singular);
            // A non-identifier is left for the room check to refuse by name.
            ids.iter()
                .map(|id| {
                    let id = id_text(id).unwrap_or_else(|| id.to_string());
                    json!(format!("{prefix}:{id}"))
                })
                .collect()
        }
        (Some(channel), _) => vec![json!(channel)],
        (None, _) => return args.clone(),
    };
    let mut body = json!({ "rooms": rooms });
    if let Some(offsets) = args.get("offsets") {
        body["offsets"] = offsets.clone();
    }
    body
}

/// `commands` → `command`, `alarms` → `alarm`; `telemetry` stays.
fn singular(channel: &str) -> String {
    match channel.strip_suffix('s') {
        Some(stem) if !stem.is_empty() && !stem.ends_with('s') => stem.to_string(),
        _ => channel.to_string(),
    }
}

/// `publish`: an `action` client names the event in `type`; a `type` client
/// (whose `type` is the verb) in `eventType`.
fn publish_body(args: &Value) -> Value {
    let mut body = args.clone();
    if let Some(obj) = body.as_object_mut()
        && !obj.contains_key("type")
        && let Some(t) = obj.remove("eventType")
    {
        obj.insert("type".into(), t);
    }
    body
}

/// The reply to a request.
pub fn answer(inb: &Inbound, echo: Map<String, Value>, result: AppResult<Value>) -> Value {
    let key = inb.key.as_str();
    let mut out = Map::new();
    match result {
        Ok(Value::Object(fields)) if fields.contains_key("pong") => {
            out.insert(key.into(), json!("pong"));
            out.insert("timestamp".into(), json!(now_ms()));
            out.insert("serverTime".into(), fields["serverTime"].clone());
            out.insert("ok".into(), json!(true));
        }
        Ok(Value::Object(fields)) => {
            out.insert(key.into(), json!(inb.name));
            if let Some(Value::Array(rooms)) = fields.get("rooms") {
                out.insert("count".into(), json!(rooms.len()));
            }
            out.extend(fields);
            out.insert("success".into(), json!(true));
        }
        Ok(other) => {
            out.insert(key.into(), json!(inb.name));
            out.insert("ok".into(), json!(true));
            out.insert("success".into(), json!(true));
            out.insert("data".into(), other);
        }
        Err(e) => {
            out.insert(key.into(), json!(inb.name));
            out.insert("ok".into(), json!(false));
            out.insert("success".into(), json!(false));
            out.insert("error".into(), e.body());
        }
    }
    out.extend(echo);
    if let Some(id) = &inb.request_id {
        out.insert("requestId".into(), id.clone());
    }
    Value::Object(out)
}

/// The answer to a frame that is no request.
pub fn refusal(key: Key, request_id: Option<Value>, e: &AppError) -> Value {
    let mut out =
        json!({ key.as_str(): "error", "ok": false, "success": false, "error": e.body() });
    if let Some(id) = request_id {
        out["requestId"] = id;
    }
    out
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
