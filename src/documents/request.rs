//! Document requests (every transport's payloads and HTTP bodies) as typed
//! values: what a document is called ([`DocRef`]) and what an update says
//! ([`UpdateRequest`]), each deserialized from fields that only hold valid
//! values; errors name the field (`details.field`).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::RoomName;
use crate::domain::parse::{from_value, invalid};
use crate::error::{AppError, AppResult};
use crate::store::documents::DocKey;

/// Longest document type name.
pub const MAX_TYPE_LEN: usize = 64;
/// Longest document id.
pub const MAX_ID_LEN: usize = 128;
/// Longest field name in `changes`.
pub const MAX_FIELD_LEN: usize = 128;
/// Longest `clientMutationId`.
pub const MAX_MUTATION_ID_LEN: usize = 128;

/// A validated `(type, id)`, whose room `document:{type}:{id}` is a valid
/// room name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "DocRefIn")]
pub struct DocRef {
    pub doc_type: String,
    pub doc_id: String,
}

fn valid_type(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_TYPE_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

impl DocRef {
    pub fn parse(doc_type: &str, doc_id: &str) -> AppResult<Self> {
        if !valid_type(doc_type) {
            return Err(invalid(
                "type",
                format!("`type` must match ^[a-z][a-z0-9_-]*$ and be at most {MAX_TYPE_LEN} bytes"),
            ));
        }
        if !valid_id(doc_id) {
            return Err(invalid(
                "id",
                format!("`id` must be 1-{MAX_ID_LEN} characters of letters, digits, _ . @ -"),
            ));
        }
        let doc = Self {
            doc_type: doc_type.to_string(),
            doc_id: doc_id.to_string(),
        };
        // Subscribers follow a document through its room, so its name must be
        // a room name (at most 128 bytes).
        RoomName::parse(&doc.room()).map_err(|_| {
            invalid(
                "id",
                "`document:{type}:{id}` must fit a room name (at most 128 bytes)",
            )
        })?;
        Ok(doc)
    }

    /// `{ type, id }` of a request; an integer id is accepted as text.
    pub fn from_payload(data: &Value) -> AppResult<Self> {
        from_value(data, "{ type, id }")
    }

    /// The room whose subscribers receive `document:updated`.
    pub fn room(&self) -> String {
        format!("document:{}:{}", self.doc_type, self.doc_id)
    }

    pub fn key(&self, company_id: &str) -> DocKey {
        DocKey {
            company_id: company_id.to_string(),
            doc_type: self.doc_type.clone(),
            doc_id: self.doc_id.clone(),
        }
    }
}

/// `{ type, id }` as it arrives.
#[derive(Deserialize)]
struct DocRefIn {
    #[serde(rename = "type")]
    doc_type: String,
    /// Text, or an integer read as text.
    id: Value,
}

impl TryFrom<DocRefIn> for DocRef {
    type Error = AppError;

    fn try_from(d: DocRefIn) -> AppResult<Self> {
        let id = match d.id {
            Value::String(s) => s,
            Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
            _ => return Err(invalid("id", "`id` must be a string")),
        };
        Self::parse(&d.doc_type, &id)
    }
}

/// An update as the client stated it, validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    #[serde(deserialize_with = "base_version")]
    pub base_version: i64,
    #[serde(deserialize_with = "changes")]
    pub changes: Map<String, Value>,
    /// Milliseconds since the epoch.
    #[serde(default, deserialize_with = "edited_at")]
    pub edited_at: Option<i64>,
    #[serde(rename = "clientMutationId", default, deserialize_with = "mutation_id")]
    pub mutation_id: Option<String>,
}

fn base_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
        serde::de::Error::custom(
            "`baseVersion` must be a non-negative integer (0 for a new document)",
        )
    })
}

fn changes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    let changes = match Value::deserialize(d)? {
        Value::Object(m) if !m.is_empty() => m,
        _ => {
            return Err(serde::de::Error::custom(
                "`changes` must be an object naming at least one field",
            ));
        }
    };
    if let Some(name) = changes
        .keys()
        .find(|k| k.is_empty() || k.len() > MAX_FIELD_LEN)
    {
        return Err(serde::de::Error::custom(format!(
            "`changes`: field names are 1-{MAX_FIELD_LEN} bytes; `{}` is not",
            name.chars().take(32).collect::<String>()
        )));
    }
    Ok(changes)
}

