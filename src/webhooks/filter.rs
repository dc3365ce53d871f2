//! Which events an endpoint receives: published events whose type is in
//! the endpoint's `types` (empty = any) and whose priority is at least its
//! `minPriority` (unset = any); lifecycle events (presence `user:online` /
//! `user:offline`, command status) only when named in `types`.

use serde_json::{Value, json};

use crate::catalog::Priority;
use crate::domain::iso8601;

/// An endpoint's subscription, as the matcher holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint_id: String,
    pub types: Vec<String>,
    pub min_priority: Option<Priority>,
}

/// What an event is to the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A catalog event, with its priority.
    Published(Priority),
    /// A lifecycle signal, matched by name only.
    Lifecycle,
}

impl Subscription {
    pub fn matches(&self, event_type: &str, kind: Kind) -> bool {
        let named = self.types.iter().any(|t| t == event_type);
        match kind {
            Kind::Lifecycle => named,
            Kind::Published(p) => {
                (self.types.is_empty() || named) && self.min_priority.is_none_or(|min| p >= min)
            }
        }
    }
}

/// An event as a webhook carries it.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub id: &'a str,
    pub company: &'a str,
    pub event_type: &'a str,
    pub rooms: &'a [String],
    pub payload: &'a Value,
    /// `None` for lifecycle events.
    pub priority: Option<Priority>,
    pub source: &'a str,
    pub publisher: Option<&'a str>,
    pub created_at: i64,
}

impl Event<'_> {
    pub fn kind(&self) -> Kind {
        self.priority.map_or(Kind::Lifecycle, Kind::Published)
    }

    /// The POST body: the event envelope (see docs/protocol.md, "Webhooks").
    pub fn body(&self) -> String {
        let mut v = json!({
            "id": self.id,
            "type": self.event_type,
            "companyId": self.company,
            "rooms": self.rooms,
            "payload": self.payload,
            "source": self.source,
            "timestamp": iso8601(self.created_at),
        });
        if let Some(p) = self.priority {
            v["priority"] = json!(p.as_str());
        }
        if let Some(p) = self.publisher {
            v["publisher"] = json!(p);
        }
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(types: &[&str], min: Option<Priority>) -> Subscription {
        Subscription {
            endpoint_id: "w".into(),
            types: types.iter().map(|t| t.to_string()).collect(),
            min_priority: min,
        }
    }

    #[test]
    fn types_and_priority_both_filter() {
        let high = Kind::Published(Priority::High);
        let low = Kind::Published(Priority::Low);
        assert!(sub(&["alarm"], None).matches("alarm", low));
        assert!(!sub(&["alarm"], None).matches("order:x", high));
        assert!(sub(&[], Some(Priority::High)).matches("order:x", high));
        assert!(!sub(&[], Some(Priority::High)).matches("order:x", low));
        assert!(
            sub(&["alarm"], Some(Priority::High))
                .matches("alarm", Kind::Published(Priority::Critical))
        );
        assert!(!sub(&["alarm"], Some(Priority::High)).matches("alarm", low));
    }

    #[test]
    fn lifecycle_events_only_by_name() {
        assert!(sub(&["user:online"], None).matches("user:online", Kind::Lifecycle));
        assert!(!sub(&[], None).matches("user:online", Kind::Lifecycle));
        assert!(!sub(&[], Some(Priority::Low)).matches("user:offline", Kind::Lifecycle));
    }

    #[test]
    fn body_is_the_envelope() {
        let rooms = vec!["company".to_string()];
        let payload = json!({"a": 1});
        let e = Event {
            id: "e1",
            company: "acme",
            event_type: "alarm",
            rooms: &rooms,
            payload: &payload,
            priority: Some(Priority::Critical),
            source: "api",
            publisher: None,
            created_at: 0,
        };
        let v: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["id"], "e1");
        assert_eq!(v["companyId"], "acme");
        assert_eq!(v["priority"], "critical");
        assert_eq!(v["payload"], json!({"a": 1}));
        assert!(
            v["timestamp"]
                .as_str()
                .unwrap()
                .starts_with("1970-01-01T00:00:00")
        );
    }
}
