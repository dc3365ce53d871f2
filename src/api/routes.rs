//! The one route table: every request a client can make, by the name
//! socket.io clients send, and its [`Verb`]. Every transport maps its own
//! request names onto these verbs, and the fuzz test (tests/fuzz.rs)
//! sends every one of them.

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
    CommandSend,
    CommandAck,
    CommandResult,
}

/// The name under which socket.io v2 clients reach `ping` (v2 reserves
/// the name `ping`).
pub const PING_ALIAS: &str = "server:ping";

/// Request names and their verbs.
pub const ROUTES: [(&str, Verb); 15] = [
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
    ("command:send", Verb::CommandSend),
    ("command:ack", Verb::CommandAck),
    ("command:result", Verb::CommandResult),
];

impl Verb {
    /// The verb of a request name, if it is one.
    pub fn from_name(name: &str) -> Option<Verb> {
        ROUTES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// A bounded label for metrics: the route name, or `unknown`.
pub fn route_label(name: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("unknown", |(n, _)| n)
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
    }
}
