//! Values that must never reach a log line, an error message or `Debug`
//! output (SPEC §10): [`Secret`] for keys and the JWT secret, [`SecretUrl`]
//! for connection URLs whose password is hidden, and [`redact_url`], the one
//! helper that hides a password in any URL-shaped text.
//!
//! Reading the value takes an explicit `.expose()`, so every place that
//! hands a secret on (to a signer, a comparison, a driver) is greppable.

use std::fmt;

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the code that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A connection URL (`postgres://user:pass@host/db`, `redis://:pass@host`):
/// `Debug` and `Display` print it with the password as `***`, which is
/// useful in logs (which host, which database) and safe.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The full URL, password included, for the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Hides the password of a URL: `scheme://user:***@host/…`. A Redis URL
/// with a lone credential (`redis://secret@host`, which Redis clients read
/// as a password) has it hidden whole: `redis://***@host/…`. Query
/// parameters named like a password (`password=`, `pass=`, `pwd=`) are
/// hidden too. Text that is not a URL comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    // The authority ends at the first `/`, `?` or `#` after the scheme; the
    // credentials end at its last `@` (a password may contain `@`).
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let mut out = url[..scheme_end].to_string();
    match authority.rfind('@') {
        Some(at) => {
            let creds = &authority[..at];
            match creds.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***")),
                // Redis clients read a lone credential as the password.
                None if url.starts_with("redis") => out.push_str("***"),
                None => out.push_str(creds),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&redact_query(&rest[authority_len..]));
    out
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_password_key(k) => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

fn is_password_key(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "password" | "pass" | "pwd" | "sslpassword"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        for (raw, shown) in [
            ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@ss@h:5432/db", "postgres://u:***@h:5432/db"),
            ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://secret@h", "redis://***@h"),
            ("redis://h:6379", "redis://h:6379"),
            ("postgres://postgres@h/db", "postgres://postgres@h/db"),
            ("sqlite://x.db", "sqlite://x.db"),
            ("sqlite:x.db", "sqlite:x.db"),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            // An `@` in the path is not a credential separator.
            ("postgres://h/db@x", "postgres://h/db@x"),
        ] {
            assert_eq!(redact_url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn debug_and_display_hide_values() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2-hunter2");
        let u = SecretUrl::new("postgres://u:hunter2@h/db");
        assert_eq!(format!("{u}"), "postgres://u:***@h/db");
        assert_eq!(format!("{u:?}"), "\"postgres://u:***@h/db\"");
        assert_eq!(u.expose(), "postgres://u:hunter2@h/db");
    }
}
