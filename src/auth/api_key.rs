//! The API-key check of the server-to-server HTTP API, as a plain
//! function (the HTTP extractor that applies it, with the per-address
//! throttle, is `http::api_key`).

use crate::secret::Secret;

/// Whether `presented` is one of `keys`. Every key is compared fully, so
/// timing does not reveal which key or how much of one matched.
pub fn is_valid(keys: &[Secret], presented: &str) -> bool {
    keys.iter().fold(false, |found, key| {
        found | constant_time_eq(key.expose().as_bytes(), presented.as_bytes())
    })
}

/// Compares in time that depends only on the length of `key` (the
/// configured one), never on where `presented` first differs or how long it is.
fn constant_time_eq(key: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(key.len() != presented.len());
    for (i, k) in key.iter().enumerate() {
        diff |= k ^ presented.get(i).copied().unwrap_or(!k);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-key", b"secret-kez"));
        assert!(!constant_time_eq(b"secret-key", b"secret-key-longer"));
        assert!(!constant_time_eq(b"secret-key", b"secret"));
        assert!(!constant_time_eq(b"secret-key", b""));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
