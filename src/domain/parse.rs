//! Parsing requests into typed values ("parse, don't validate"): request
//! structs derive `Deserialize` from newtypes that only hold valid values
//! (`RoomName`, `CompanyId`, …), and [`from_value`] turns serde's failure
//! into an [`AppError`] whose `details.field` names the failing field.
//!
//! A newtype that refuses a value with a code other than
//! VALIDATION_FAILED (a room name: INVALID_ROOM) hands serde its
//! `AppError` as text (`CODE: sentence`, its `Display`); the code is read
//! back here, so it survives the trip through serde.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{AppError, AppResult, Code};

/// `value` as `T`. `shape` describes what was expected (e.g.
/// `{ room: string }`), for a value that is not an object at all.
pub fn from_value<T: DeserializeOwned>(value: &Value, shape: &str) -> AppResult<T> {
    if !value.is_object() {
        return Err(AppError::new(
            Code::ValidationFailed,
            format!("expected {shape}"),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(field_error)
}

/// A new error for `field`, with `details.field`.
pub fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::new(Code::ValidationFailed, message).with_details(json!({ "field": field }))
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let path = e.path().to_string();
    let inner = e.into_inner().to_string();
    let (code, message) = match inner.split_once(": ") {
        Some((code, rest)) if Code::parse(code).is_some() => (
            Code::parse(code).unwrap_or(Code::ValidationFailed),
            rest.to_string(),
        ),
        _ => (Code::ValidationFailed, inner),
    };
    let named = leading_name(&message).map(str::to_string);
    let field = match (path.as_str(), named, missing_field(&message)) {
        (".", _, Some(missing)) => {
            return invalid(&missing, format!("`{missing}` is required"));
        }
        (".", Some(named), _) => named,
        (".", None, None) => return AppError::new(code, message),
        (path, _, _) => path.to_string(),
    };
    let message = if message.starts_with(&format!("`{field}`")) {
        message
    } else {
        format!("`{field}`: {message}")
    };
    AppError::new(code, message).with_details(json!({ "field": field }))
}

/// `x` in a message that begins with `` `x` ``.
fn leading_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// `x` in serde's "missing field `x`".
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomName;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Req {
        room: RoomName,
        count: u32,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn err(v: Value) -> AppError {
        from_value::<Req>(&v, "{ room, count }").unwrap_err()
    }

    #[test]
    fn errors_name_the_field_and_keep_their_code() {
        let bad_room = err(json!({ "room": "Bad Room", "count": 1 }));
        assert_eq!(bad_room.code, Code::InvalidRoom);
        assert_eq!(bad_room.details.unwrap()["field"], "room");
        let missing = err(json!({ "room": "a" }));
        assert_eq!(missing.code, Code::ValidationFailed);
        assert_eq!(missing.message, "`count` is required");
        assert_eq!(missing.details.unwrap()["field"], "count");
        let nested = err(json!({ "room": "a", "count": 1, "tags": ["x", 5] }));
        assert_eq!(nested.details.unwrap()["field"], "tags[1]");
        let shape = err(json!([1]));
        assert_eq!(shape.message, "expected { room, count }");
        assert!(from_value::<Req>(&json!({ "room": "a", "count": 2, "x": 1 }), "").is_ok());
    }
}
