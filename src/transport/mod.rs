//! Transports: how clients reach the sessions of [`crate::api`]. Each one
//! authenticates a connection, opens a [`crate::session::Session`] with a
//! sink of its own, turns what the client sends into `api` calls on the
//! session's ordered queue, registers a [`crate::fanout::Hub`] for
//! ephemeral deliveries, and closes the session when the connection ends.
//!
//! - [`socketio`]: Socket.IO (Engine.IO v3/v4 over WebSocket and polling),
//!   with socketioxide and its Redis adapter.
//! - [`ws`]: plain JSON over WebSocket (`WS_JSON_PATH`).
//! - [`sse`]: Server-Sent Events (`/api/v1/stream`, `SSE_PATHS`).
//!
//! What the two plain transports share: [`plain`] (checks, opening a
//! session), [`outbox`] (their sink and outgoing queue), [`frame`] (the
//! `?format=` shapes), [`local`] (their sessions by room, the hub of their
//! ephemeral deliveries), [`relay`] (those deliveries between nodes) and
//! [`interest`] (which rooms each node's plain sessions are in).

pub mod frame;
pub mod interest;
pub mod local;
pub mod outbox;
pub mod plain;
pub mod relay;
pub mod socketio;
pub mod sse;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use futures::future::BoxFuture;

use crate::limits::ConnectionLimits;
use crate::state::AppState;

/// What a transport does at shutdown once every session is closed (e.g.
/// close its engine's connections so clients reconnect elsewhere).
pub type Closer = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Builds the plain-WebSocket and SSE transports: registers their hub
/// (relayed through Redis to the other nodes when `REDIS_URL` is set) and
/// returns their routes.
pub async fn mount_plain(state: &AppState) -> anyhow::Result<Router> {
    let local = local::LocalRooms::new();
    if state.config.redis_url.is_some() {
        let relay = relay::relay(&state.config, local.clone(), &state.tasks).await?;
        state.fanout.register(Arc::new(relay));
    } else {
        state.fanout.register(local.clone());
    }
    let plain = plain::Plain {
        state: state.clone(),
        local,
        pending: Arc::new(ConnectionLimits::default()),
    };
    Ok(ws::routes(plain.clone()).merge(sse::routes(plain)))
}
