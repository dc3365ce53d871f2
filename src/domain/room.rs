//! Room names: the logical names clients use and the tenant-scoped internal
//! names socket.io rooms carry.
//!
//! Internal name = `{companyId}/{logical}`, e.g. `acme/order:67890`,
//! `acme/company`, `acme/user:u1`, `acme/role:operator`. Company ids and
//! logical names never contain `/` (both are validated), so the mapping is
//! injective: two companies can never share a socket.io room.
//!
//! Receive filtering uses one more room per socket, `{companyId}#receive:{role}`
//! with the socket's own role ([`receive_room`]). It is not a logical room
//! (no `/`, so it never shows in room lists) and nobody subscribes to it: a
//! delivery goes `except` the receive rooms of roles that may not receive the
//! type. Filtering on the subscribable `role:` rooms instead would hide from
//! an admin who joined `role:operator` everything operators may not get,
//! in every room.

use std::fmt;

use crate::domain::identity::Role;
use crate::error::{AppError, Code};

pub const MAX_ROOM_LEN: usize = 128;

/// A validated logical room name:
/// `^[a-z][a-z0-9_-]*(:[A-Za-z0-9_.@-]+)*$`, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

/// The automatic rooms and entity-room kinds a name can denote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind<'a> {
    Company,
    User(&'a str),
    Role(&'a str),
    /// `{kind}:{id…}` or a bare kind such as `alarms`.
    Entity(&'a str),
}

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        if raw.is_empty() || raw.len() > MAX_ROOM_LEN || !valid_syntax(raw) {
            return Err(AppError::new(
                Code::InvalidRoom,
                format!(
                    "room names are lowercase `kind` or `kind:id` (letters, digits, _ . @ -), at most {MAX_ROOM_LEN} bytes"
                ),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn company() -> Self {
        Self("company".into())
    }

    /// The room of the sessions that asked for `presence:batch` frames
    /// (`presence:list { batches: true }`). Not a valid room name, so no
    /// client can `subscribe` to it or publish into it.
    pub fn presence_batches() -> Self {
        Self("#presence".into())
    }

    pub fn user(user_id: &str) -> Self {
        Self(format!("user:{user_id}"))
    }

    pub fn role(role: Role) -> Self {
        Self(format!("role:{role}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment: `order` for `order:1`, `company` for `company`.
    pub fn kind_prefix(&self) -> &str {
        self.0.split(':').next().unwrap_or(&self.0)
    }

    pub fn kind(&self) -> RoomKind<'_> {
        match self.0.split_once(':') {
            None if self.0 == "company" => RoomKind::Company,
            Some(("user", id)) => RoomKind::User(id),
            Some(("role", r)) => RoomKind::Role(r),
            _ => RoomKind::Entity(self.kind_prefix()),
        }
    }

    pub fn internal(&self, company_id: &str) -> String {
        internal_room(company_id, &self.0)
    }
}

impl serde::Serialize for RoomName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Parsed on the way in: a request field holding a bad name fails with
/// INVALID_ROOM (see [`crate::domain::parse`]).
impl<'de> serde::Deserialize<'de> for RoomName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RoomName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `{companyId}/{logical}`; see the module docs.
pub fn internal_room(company_id: &str, logical: &str) -> String {
    format!("{company_id}/{logical}")
}

/// The receive-filter room of a role; see the module docs.
pub fn receive_room(company_id: &str, role: Role) -> String {
    format!("{company_id}#receive:{role}")
}

/// Whose receive rules apply to a socket in `room`: in a role room
/// `role:X`, X's (an admin who joined `role:operator` gets there what
/// operators get), elsewhere the socket's own.
pub fn receiving_role(room: &str, own: Role) -> Role {
    room.strip_prefix("role:")
        .and_then(Role::parse)
        .unwrap_or(own)
}

/// Splits an internal name back into `(company, logical)`.
pub fn split_internal(internal: &str) -> Option<(&str, &str)> {
    internal.split_once('/')
}

fn valid_syntax(raw: &str) -> bool {
    let mut segments = raw.split(':');
    let Some(head) = segments.next() else {
        return false;
    };
    let mut head_bytes = head.bytes();
    let head_ok = matches!(head_bytes.next(), Some(b'a'..=b'z'))
        && head_bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    head_ok
        && segments.all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_spec_examples() {
        for ok in [
            "company",
            "user:u1",
            "role:operator",
            "order:67890",
            "machine:m1",
            "reactor:reactor-A",
            "telemetry:59",
            "alarms",
            "document:order:42",
            "user:jane.doe@acme",
        ] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "Order:1",
            "order:",
            ":x",
            "a b",
            "order:1/2",
            "1abc",
            "order::1",
            "ü",
        ] {
            let err = RoomName::parse(bad).unwrap_err();
            assert_eq!(err.code, Code::InvalidRoom, "{bad}");
        }
        assert!(RoomName::parse(&format!("a:{}", "x".repeat(127))).is_err());
    }

    #[test]
    fn role_rooms_set_the_receiving_role() {
        assert_eq!(receiving_role("role:operator", Role::Admin), Role::Operator);
        assert_eq!(receiving_role("company", Role::Admin), Role::Admin);
        assert_eq!(
            receiving_role("order:1", Role::Supervisor),
            Role::Supervisor
        );
        assert_eq!(receiving_role("role:nobody", Role::Admin), Role::Admin);
        assert_eq!(split_internal(&receive_room("acme", Role::Admin)), None);
    }

    #[test]
    fn kinds() {
        let r = |s| RoomName::parse(s).unwrap();
        assert_eq!(r("company").kind(), RoomKind::Company);
        assert_eq!(r("user:u1").kind(), RoomKind::User("u1"));
        assert_eq!(r("role:admin").kind(), RoomKind::Role("admin"));
        assert_eq!(r("order:1").kind(), RoomKind::Entity("order"));
        assert_eq!(r("alarms").kind(), RoomKind::Entity("alarms"));
    }

    proptest! {
        #[test]
        fn internal_names_never_collide_across_companies(
            a in "[A-Za-z0-9_.@-]{1,16}", b in "[A-Za-z0-9_.@-]{1,16}",
            room in "[a-z][a-z0-9_-]{0,8}(:[A-Za-z0-9_.@-]{1,8}){0,3}",
        ) {
            let room = RoomName::parse(&room).unwrap();
            prop_assume!(a != b);
            prop_assert_ne!(room.internal(&a), room.internal(&b));
            let internal = room.internal(&a);
            prop_assert_eq!(split_internal(&internal), Some((a.as_str(), room.as_str())));
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = RoomName::parse(&s);
        }
    }
}
