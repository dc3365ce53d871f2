//! The Socket.IO side: engine sessions before authentication ([`pending`]),
//! connection life cycle, the ordered dispatcher, and
//! one module per group of client events. Handlers are plain async functions
//! of a [`Ctx`] and the event's JSON; they return the ack or an [`AppError`],
//! and are generic over the adapter so local and Redis clusters share them.

pub mod broadcast;
pub mod connection;
pub mod dispatch;
pub mod documents;
pub mod events;
pub mod pending;
pub mod presence;
pub mod proof;
pub mod replay;
pub mod resume;
pub mod rooms;
pub mod session;

use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::domain::now_ms;
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;
use session::Session;

/// Everything a handler needs about the socket it serves.
pub struct Ctx<A: Adapter> {
    pub socket: SocketRef<A>,
    pub state: AppState,
    pub session: Arc<Session>,
}

impl<A: Adapter> Ctx<A> {
    pub fn new(socket: SocketRef<A>, state: AppState, session: Arc<Session>) -> Self {
        Self {
            socket,
            state,
            session,
        }
    }
}

/// The name under which socket.io v2 clients reach `ping`.
pub const PING_ALIAS: &str = "server:ping";

/// Routes one client event to its handler.
async fn route<A: Adapter>(ctx: &Ctx<A>, event: &str, data: Value) -> AppResult<Value> {
    let data = dispatch::object_or_empty(data);
    match event {
        // socket.io-client v2 cannot emit `ping` (it reserves the name), so
        // `server:ping` answers the same.
        "ping" | PING_ALIAS => Ok(json!({ "pong": true, "serverTime": now_ms() })),
        "subscribe" => rooms::subscribe(ctx, data).await,
        "unsubscribe" => rooms::unsubscribe(ctx, data).await,
        "rooms" => Ok(rooms::list(ctx)),
        "auth:refresh" => connection::refresh(ctx, data).await,
        "event:publish" => events::publish(ctx, data).await,
        "events:ack" => replay::ack(ctx, data).await,
        "document:get" => documents::get(ctx, data).await,
        "document:update" => documents::update(ctx, data).await,
        "presence:list" => presence::list(ctx, data).await,
        "user:typing" => presence::typing(ctx, data).await,
        other => Err(AppError::new(
            Code::UnknownEvent,
            format!(
                "`{}` is not an event this server handles",
                truncate(other, 64)
            ),
        )),
    }
}

/// A bounded label for metrics: the route name, or `unknown`.
pub fn route_label(event: &str) -> &str {
    const ROUTES: [&str; 12] = [
        "ping",
        PING_ALIAS,
        "subscribe",
        "unsubscribe",
        "rooms",
        "auth:refresh",
        "event:publish",
        "events:ack",
        "document:get",
        "document:update",
        "presence:list",
        "user:typing",
    ];
    ROUTES
        .iter()
        .find(|r| **r == event)
        .copied()
        .unwrap_or("unknown")
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
