//! Publishing domain events, shared by every transport (`event:publish`)
//! and the HTTP API: validation against the catalog ([`prepare`]), the
//! durable append, and the deliveries that follow (durable ones through
//! the durable hub, ephemeral ones through the fan-out, directly or through
//! conflation). [`Publisher`] is the service.

pub mod conflate;
mod publisher;

use serde_json::{Value, json};

use crate::catalog::{EventSpec, Priority, RoleSet};
use crate::domain::{Targets, iso8601, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::fanout::Delivery;
use crate::store::{Appended, NewEvent};
pub use publisher::{Publisher, Settings};

/// Retention of critical events in the offline queue (SPEC §5).
pub const CRITICAL_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// A validated event ready to be stored and delivered.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub id: String,
    pub company: String,
    pub event_type: String,
    pub rooms: Vec<String>,
    pub payload: Value,
    pub priority: Priority,
    pub source: String,
    pub publisher: Option<String>,
    pub durable: bool,
    pub receive: RoleSet,
    pub created_at: i64,
    pub idempotency_key: Option<String>,
    pub conflate: Option<(String, u64)>,
}

/// Input common to both publish paths, already parsed.
pub struct Draft<'a> {
    pub company: &'a str,
    pub event_type: &'a str,
    pub rooms: Targets,
    pub payload: Value,
    pub priority: Option<Priority>,
    pub source: String,
    pub publisher: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Size check first (SPEC §8), then the schema.
pub fn prepare(spec: &EventSpec, draft: Draft<'_>, max_payload: usize) -> AppResult<Prepared> {
    let size = serde_json::to_vec(&draft.payload)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_payload {
        return Err(AppError::new(
            Code::PayloadTooLarge,
            format!("payload is {size} bytes; the limit is {max_payload}"),
        ));
    }
    spec.validate(&draft.payload)?;
    let priority = spec.priority_for(&draft.payload, draft.priority);
    let conflate = spec
        .conflate
        .as_ref()
        .filter(|_| priority != Priority::Critical)
        .map(|c| {
            let key = match &c.key {
                // `59` and `"59"` are one endpoint (identifiers come as both).
                Some(field) => match draft.payload.get(field) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
                None => String::new(),
            };
            (key, c.window_ms)
        });
    Ok(Prepared {
        id: uuid::Uuid::now_v7().to_string(),
        company: draft.company.to_string(),
        event_type: draft.event_type.to_string(),
        rooms: draft.rooms.into_names(),
        payload: draft.payload,
        priority,
        source: draft.source,
        publisher: draft.publisher,
        durable: spec.durable,
        receive: spec.receive,
        created_at: now_ms(),
        idempotency_key: draft.idempotency_key,
        conflate,
    })
}

impl Prepared {
    pub(crate) fn new_event(&self, queue_ttl_ms: i64) -> NewEvent {
        let ttl = if self.priority == Priority::Critical {
            CRITICAL_TTL_MS.max(queue_ttl_ms)
        } else {
            queue_ttl_ms
        };
        NewEvent {
            id: self.id.clone(),
            company_id: self.company.clone(),
            event_type: self.event_type.clone(),
            rooms: self.rooms.clone(),
            payload: self.payload.clone(),
            priority: self.priority.as_str().to_string(),
            source: self.source.clone(),
            publisher: self.publisher.clone(),
            created_at: self.created_at,
            expires_at: self.created_at + ttl,
            idempotency_key: self.idempotency_key.clone(),
            webhooks: Vec::new(),
        }
    }

    /// This event as the webhooks see it.
    pub(crate) fn webhook_event(&self) -> crate::webhooks::Event<'_> {
        crate::webhooks::Event {
            id: &self.id,
            company: &self.company,
            event_type: &self.event_type,
            rooms: &self.rooms,
            payload: &self.payload,
            priority: Some(self.priority),
            source: &self.source,
            publisher: self.publisher.as_deref(),
            created_at: self.created_at,
        }
    }

    /// One delivery per room, with that room's offset when durable.
    pub fn deliveries(&self, appended: Option<&Appended>) -> Vec<Delivery> {
        self.rooms
            .iter()
            .map(|room| {
                let offset = appended
                    .and_then(|a| a.offsets.iter().find(|(r, _)| r == room))
                    .map(|(_, o)| *o);
                let mut meta = json!({
                    "id": self.id,
                    "type": self.event_type,
                    "room": room,
                    "timestamp": iso8601(self.created_at),
                    "source": self.source,
                    "priority": self.priority.as_str(),
                });
                if let Some(offset) = offset {
                    meta["offset"] = json!(offset);
                }
                if let Some(p) = &self.publisher {
                    meta["publisher"] = json!(p);
                }
                Delivery {
                    company: self.company.clone(),
                    room: room.clone(),
                    event_type: self.event_type.clone(),
                    payload: self.payload.clone(),
                    meta,
                    receive: self.receive,
                    exclude: None,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::domain::RoomName;

    fn draft<'a>(ty: &'a str, payload: Value) -> Draft<'a> {
        Draft {
            company: "acme",
            event_type: ty,
            rooms: Targets::one(RoomName::company()),
            payload,
            priority: None,
            source: "test".into(),
            publisher: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn size_is_checked_before_schema() {
        let c = Catalog::load(None).unwrap();
        let spec = c.event("order:status_changed").unwrap();
        let big = json!({ "x": "y".repeat(70_000) });
        assert_eq!(
            prepare(spec, draft("order:status_changed", big), 65_536)
                .unwrap_err()
                .code,
            Code::PayloadTooLarge
        );
    }

    #[test]
    fn critical_alerts_are_never_conflated_and_get_mapped_priority() {
        let c = Catalog::load(None).unwrap();
        let spec = c.event("telemetry").unwrap();
        let p = prepare(
            spec,
            draft(
                "telemetry",
                json!({"endpointId": 5, "value": 1, "timestamp": "2026-01-01T00:00:00Z"}),
            ),
            65_536,
        )
        .unwrap();
        assert_eq!(p.conflate, Some(("5".to_string(), 250)));
        let mut d = draft(
            "telemetry",
            json!({"endpointId": 5, "value": 1, "timestamp": "2026-01-01T00:00:00Z"}),
        );
        d.priority = Some(Priority::Critical);
        assert_eq!(prepare(spec, d, 65_536).unwrap().conflate, None);
    }

    #[test]
    fn deliveries_carry_per_room_offsets() {
        let c = Catalog::load(None).unwrap();
        let spec = c.event("order:status_changed").unwrap();
        let mut d = draft(
            "order:status_changed",
            json!({"orderId":"1","oldStatus":"a","newStatus":"b","timestamp":"2026-01-01T00:00:00Z"}),
        );
        d.rooms.push(RoomName::parse("order:1").unwrap());
        let p = prepare(spec, d, 65_536).unwrap();
        let a = Appended {
            id: p.id.clone(),
            offsets: vec![("company".into(), 7), ("order:1".into(), 2)],
            duplicate: false,
        };
        let ds = p.deliveries(Some(&a));
        assert_eq!(ds[0].meta["offset"], 7);
        assert_eq!(ds[1].meta["offset"], 2);
        assert_eq!(ds[1].meta["room"], "order:1");
    }
}