fn edited_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => parse_time(&v)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(e.message)),
    }
}

fn mutation_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) if !s.is_empty() && s.len() <= MAX_MUTATION_ID_LEN => Ok(Some(s)),
        _ => Err(serde::de::Error::custom(format!(
            "`clientMutationId` must be a string of 1-{MAX_MUTATION_ID_LEN} bytes"
        ))),
    }
}

/// `{ baseVersion, changes, editedAt?, clientMutationId? }` (other keys,
/// such as `type` and `id`, are the caller's).
pub fn parse_update(body: &Value) -> AppResult<UpdateRequest> {
    from_value(
        body,
        "{ baseVersion, changes, editedAt?, clientMutationId? }",
    )
}

/// `editedAt`: an ISO-8601 (RFC 3339) string or milliseconds since the epoch.
pub fn parse_time(v: &Value) -> AppResult<i64> {
    let bad = || {
        invalid(
            "editedAt",
            "`editedAt` must be an ISO-8601 time or milliseconds since the epoch",
        )
    };
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(ms), _) if ms >= 0 => Ok(ms),
            (None, Some(ms)) if (0.0..1e15).contains(&ms) => Ok(ms as i64),
            _ => Err(bad()),
        },
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad())?;
            let ms = t.unix_timestamp_nanos() / 1_000_000;
            i64::try_from(ms).ok().filter(|ms| *ms >= 0).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use serde_json::json;

    #[test]
    fn names_follow_the_room_grammar() {
        assert!(DocRef::parse("order", "67890").is_ok());
        assert!(DocRef::parse("work_order-2", "a.b@c-d_e").is_ok());
        for (ty, id) in [
            ("Order", "1"),
            ("1order", "1"),
            ("order:x", "1"),
            ("", "1"),
            ("order", ""),
            ("order", "a/b"),
            ("order", "a b"),
            ("order", &"x".repeat(129)),
        ] {
            assert_eq!(
                DocRef::parse(ty, id).unwrap_err().code,
                Code::ValidationFailed,
                "{ty}/{id}"
            );
        }
        // The room `document:order:{id}` would exceed 128 bytes.
        assert!(DocRef::parse("order", &"x".repeat(128)).is_err());
        assert!(DocRef::parse("order", &"x".repeat(113)).is_ok());
        assert_eq!(
            DocRef::from_payload(&json!({"type": "order", "id": 7}))
                .unwrap()
                .room(),
            "document:order:7"
        );
    }

    #[test]
    fn update_shapes() {
        let ok = parse_update(&json!({
            "baseVersion": 3, "changes": {"a": 1, "b": null},
            "editedAt": "2026-01-01T00:00:00.250Z", "clientMutationId": "m1"
        }))
        .unwrap();
        assert_eq!(ok.base_version, 3);
        assert_eq!(ok.edited_at, Some(1_767_225_600_250));
        assert_eq!(ok.mutation_id.as_deref(), Some("m1"));
        assert_eq!(
            parse_update(
                &json!({"baseVersion": 0, "changes": {"a": 1}, "editedAt": 1_700_000_000_000i64})
            )
            .unwrap()
            .edited_at,
            Some(1_700_000_000_000)
        );
        for bad in [
            json!({"changes": {"a": 1}}),
            json!({"baseVersion": -1, "changes": {"a": 1}}),
            json!({"baseVersion": "1", "changes": {"a": 1}}),
            json!({"baseVersion": 1.5, "changes": {"a": 1}}),
            json!({"baseVersion": 0}),
            json!({"baseVersion": 0, "changes": {}}),
            json!({"baseVersion": 0, "changes": [1]}),
            json!({"baseVersion": 0, "changes": {"": 1}}),
            json!({"baseVersion": 0, "changes": {"a": 1}, "editedAt": "yesterday"}),
            json!({"baseVersion": 0, "changes": {"a": 1}, "editedAt": -5}),
            json!({"baseVersion": 0, "changes": {"a": 1}, "editedAt": true}),
            json!({"baseVersion": 0, "changes": {"a": 1}, "clientMutationId": 5}),
            json!({"baseVersion": 0, "changes": {"a": 1}, "clientMutationId": ""}),
        ] {
            assert_eq!(
                parse_update(&bad).unwrap_err().code,
                Code::ValidationFailed,
                "{bad}"
            );
        }
    }
}
