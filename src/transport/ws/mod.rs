//! Plain JSON over WebSocket (SPEC §12), on every path of `WS_JSON_PATH`
//! (default `/ws`), for the seeds' raw `ws`, browser `WebSocket` and
//! wscat/Postman clients.
//!
//! - this module: the upgrade (query parameters, where the token is, the
//!   per-IP count of connections still waiting to authenticate);
//! - [`conn`]: a connection's life (first-message `auth`, refusals as a
//!   JSON error then close code 4401/4403/4429, requests through the
//!   session's ordered queue, frames out, ping/pong heartbeats, batches);
//! - [`request`]: what clients send, mapped onto the route table, and the
//!   replies in the caller's shape.
//!
//! Sessions use the shared plain-transport pieces: [`super::plain`] (the
//! checks and opening), [`super::outbox`] (the sink), [`super::frame`]
//! (`?format=`), [`super::local`] and [`super::relay`] (ephemeral fan-out).

pub mod conn;
pub mod request;
pub mod writer;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::plain::{Params, Plain};
use crate::error::{AppError, Code};

/// The name this transport has in session listings.
pub const TRANSPORT: &str = "ws";

/// The WebSocket endpoint on each `WS_JSON_PATH`.
pub fn routes(plain: Plain) -> Router {
    let mut router = Router::new();
    for path in &plain.state.config.ws_json_paths {
        router = router.route(path, get(upgrade));
    }
    router.with_state(plain)
}

/// Upgrades; what needs the connection (token checks, refusals) happens in
/// [`conn::run`], so a refusal reaches the client as a JSON message and a
/// close code. A bad query parameter is an HTTP 400 naming it; too many
/// connections from one address still waiting to authenticate, a 429.
async fn upgrade(
    State(plain): State<Plain>,
    ws: WebSocketUpgrade,
    parts: http::request::Parts,
) -> Response {
    let params = match Params::parse(parts.uri.query()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ip = crate::client_ip::of(&parts.extensions);
    let token = params
        .token
        .clone()
        .or_else(|| crate::auth::token::bearer(&parts.headers));
    let waiting = match token {
        Some(_) => None,
        None => match conn::Waiting::take(&plain, ip) {
            Some(w) => Some(w),
            None => {
                crate::metrics::refused(Code::LimitExceeded.as_str());
                return AppError::new(
                    Code::LimitExceeded,
                    "too many connections from this address waiting to authenticate; retry later",
                )
                .into_response();
            }
        },
    };
    let limit = 2 * plain.state.config.max_payload;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            conn::run(
                socket,
                conn::Start {
                    plain,
                    params,
                    token,
                    ip,
                    waiting,
                },
            )
        })
}
