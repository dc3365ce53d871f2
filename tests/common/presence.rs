//! Presence store rows for the store contract tests.

use switchyard::store::{SocketEntry, UserKey};

/// The departures' settle: how long a user stays listed without sockets.
pub const GRACE: i64 = 1_000;
/// `WS_PRESENCE_BROADCAST_MAX`'s default: departures count up to it + 1.
pub const BOUND: i64 = 500;
/// A `stale_before` that reaps no socket.
pub const NEVER_STALE: i64 = i64::MIN;

/// An operator's socket on `node`, connected at 1 s, in entity `rooms`.
pub fn socket(company: &str, user: &str, sid: &str, node: &str, rooms: &[&str]) -> SocketEntry {
    SocketEntry {
        company_id: company.into(),
        user_id: user.into(),
        role: "operator".into(),
        socket_id: sid.into(),
        node_id: node.into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        since: 1_000,
    }
}

pub fn user(company: &str, user: &str) -> UserKey {
    UserKey {
        company_id: company.into(),
        user_id: user.into(),
    }
}
