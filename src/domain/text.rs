//! Text the database can store. PostgreSQL refuses the NUL character
//! (U+0000) in `text` and `jsonb`; such a value used to surface as a
//! storage error (UNAVAILABLE, counted as a database error) on PostgreSQL
//! and be stored on SQLite. Every client input is checked here first, so
//! both backends refuse it the same way: VALIDATION_FAILED naming the field.

use serde_json::{Value, json};

use crate::error::{AppError, AppResult, Code};

/// The JSON pointer (RFC 6901) of the first string or key in `value` that
/// contains a NUL character.
pub fn find_nul(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v).map(|rest| format!("/{i}{rest}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(format!("/{}", escape(k)));
            }
            find_nul(v).map(|rest| format!("/{}{rest}", escape(k)))
        }),
        _ => None,
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Refuses `value` when any string or key in it contains a NUL character;
/// `details.field` is the JSON pointer of the first one.
pub fn refuse_nul(value: &Value) -> AppResult<()> {
    match find_nul(value) {
        None => Ok(()),
        Some(pointer) => {
            let field = if pointer.is_empty() {
                "/".to_string()
            } else {
                pointer
            };
            Err(AppError::new(
                Code::ValidationFailed,
                format!(
                    "`{}` contains a NUL character (U+0000), which cannot be stored",
                    field.replace('\0', "\\u0000")
                ),
            )
            .with_details(json!({ "field": field })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_the_first_nul_in_values_and_keys() {
        assert_eq!(
            find_nul(&json!({ "a": [1, "ok", "b\u{0}"] })).as_deref(),
            Some("/a/2")
        );
        assert_eq!(
            find_nul(&json!({ "x/y~": { "k\u{0}": 1 } })).as_deref(),
            Some("/x~1y~0/k\u{0}")
        );
        assert_eq!(find_nul(&json!("\u{0}")).as_deref(), Some(""));
        assert_eq!(
            find_nul(&json!({ "a": "fine", "b": [null, 1.5, true] })),
            None
        );
        let e = refuse_nul(&json!({ "payload": { "n": "\u{0}" } })).unwrap_err();
        assert_eq!(e.code, Code::ValidationFailed);
        assert_eq!(e.details.unwrap()["field"], "/payload/n");
        assert!(!e.message.contains('\0'));
    }
}
