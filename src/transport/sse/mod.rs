//! Server-Sent Events (placeholder).
use axum::Router;
use super::plain::Plain;
pub const TRANSPORT: &str = "sse";
pub fn routes(plain: Plain) -> Router { let _ = plain; Router::new() }
