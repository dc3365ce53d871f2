//! Session ids: who a connection is on this node, whatever its transport.
//!
//! The format is Engine.IO's (16 URL-safe base64 characters), so a
//! Socket.IO socket's id is its session id unchanged and other transports
//! mint ids from the same alphabet: ids never collide across transports and
//! are `Copy`, so per-session indexes need no allocation for their keys.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A connection's id on this node (unique across the cluster in practice:
/// 96 random bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh random id.
    pub fn new() -> Self {
        let mut rng = rand::rng();
        let mut id = [0u8; 16];
        for b in &mut id {
            *b = ALPHABET[rng.random_range(0..ALPHABET.len())];
        }
        Self(id)
    }

    /// Parses the 16-character form (an Engine.IO sid's `as_str()`).
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; 16] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| ALPHABET.contains(b))
            .then_some(Self(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII from ALPHABET is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.as_str())
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("not a session id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_other_text() {
        let id = SessionId::new();
        assert_eq!(SessionId::parse(id.as_str()), Some(id));
        assert_ne!(SessionId::new(), id);
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse("0123456789abcde/"), None);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
    }
}
