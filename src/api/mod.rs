//! The requests every transport serves, in one place: the route table
//! ([`routes`]), typed requests ([`request`]) and replies ([`reply`]),
//! one handler module per group of requests, and a connection's life cycle
//! ([`lifecycle`]: `open` on connect, `close` when it ends).
//!
//! A transport turns what its client sent into `(name, body)`, calls
//! [`call`] on the session's ordered queue, and sends the [`Reply`] (or the
//! refusal) back in its own framing. Handlers work on a [`Session`] and the
//! services in [`AppState`]; none of them knows which transport it serves.

mod commands;
mod connection;
mod documents;
pub mod lifecycle;
mod presence;
mod publish;
pub mod reply;
pub mod request;
mod rooms;
pub mod routes;

use std::sync::Arc;

use serde_json::Value;

use crate::domain::now_ms;
use crate::error::{AppError, AppResult, Code};
use crate::session::Session;
use crate::state::AppState;
pub use lifecycle::{close, open};
pub use reply::Reply;
pub use request::Request;
pub use routes::{ALIASES, PING_ALIAS, ROUTES, Verb, alias_label, route_label};

/// Parses and handles one request named `name` with body `data`.
pub async fn call(
    state: &AppState,
    session: &Arc<Session>,
    name: &str,
    data: Value,
) -> AppResult<Reply> {
    // Nothing with a NUL character goes further (see domain::text).
    crate::domain::text::refuse_nul(&data)?;
    let verb = Verb::from_name(name).ok_or_else(|| {
        AppError::new(
            Code::UnknownEvent,
            format!(
                "`{}` is not an event this server handles",
                truncate(name, 64)
            ),
        )
    })?;
    let request = Request::parse(verb, data, state.config.max_payload)?;
    handle(state, session, request).await
}

/// Parses and handles one request for `verb` (a transport that maps its
/// own names onto verbs calls this).
pub async fn call_verb(
    state: &AppState,
    session: &Arc<Session>,
    verb: Verb,
    data: Value,
) -> AppResult<Reply> {
    crate::domain::text::refuse_nul(&data)?;
    let request = Request::parse(verb, data, state.config.max_payload)?;
    handle(state, session, request).await
}

/// Handles one parsed request.
pub async fn handle(
    state: &AppState,
    session: &Arc<Session>,
    request: Request,
) -> AppResult<Reply> {
    match request {
        Request::Ping => Ok(Reply::Pong(reply::Pong {
            pong: true,
            server_time: now_ms(),
        })),
        Request::Subscribe(r) => rooms::subscribe(state, session, r).await,
        Request::Unsubscribe(r) => rooms::unsubscribe(state, session, r).await,
        Request::Rooms => Ok(rooms::list(session)),
        Request::AuthRefresh(r) => connection::refresh(state, session, r),
        Request::Publish(r) => publish::publish(state, session, r).await,
        Request::Ack(r) => connection::ack(state, session, r).await,
        Request::DocumentGet(r) => documents::get(state, session, r).await,
        Request::DocumentUpdate(r) => documents::update(state, session, r).await,
        Request::PresenceList(r) => presence::list(state, session, r).await,
        Request::Typing(r) => presence::typing(state, session, r).await,
        Request::Status => Ok(connection::status(session)),
        Request::CommandSend(r) => commands::send(state, session, r).await,
        Request::CommandAck(r) => commands::ack(state, session, r).await,
        Request::CommandResult(r) => commands::result(state, session, r).await,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
