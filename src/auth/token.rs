//! Where a connection's token comes from, for every transport: the
//! `token` query parameter (Swift `connectParams`, browser `WebSocket`
//! and `EventSource`, which cannot set headers) and the
//! `Authorization: Bearer` header. (A transport's own payload, such as
//! socket.io's `auth.token`, is checked by that transport first.)

/// The `token` query parameter, percent-decoded.
pub fn from_query(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

/// `application/x-www-form-urlencoded` decoding; malformed escapes stay as
/// they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn query_and_header_sources() {
        assert_eq!(
            from_query(Some("EIO=4&token=a%2Eb")).as_deref(),
            Some("a.b")
        );
        assert_eq!(from_query(Some("EIO=4")), None);
        assert_eq!(from_query(None), None);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "Bearer  t1 ".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some("t1"));
    }
}
