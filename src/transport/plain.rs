//! What the plain-WebSocket and SSE transports share: their context
//! ([`Plain`]), the query parameters both read ([`Params`]), the
//! connection checks socket.io's connect middleware makes (shutdown,
//! token, connection limits), and opening a session with an
//! [`OutboxSink`] and its first job, `api::open`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::frame::Format;
use super::local::LocalRooms;
use super::outbox::{Outbox, OutboxSink};
use crate::domain::{Identity, SessionId, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::limits::{ConnectionLimits, TokenBucket};
use crate::rooms::resume::Resume;
use crate::session::{Opening, Rates, Session};
use crate::state::AppState;

/// The plain transports' context: the services, this node's room index of
/// their sessions, and connections still waiting to authenticate per IP.
#[derive(Clone)]
pub struct Plain {
    pub state: AppState,
    pub local: Arc<LocalRooms>,
    pub pending: Arc<ConnectionLimits>,
}

/// Query parameters of both endpoints.
#[derive(Debug, Default)]
pub struct Params {
    pub token: Option<String>,
    pub format: Format,
    /// `?batch=MS`: non-critical events go out in batches this often.
    pub batch: Option<Duration>,
    /// `?offsets=` (JSON object room → offset).
    pub offsets: Option<Value>,
    pub device_id: Option<String>,
    /// SSE: `?rooms=a,b`.
    pub rooms: Vec<String>,
    /// SSE: `?lastEventId=`, for EventSource polyfills that cannot send
    /// the `Last-Event-ID` header.
    pub last_event_id: Option<String>,
}

/// The longest batch interval a client may ask for.
pub const MAX_BATCH: Duration = Duration::from_secs(10);

impl Params {
    /// Reads the query; an unreadable parameter is refused by name.
    pub fn parse(query: Option<&str>) -> AppResult<Params> {
        let map: HashMap<String, String> = query
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), crate::auth::token::percent_decode(v)))
            .collect();
        let bad = |field: &str, why: &str| crate::domain::parse::invalid(field, why);
        let batch = match map.get("batch").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(ms) => {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| bad("batch", "`batch` must be a number of milliseconds"))?;
                Some(Duration::from_millis(ms).min(MAX_BATCH))
            }
        };
        let offsets = match map.get("offsets") {
            None => None,
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(v @ Value::Object(_)) => Some(v),
                _ => {
                    return Err(bad(
                        "offsets",
                        "`offsets` must be a JSON object {\"room\": offset}",
                    ));
                }
            },
        };
        let device_id = match map.get("deviceId") {
            None => None,
            Some(d) if crate::domain::identity::valid_id(d) => Some(d.clone()),
            Some(_) => {
                return Err(bad(
                    "deviceId",
                    "`deviceId` must be 1-64 of A-Z a-z 0-9 _ . @ -",
                ));
            }
        };
        Ok(Params {
            token: map.get("token").filter(|t| !t.is_empty()).cloned(),
            format: Format::parse(map.get("format").map_or("", String::as_str))
                .map_err(|e| bad("format", &e.message))?,
            batch,
            offsets,
            device_id,
            last_event_id: map.get("lastEventId").filter(|t| !t.is_empty()).cloned(),
            rooms: map
                .get("rooms")
                .map(|r| {
                    r.split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// A refused connection, counted as socket.io's refusals are.
pub fn refused(e: &AppError) {
    tracing::debug!(code = %e.code, "connection refused: {}", e.message);
    if Code::AUTH_FAILURES.contains(&e.code) {
        crate::metrics::auth_failure(e.code.as_str());
    }
    crate::metrics::refused(e.code.as_str());
}

/// The checks of socket.io's connect middleware: not shutting down, a valid
/// token, and room under the connection limits (taken here; released by
/// `api::close`).
pub fn admit(plain: &Plain, token: Option<&str>, ip: Option<IpAddr>) -> AppResult<Identity> {
    let state = &plain.state;
    if state.is_shutting_down() {
        return Err(AppError::new(
            Code::Unavailable,
            "server is shutting down; reconnect to another node",
        ));
    }
    let token = token.ok_or_else(|| {
        AppError::new(
            Code::Unauthorized,
            "no token: send it as the `token` query parameter, an Authorization: Bearer header \
             or a first message {\"type\": \"auth\", \"token\": ...}",
        )
    })?;
    let identity = state.verifier.verify(token)?;
    state.limits.admit(
        ip,
        state.sessions.len(),
        state.config.max_connections,
        state.config.max_connections_per_ip,
    )?;
    Ok(identity)
}

/// What a new plain session is.
pub struct Open {
    pub transport: &'static str,
    pub identity: Identity,
    pub ip: Option<IpAddr>,
    pub device_id: Option<String>,
    pub format: Format,
    /// How long after a send a still-open connection proves it was read.
    pub window: Duration,
    pub resume: Resume,
    /// A frame to send before anything else (the answer to `auth`).
    pub first: Option<Value>,
}

/// Opens the session (registered, with its sink) and queues `api::open`
/// as its first job; the caller writes the returned outbox's frames.
pub fn open(
    plain: &Plain,
    o: Open,
) -> (
    Arc<Session>,
    Arc<Outbox>,
    tokio::sync::mpsc::Receiver<super::outbox::Out>,
) {
    let state = &plain.state;
    let config = &state.config;
    let opening = Opening {
        id: SessionId::new(),
        transport: o.transport,
        device_id: o.device_id,
        connected_at: now_ms(),
        ip: o.ip,
        rates: Rates {
            session: TokenBucket::new(config.rate_limit, config.rate_burst),
            user: state
                .user_rates
                .bucket(&o.identity.company_id, &o.identity.user_id),
        },
        identity: o.identity,
    };
    let (session, worker) = Session::new(opening, state.tasks.child_token());
    let (outbox, rx) = Outbox::new(o.format);
    session.set_sink(OutboxSink::new(
        outbox.clone(),
        &session,
        plain.local.clone(),
        o.window,
        state.clone(),
    ));
    if let Some(frame) = o.first {
        let _ = outbox.send(frame);
    }
    state.sessions.insert(&state.tasks, session.clone(), worker);
    let (st, se, resume) = (state.clone(), session.clone(), o.resume);
    session.enqueue(Box::pin(
        async move { crate::api::open(&st, &se, resume).await },
    ));
    session.start();
    crate::metrics::connection_opened();
    (session, outbox, rx)
}

/// Ends a plain session: `api::close` (once) and out of the room index.
pub async fn close(plain: &Plain, session: &Session, reason: &str) {
    crate::api::close(&plain.state, session, reason).await;
    plain.local.forget(session.id);
}

/// The plan of `?offsets=` (or a resume token) for a new session.
pub fn resume(plain: &Plain, identity: &Identity, offsets: Option<&Value>) -> Resume {
    crate::rooms::resume::plan_resume(
        identity,
        &plain.state.catalog,
        offsets,
        plain.state.config.max_subscriptions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_their_refusals() {
        let p = Params::parse(Some(
            "token=a%2Eb&format=flat&batch=50&offsets=%7B%22company%22%3A3%7D&deviceId=d1&rooms=a,,b",
        ))
        .unwrap();
        assert_eq!(p.token.as_deref(), Some("a.b"));
        assert_eq!(p.format, Format::Flat);
        assert_eq!(p.batch, Some(Duration::from_millis(50)));
        assert_eq!(p.offsets.unwrap()["company"], 3);
        assert_eq!(p.device_id.as_deref(), Some("d1"));
        assert_eq!(p.rooms, ["a", "b"]);
        assert_eq!(
            Params::parse(Some("batch=99999")).unwrap().batch,
            Some(MAX_BATCH)
        );
        for (q, field) in [
            ("format=xml", "format"),
            ("batch=x", "batch"),
            ("offsets=[1]", "offsets"),
            ("deviceId=a%20b", "deviceId"),
        ] {
            let e = Params::parse(Some(q)).unwrap_err();
            assert_eq!(e.details.unwrap()["field"], field, "{q}");
        }
        assert!(Params::parse(None).unwrap().token.is_none());
    }
}
