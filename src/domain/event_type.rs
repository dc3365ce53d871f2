//! Event type names: the grammar every type follows and the names no type
//! may take.
//!
//! A domain event reaches clients as a socket.io event named after its type,
//! so a type must never be a name that clients or this server give a meaning
//! of their own:
//!
//! - socket.io-client 4.x (and socket.io-parser 4.x) reserve `connect`,
//!   `connect_error`, `disconnect`, `disconnecting`, `newListener`,
//!   `removeListener`: a v4 client that receives one of them drops the
//!   connection with "parse error";
//! - socket.io-client 2.x also reserves `connect_timeout`, `connecting`,
//!   `error`, `reconnect`, `reconnect_attempt`, `reconnect_failed`,
//!   `reconnect_error`, `reconnecting`, `ping`, `pong` (they fire its own
//!   handlers), and Socket.IO-Client-Swift's client events add
//!   `reconnectAttempt`, `statusChange`, `websocketUpgrade`;
//! - the server's own signals: `session` and `session:*`, `command` (a device
//!   command delivered to its target room, after the send rights, `args`
//!   and interlocks were checked: a published `command` would skip them),
//!   and the `user:*`, `document:*`, `presence:*`, `replay:*` families.

use std::fmt;

/// Longest event type name, in bytes.
pub const MAX_TYPE_LEN: usize = 64;

const RESERVED: [&str; 19] = [
    // socket.io-client 4.x / socket.io-parser 4.x
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    // socket.io-client 2.x
    "connect_timeout",
    "connecting",
    "error",
    "reconnect",
    "reconnect_attempt",
    "reconnect_failed",
    "reconnect_error",
    "reconnecting",
    "ping",
    "pong",
    // Socket.IO-Client-Swift client events
    "reconnectAttempt",
    "statusChange",
    "websocketUpgrade",
];

/// Names the server emits itself (`session`) and the prefixes of its signal
/// families.
const SERVER_NAMES: [&str; 2] = ["session", "command"];
const SERVER_PREFIXES: [&str; 5] = ["session:", "user:", "document:", "presence:", "replay:"];

/// Why a type name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeNameError {
    #[error("event type names are 1-{MAX_TYPE_LEN} bytes: a letter, then letters, digits, _ . : -")]
    Syntax,
    #[error("`{0}` is reserved by socket.io clients; choose another event type name")]
    ReservedByClients(String),
    #[error("`{0}` is reserved for the server's own signals; choose another event type name")]
    ReservedByServer(String),
}

/// Checks a type name: `^[A-Za-z][A-Za-z0-9_.:-]*$`, at most 64 bytes, and
/// not reserved (see the module docs).
pub fn check(name: &str) -> Result<(), TypeNameError> {
    let mut bytes = name.bytes();
    let syntax_ok = name.len() <= MAX_TYPE_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if !syntax_ok {
        return Err(TypeNameError::Syntax);
    }
    if RESERVED.contains(&name) {
        return Err(TypeNameError::ReservedByClients(name.to_string()));
    }
    if SERVER_NAMES.contains(&name) || SERVER_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(TypeNameError::ReservedByServer(name.to_string()));
    }
    Ok(())
}

impl TypeNameError {
    /// A short reason for error details.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::ReservedByClients(_) | Self::ReservedByServer(_) => "reserved",
        }
    }
}

/// Displays a client-supplied name safely in messages (bounded, printable).
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars().take(MAX_TYPE_LEN) {
            if c.is_control() {
                f.write_str("\u{FFFD}")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn catalog_style_names_pass() {
        for ok in [
            "order:status_changed",
            "reactor_status_change",
            "line:speed_changed",
            "command_status",
            "a",
            "v1.thing-happened",
            "users:online", // only the `user:` family is the server's
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn reserved_names_are_refused() {
        for name in RESERVED {
            assert!(
                matches!(check(name), Err(TypeNameError::ReservedByClients(_))),
                "{name}"
            );
        }
        for name in [
            "session",
            "session:expired",
            "command",
            "user:online",
            "user:typing",
            "document:updated",
            "document:conflict",
            "presence:joined",
            "replay:truncated",
        ] {
            assert!(
                matches!(check(name), Err(TypeNameError::ReservedByServer(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        let long = "a".repeat(MAX_TYPE_LEN + 1);
        for bad in ["", "1abc", ":x", "a b", "a/b", "ü", "a\u{0}", long.as_str()] {
            assert_eq!(check(bad), Err(TypeNameError::Syntax), "{bad:?}");
        }
        assert!(check(&"a".repeat(MAX_TYPE_LEN)).is_ok());
    }

    proptest! {
        #[test]
        fn check_never_panics_and_shown_is_bounded(s in ".{0,200}") {
            let _ = check(&s);
            prop_assert!(Shown(&s).to_string().chars().count() <= MAX_TYPE_LEN);
        }
    }
}
