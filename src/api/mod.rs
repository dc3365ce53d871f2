//! The requests every transport serves, in one place: the route table
//! ([`routes`]), typed requests ([`request`]) and replies ([`reply`]),
//! one handler module per group of requests, and a connection's life cycle
//! ([`lifecycle`]: `open` on connect, `close` when it ends).
//!
//! A transport turns what its client sent into `(name, body)`, calls
//! [`start`] (socket.io, which pipelines durable publishes) or [`call_verb`]
//! on the session's ordered queue, and sends the [`Reply`] (or the refusal)
//! back in its own framing. Handlers work on a [`Session`] and the
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

use futures::future::BoxFuture;
use serde_json::Value;

use crate::domain::now_ms;
use crate::error::{AppError, AppResult, Code};
use crate::session::Session;
use crate::state::AppState;
use crate::tasks::Tasks;
pub use lifecycle::{close, open};
pub use reply::Reply;
pub use request::Request;
pub use routes::{ALIASES, PING_ALIAS, ROUTES, Verb, alias_label, route_label};

/// What starting a request gives: its reply, or (a durable publish) the
/// rest of it, which the transport runs off the session's ordered queue
/// and which may finish after later requests have started (see
/// `crate::session::pipeline`).
pub enum Started {
    Done(AppResult<Reply>),
    Pending(BoxFuture<'static, AppResult<Reply>>),
}

impl Started {
    /// Hands the reply to `answer`: now, or from a task once it is there
    /// (run to its end: it is a durable write; shutdown waits for it
    /// through the session's worker, see `Worker::run`).
    pub fn respond(self, tasks: &Tasks, answer: impl FnOnce(AppResult<Reply>) + Send + 'static) {
        match self {
            Started::Done(reply) => answer(reply),
            Started::Pending(rest) => tasks.spawn_until_done(async move { answer(rest.await) }),
        }
    }

    /// The reply, waiting for the rest of the request if need be.
    pub async fn finish(self) -> AppResult<Reply> {
        match self {
            Started::Done(reply) => reply,
            Started::Pending(rest) => rest.await,
        }
    }
}

/// Parses and starts one request named `name` with body `data`.
pub async fn start(state: &AppState, session: &Arc<Session>, name: &str, data: Value) -> Started {
    let Some(verb) = Verb::from_name(name) else {
        return Started::Done(Err(AppError::new(
            Code::UnknownEvent,
            format!(
                "`{}` is not an event this server handles",
                truncate(name, 64)
            ),
        )));
    };
    start_verb(state, session, verb, data).await
}

/// Parses and handles one request for `verb` (a transport that maps its
/// own names onto verbs calls this).
pub async fn call_verb(
    state: &AppState,
    session: &Arc<Session>,
    verb: Verb,
    data: Value,
) -> AppResult<Reply> {
    start_verb(state, session, verb, data).await.finish().await
}

/// Parses and starts one request for `verb`.
async fn start_verb(state: &AppState, session: &Arc<Session>, verb: Verb, data: Value) -> Started {
    // Nothing with a NUL character goes further (see domain::text).
    if let Err(e) = crate::domain::text::refuse_nul(&data) {
        return Started::Done(Err(e));
    }
    match Request::parse(verb, data, state.config.max_payload) {
        Ok(Request::Publish(r)) => publish::start(state, session, r).await,
        Ok(request) => {
            // After this session's durable publishes in flight, as if
            // each had been answered before this one started.
            session.pipeline.settle().await;
            Started::Done(handle(state, session, request).await)
        }
        Err(e) => Started::Done(Err(e)),
    }
}

/// Handles one parsed request to the end. [`start_verb`] sends publishes
/// to `publish::start` before it gets here; their arm keeps the match whole
/// and finishes one the same way.
async fn handle(state: &AppState, session: &Arc<Session>, request: Request) -> AppResult<Reply> {
    match request {
        Request::Ping => Ok(Reply::Pong(reply::Pong {
            pong: true,
            server_time: now_ms(),
        })),
        Request::Subscribe(r) => rooms::subscribe(state, session, r).await,
        Request::Unsubscribe(r) => rooms::unsubscribe(state, session, r).await,
        Request::Rooms => Ok(rooms::list(session)),
        Request::AuthRefresh(r) => connection::refresh(state, session, r),
        Request::Publish(r) => publish::start(state, session, r).await.finish().await,
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
