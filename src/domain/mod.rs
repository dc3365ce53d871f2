//! Pure domain types and rules, free of I/O so they can be unit-tested:
//! roles and identities, company and user ids, room names and their
//! tenant-scoped internal form, session ids, the target rooms of an event,
//! event type names, text the database can store, and the presence and
//! command state machines, and the telemetry-rule evaluation.

pub mod command;
pub mod event_type;
pub mod identity;
pub mod ids;
pub mod parse;
pub mod presence;
pub mod room;
pub mod rule;
pub mod session_id;
pub mod targets;
pub mod text;

pub use identity::{Identity, Role};
pub use ids::{CompanyId, UserId};
pub use room::{RoomName, internal_room, receive_room, receiving_role};
pub use session_id::SessionId;
pub use targets::Targets;

/// Milliseconds since the Unix epoch, the protocol's `serverTime` unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// ISO-8601 (RFC 3339) UTC timestamp for a millisecond instant.
pub fn iso8601(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
