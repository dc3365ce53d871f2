//! Origin check for the connection endpoints (Socket.IO on both its
//! transports, plain WebSocket, SSE): stops
//! cross-site WebSocket hijacking when browsers send cookies. Browsers always
//! send `Origin` on WebSocket handshakes and cross-origin requests; clients
//! that send none (native apps, servers) are not browsers and pass, and an
//! `Origin` naming this server itself is what native WebSocket libraries send
//! (SPEC §2), so it passes too.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, Code};
use crate::state::AppState;

/// Whether `origin` may use the socket endpoint. `None` = any origin
/// (development default). Otherwise an origin naming this server itself
/// (see [`same_origin`]) is always allowed, because native clients send
/// exactly that (Socket.IO-Client-Swift's Starscream, python-socketio's
/// websocket-client, React Native), and listed origins are allowed.
pub fn allowed(origins: Option<&[String]>, origin: &str, host: Option<&str>) -> bool {
    match origins {
        None => true,
        Some(list) => {
            host.is_some_and(|h| same_origin(origin, h))
                || list.iter().any(|o| o.eq_ignore_ascii_case(origin))
        }
    }
}

/// `scheme://host[:port]` against a `Host` header: same host (ASCII case
/// ignored) and same port, the scheme ignored, default ports normalised
/// (http, ws → 80; https, wss → 443). A `Host` without a port matches an
/// origin on its scheme's default port (behind a TLS proxy the server cannot
/// tell 80 from 443).
pub fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return false,
    };
    let (Some((o_host, o_port)), Some((h_host, h_port))) =
        (split_authority(authority), split_authority(host))
    else {
        return false;
    };
    let o_port = o_port.unwrap_or(default_port);
    o_host.eq_ignore_ascii_case(h_host)
        && match h_port {
            Some(port) => port == o_port,
            None => o_port == default_port,
        }
}

/// `host[:port]` or `[v6]:port` → (host, port); `None` if malformed.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let rest = &authority[end + 1..];
        (&authority[..=end], rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse().ok()?),
    };
    Some((host, port))
}

/// Copies the parts of a Socket.IO request that live as long as the socket
/// (URI, headers) out of hyper's read buffer. Left as they are, they share
/// that 16 KiB buffer and keep it alive for the whole connection: this is
/// most of the memory an idle WebSocket costs.
pub fn own_request_parts(mut req: Request) -> Request {
    if !req.uri().path().starts_with("/socket.io") {
        return req;
    }
    if let Ok(uri) = req.uri().to_string().parse() {
        *req.uri_mut() = uri;
    }
    let mut headers = http::HeaderMap::with_capacity(req.headers().len());
    for (name, value) in req.headers() {
        if let Ok(v) = http::HeaderValue::from_bytes(value.as_bytes()) {
            headers.append(name.clone(), v);
        }
    }
    *req.headers_mut() = headers;
    req.extensions_mut().remove::<axum::extract::OriginalUri>();
    req
}

pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if guarded(&state.config, req.uri().path())
        && let Some(raw) = req.headers().get(http::header::ORIGIN)
    {
        // Browsers serialise origins in ASCII; anything else is not a
        // browser's and must not slip past the check unread.
        let Ok(origin) = raw.to_str() else {
            return refuse("the Origin header is not ASCII text".to_string());
        };
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        if !allowed(state.config.cors_origins.as_deref(), origin, host) {
            return refuse(format!("origin {origin} is not allowed (CORS_ORIGINS)"));
        }
    }
    next.run(req).await
}

/// The connection endpoints of every transport (not the HTTP API, which
/// answers CORS and takes API keys).
fn guarded(config: &crate::config::Config, path: &str) -> bool {
    path.starts_with("/socket.io")
        || config.ws_json_paths.iter().any(|p| p == path)
        || config.sse_paths.iter().any(|p| p == path)
}

fn refuse(message: String) -> Response {
    crate::metrics::refused(Code::Forbidden.as_str());
    AppError::new(Code::Forbidden, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn origin_rules() {
        let list = vec!["https://app.example.com".to_string()];
        assert!(allowed(None, "https://evil.example", None));
        assert!(allowed(Some(&list), "https://app.example.com", None));
        assert!(!allowed(Some(&list), "https://evil.example", None));
        for origins in [&list[..], &[]] {
            assert!(allowed(
                Some(origins),
                "https://sy.example:3001",
                Some("sy.example:3001")
            ));
            assert!(!allowed(
                Some(origins),
                "https://evil.example",
                Some("sy.example:3001")
            ));
        }
        assert!(!allowed(Some(&[]), "https://evil.example", None));
    }
}
