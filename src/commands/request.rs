//! The requests of the command protocol as typed values (socket verbs and
//! HTTP bodies share them): every field holds only valid values and a
//! refusal names the failing field.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::catalog::commands::MAX_TIMEOUT_MS;
use crate::domain::RoomName;

/// `command:send { target, name, args, timeoutMs?, clientCommandId? }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendCommand {
    /// The room the command goes to (`device:p1`, or any room).
    pub target: RoomName,
    pub name: String,
    #[serde(default = "empty_object")]
    pub args: Value,
    #[serde(default, deserialize_with = "timeout_ms")]
    pub timeout_ms: Option<i64>,
    #[serde(default, deserialize_with = "client_command_id")]
    pub client_command_id: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`timeoutMs` must be an integer from 1 to {MAX_TIMEOUT_MS}"
                ))
            }),
    }
}

fn client_command_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(id) if id.is_empty() || id.len() > 128 => Err(serde::de::Error::custom(
            "`clientCommandId` must be 1-128 characters",
        )),
        id => Ok(id),
    }
}

/// A command id as clients send it: 1-64 characters.
#[derive(Debug, Clone)]
pub struct CommandId(pub String);

impl<'de> Deserialize<'de> for CommandId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 64 {
            return Err(serde::de::Error::custom(
                "`commandId` must be 1-64 characters",
            ));
        }
        Ok(Self(s))
    }
}

/// `command:ack { commandId }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckCommand {
    pub command_id: CommandId,
}

/// What a device reports as the reason of a failure: a sentence, or
/// `{ code?, message? }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DeviceError {
    Text(String),
    Coded {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    },
}

/// The code of a failure a device reported without one.
pub const DEVICE_FAILED: &str = "DEVICE_FAILED";

impl DeviceError {
    /// `(code, message)`, bounded (a device's text is not ours to trust).
    pub fn parts(&self) -> (String, String) {
        let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        match self {
            DeviceError::Text(m) => (DEVICE_FAILED.into(), clip(m, 500)),
            DeviceError::Coded { code, message } => (
                clip(code.as_deref().unwrap_or(DEVICE_FAILED), 64),
                clip(
                    message
                        .as_deref()
                        .unwrap_or("the device reported a failure"),
                    500,
                ),
            ),
        }
    }
}

/// `command:result { commandId, ok, value?, error? }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub command_id: CommandId,
    pub ok: bool,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub error: Option<DeviceError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse::from_value;
    use serde_json::json;

    #[test]
    fn send_fields_are_parsed_naming_the_failing_one() {
        let s: SendCommand =
            from_value(&json!({"target": "device:p1", "name": "pump:start"}), "x").unwrap();
        assert_eq!(s.target.as_str(), "device:p1");
        assert_eq!(s.args, json!({}));
        for (bad, field) in [
            (json!({"target": "Bad Room", "name": "a"}), "target"),
            (
                json!({"target": "d:1", "name": "a", "timeoutMs": 0}),
                "timeoutMs",
            ),
            (
                json!({"target": "d:1", "name": "a", "timeoutMs": 1.5}),
                "timeoutMs",
            ),
            (
                json!({"target": "d:1", "name": "a", "clientCommandId": ""}),
                "clientCommandId",
            ),
        ] {
            let e = from_value::<SendCommand>(&bad, "x").unwrap_err();
            assert_eq!(e.details.unwrap()["field"], field, "{bad}");
        }
    }

    #[test]
    fn device_errors_take_either_shape() {
        let r: CommandResult = from_value(
            &json!({"commandId": "c1", "ok": false, "error": "jammed"}),
            "x",
        )
        .unwrap();
        assert_eq!(
            r.error.unwrap().parts(),
            (DEVICE_FAILED.to_string(), "jammed".to_string())
        );
        let r: CommandResult = from_value(
            &json!({"commandId": "c1", "ok": false, "error": {"code": "E42"}}),
            "x",
        )
        .unwrap();
        assert_eq!(r.error.unwrap().parts().0, "E42");
        assert!(from_value::<AckCommand>(&json!({"commandId": ""}), "x").is_err());
    }
}
