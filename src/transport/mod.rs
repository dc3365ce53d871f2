//! Transports: how clients reach the sessions of [`crate::api`]. Each one
//! authenticates a connection, opens a [`crate::session::Session`] with a
//! sink of its own, turns what the client sends into `api::call`s on the
//! session's ordered queue, registers a [`crate::fanout::Hub`] for
//! ephemeral deliveries, and closes the session when the connection ends.
//!
//! - [`socketio`]: Socket.IO (Engine.IO v3/v4 over WebSocket and polling),
//!   with socketioxide and its Redis adapter.

pub mod socketio;

use futures::future::BoxFuture;

/// What a transport does at shutdown once every session is closed (e.g.
/// close its engine's connections so clients reconnect elsewhere).
pub type Closer = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;
