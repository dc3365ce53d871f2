//! Server-Sent Events (SPEC §12): `GET /api/v1/stream?rooms=a,b` (and every
//! path of `SSE_PATHS`), for browsers behind proxies that do not pass
//! WebSockets, and `EventSource`.
//!
//! - Token from `Authorization: Bearer` or `?token=` (EventSource cannot
//!   set headers); refusals are HTTP errors with the usual JSON body.
//! - Each event: `event:` its type, `data:` its frame (`?format=`, default
//!   the envelope), and for durable events `id:` a resume token of every
//!   room's offset ([`resume`]), so the browser's `Last-Event-ID` resumes
//!   every room exactly; ephemeral events are included (at most once).
//! - `Last-Event-ID` (or `?lastEventId=`, for polyfills) resumes.
//! - `retry:` is set on the first message; a comment every
//!   [`HEARTBEAT`] keeps proxies from closing an idle stream.
//!
//! One-way: nothing is read from the client, so the offline-queue cursor of
//! an SSE session counts what was sent at least two heartbeats (plus a
//! margin) before it ended ([`PROOF_WINDOW`]): the comments written after
//! it went through the connection. `Last-Event-ID` is exact.

pub mod resume;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::outbox::Outbox;
use super::plain::{self, Open, Params, Plain};
use crate::api::Verb;
use crate::error::AppResult;
use crate::session::Session;

/// The name this transport has in session listings.
pub const TRANSPORT: &str = "sse";
/// How often a comment is written to an idle stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// `retry:` — how soon the browser reconnects after the stream ends.
pub const RETRY: Duration = Duration::from_secs(3);
/// How long after a send an open stream counts as proof it was read.
pub const PROOF_WINDOW: Duration = Duration::from_secs(2 * 15 + 2);

pub fn routes(plain: Plain) -> Router {
    let mut router = Router::new();
    for path in &plain.state.config.sse_paths {
        router = router.route(path, get(connect));
    }
    router.with_state(plain)
}

async fn connect(State(plain): State<Plain>, parts: http::request::Parts) -> Response {
    match open(&plain, &parts) {
        Ok(response) => response,
        Err(e) => {
            plain::refused(&e);
            e.into_response()
        }
    }
}

fn open(plain: &Plain, parts: &http::request::Parts) -> AppResult<Response> {
    let params = Params::parse(parts.uri.query())?;
    let last_event_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| params.last_event_id.clone());
    let offsets = match &last_event_id {
        Some(token) => Some(resume::decode(token)?),
        None => params.offsets.clone(),
    };
    let ip = crate::client_ip::of(&parts.extensions);
    let token = params
        .token
        .clone()
        .or_else(|| crate::auth::token::bearer(&parts.headers));
    let identity = plain::admit(plain, token.as_deref(), ip)?;
    let resume = plain::resume(plain, &identity, offsets.as_ref());
    let starts = resume.offsets.clone();
    let resumed: Vec<String> = resume.extra.iter().map(|r| r.to_string()).collect();
    let (session, outbox, rx) = plain::open(
        plain,
        Open {
            transport: TRANSPORT,
            identity,
            ip,
            device_id: params.device_id,
            format: params.format,
            window: PROOF_WINDOW,
            resume,
            first: None,
        },
    );
    join_rooms(plain, &session, &outbox, &params.rooms, &resumed);
    let events = stream::events(plain.clone(), session, outbox, rx, starts);
    let keep_alive = KeepAlive::new().interval(HEARTBEAT).text("heartbeat");
    let mut response = Sse::new(events).keep_alive(keep_alive).into_response();
    // nginx (and proxies that follow it) must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    Ok(response)
}

/// `?rooms=` not resumed by the token: joined from their head, after
/// `session`; what was not joined is said in a `subscribe` event.
fn join_rooms(
    plain: &Plain,
    session: &Arc<Session>,
    outbox: &Arc<Outbox>,
    rooms: &[String],
    resumed: &[String],
) {
    let rooms: Vec<Value> = rooms
        .iter()
        .filter(|r| !resumed.contains(r))
        .map(|r| json!(r))
        .collect();
    if rooms.is_empty() {
        return;
    }
    let (st, se, out) = (plain.state.clone(), session.clone(), outbox.clone());
    session.enqueue(Box::pin(async move {
        let body = json!({ "rooms": rooms });
        let reply = match crate::api::call_verb(&st, &se, Verb::Subscribe, body).await {
            Ok(r) => r.to_value(),
            Err(e) => e.ack(),
        };
        let _ = out.message("subscribe", &reply);
    }));
}
