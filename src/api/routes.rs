//! The one route table: every request a client can make, by the name
//! socket.io clients send, and its [`Verb`] ([`ROUTES`]); and the other
//! names plain-WebSocket clients use for the same verbs ([`ALIASES`]).
//! Every transport maps its request names onto these verbs, and the fuzz
//! test (tests/fuzz.rs) sends every route (every verb has one).

/// What a request asks for, whatever its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Ping,
    Subscribe,
    Unsubscribe,
    Rooms,
    AuthRefresh,
    Publish,
    Ack,
    DocumentGet,
    DocumentUpdate,
    PresenceList,
    Typing,
    /// The session's own state (identity, rooms, transport).
    Status,
    CommandSend,
    CommandAck,
    CommandResult,
}

/// The name under which socket.io v2 clients reach `ping` (v2 reserves
/// the name `ping`).
pub const PING_ALIAS: &str = "server:ping";

/// Request names and their verbs.
pub const ROUTES: [(&str, Verb); 16] = [
    ("ping", Verb::Ping),
    (PING_ALIAS, Verb::Ping),
    ("subscribe", Verb::Subscribe),
    ("unsubscribe", Verb::Unsubscribe),
    ("rooms", Verb::Rooms),
    ("auth:refresh", Verb::AuthRefresh),
    ("event:publish", Verb::Publish),
    ("events:ack", Verb::Ack),
    ("document:get", Verb::DocumentGet),
    ("document:update", Verb::DocumentUpdate),
    ("presence:list", Verb::PresenceList),
    ("user:typing", Verb::Typing),
    ("session:status", Verb::Status),
    ("command:send", Verb::CommandSend),
    ("command:ack", Verb::CommandAck),
    ("command:result", Verb::CommandResult),
];

/// Names the seeds' plain-WebSocket clients send (`getRooms`, `publish`,
/// `ack`, `getStatus`), besides every name of [`ROUTES`]. `auth` and
/// `subscribeTo<Kind>` are read by the transport (`transport::ws::request`).
pub const ALIASES: [(&str, Verb); 5] = [
    ("getRooms", Verb::Rooms),
    ("publish", Verb::Publish),
    ("ack", Verb::Ack),
    ("getStatus", Verb::Status),
    ("status", Verb::Status),
];

impl Verb {
    /// The verb of a request name, if it is one.
    pub fn from_name(name: &str) -> Option<Verb> {
        ROUTES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The verb of a route name or of an alias.
    pub fn from_alias(name: &str) -> Option<Verb> {
        Verb::from_name(name).or_else(|| ALIASES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }
}

/// A bounded label for metrics: the route name, or `unknown`.
pub fn route_label(name: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("unknown", |(n, _)| n)
}

/// [`route_label`] for a name that may be an alias: the route of its verb.
pub fn alias_label(name: &str) -> &'static str {
    match Verb::from_alias(name) {
        Some(verb) => ROUTES
            .iter()
            .find(|(_, v)| *v == verb)
            .map_or("unknown", |(n, _)| n),
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_verbs_and_labels_are_bounded() {
        assert_eq!(Verb::from_name(PING_ALIAS), Some(Verb::Ping));
        assert_eq!(Verb::from_name("user:typing"), Some(Verb::Typing));
        assert_eq!(Verb::from_name("nope"), None);
        assert_eq!(route_label("event:publish"), "event:publish");
        assert_eq!(route_label("x".repeat(1000).as_str()), "unknown");
        assert_eq!(Verb::from_alias("getRooms"), Some(Verb::Rooms));
        assert_eq!(Verb::from_alias("rooms"), Some(Verb::Rooms));
        assert_eq!(
            Verb::from_name("getRooms"),
            None,
            "aliases are not socket.io events"
        );
    }

    #[test]
    fn every_alias_names_a_verb_that_has_a_route() {
        // The fuzz test sends every route; an alias reaches the same verb.
        for (alias, verb) in ALIASES {
            assert!(ROUTES.iter().any(|(_, v)| *v == verb), "{alias}");
            assert!(Verb::from_name(alias).is_none(), "{alias} shadows a route");
        }
    }
}
