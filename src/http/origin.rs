//! Origin check for the Socket.IO endpoint (both transports): stops
//! cross-site WebSocket hijacking when browsers send cookies. Browsers always
//! send `Origin` on WebSocket handshakes and cross-origin requests; clients
//! that send none (native apps, servers) are not browsers and pass.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, Code};
use crate::state::AppState;

/// Whether `origin` may use the socket endpoint. `None` = any origin
/// (development default); an empty list = same origin as `host` only.
pub fn allowed(origins: Option<&[String]>, origin: &str, host: Option<&str>) -> bool {
    match origins {
        None => true,
        Some([]) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
        }
        Some(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
    }
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
    if req.uri().path().starts_with("/socket.io")
        && let Some(origin) = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
    {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        if !allowed(state.config.cors_origins.as_deref(), origin, host) {
            crate::metrics::refused(Code::Forbidden.as_str());
            return AppError::new(
                Code::Forbidden,
                format!("origin {origin} is not allowed (CORS_ORIGINS)"),
            )
            .into_response();
        }
    }
    next.run(req).await
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
        assert!(allowed(
            Some(&[]),
            "https://sy.example:3001",
            Some("sy.example:3001")
        ));
        assert!(!allowed(
            Some(&[]),
            "https://evil.example",
            Some("sy.example:3001")
        ));
        assert!(!allowed(Some(&[]), "https://evil.example", None));
    }
}
