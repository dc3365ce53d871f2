//! Who a connection is: the verified claims of its token.

use serde::{Deserialize, Serialize};

/// The four roles of SPEC §2, ordered by privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Supervisor,
    Manager,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Supervisor, Role::Manager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified identity. Ids are validated at the token boundary
/// ([`valid_id`]) so they can be embedded in internal room names safely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub user_id: String,
    pub company_id: String,
    pub role: Role,
    pub permissions: Vec<String>,
    /// `exp` of the current token, seconds since the epoch.
    #[serde(skip)]
    pub expires_at: i64,
}

/// The largest time a JavaScript `Date` can hold (ms since the epoch).
pub const MAX_JS_DATE_MS: i64 = 8_640_000_000_000_000;

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// `exp` in milliseconds for clients, saturated at the largest JavaScript
    /// `Date` (`exp` may be anything up to "never").
    pub fn expires_at_ms(&self) -> i64 {
        self.expires_at.saturating_mul(1000).min(MAX_JS_DATE_MS)
    }
}

/// Ids (users, companies) share the character set of room-name segments:
/// `[A-Za-z0-9_.@-]`, 1 to 64 bytes. Anything else could smuggle a separator
/// into an internal room name.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_order() {
        assert_eq!(Role::parse("manager"), Some(Role::Manager));
        assert_eq!(Role::parse("Manager"), None);
        assert!(Role::Admin > Role::Operator);
    }

    #[test]
    fn expiry_in_ms_saturates() {
        let at = |expires_at| Identity {
            user_id: "u".into(),
            company_id: "c".into(),
            role: Role::Operator,
            permissions: vec![],
            expires_at,
        };
        assert_eq!(at(1_700_000_000).expires_at_ms(), 1_700_000_000_000);
        assert_eq!(at(i64::MAX).expires_at_ms(), MAX_JS_DATE_MS);
        assert_eq!(at(i64::MAX / 1000 + 1).expires_at_ms(), MAX_JS_DATE_MS);
    }

    #[test]
    fn ids_refuse_separators() {
        assert!(valid_id("acme-01"));
        assert!(valid_id("jane.doe@acme"));
        assert!(!valid_id("acme/evil"));
        assert!(!valid_id("a b"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"x".repeat(65)));
    }
}
