//! The one entry point for socket.io client events: turns each incoming
//! event, in arrival order and synchronously, into a job on the session's
//! ordered queue (see [`crate::session::queue`]), which starts it through
//! [`crate::api::start`] and sends the ack (a durable publish's once it is
//! committed, off the queue: `crate::session::pipeline`).
//!
//! socketioxide 0.18 only offers async message handlers, each spawned as its
//! own task, which loses arrival order. This module implements
//! `MessageHandler` directly so the queueing happens inside socketioxide's
//! receive path, before any task is spawned.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::{FromMessageParts, MessageHandler, Value as RawValue};
use socketioxide::socket::Socket;

use crate::api::Started;
use crate::error::{AppError, Code};
use crate::session::{RateRefusal, Session};
use crate::state::AppState;

#[derive(Clone)]
pub struct OrderedDispatch {
    state: AppState,
    session: Arc<Session>,
}

/// Marker type parameter for our `MessageHandler` impl.
pub struct Ordered;

pub fn install<A: Adapter>(s: &SocketRef<A>, state: &AppState, session: &Arc<Session>) {
    s.on_fallback(OrderedDispatch {
        state: state.clone(),
        session: session.clone(),
    });
}

impl<A: Adapter> MessageHandler<A, Ordered> for OrderedDispatch {
    fn call(&self, s: Arc<Socket<A>>, mut v: RawValue, ack_id: Option<i64>) {
        let (Ok(Event(event)), Ok(socket), Ok(ack)) = (
            Event::from_message_parts(&s, &mut v, &ack_id),
            SocketRef::from_message_parts(&s, &mut v, &ack_id),
            AckSender::<A>::from_message_parts(&s, &mut v, &ack_id),
        ) else {
            return;
        };
        crate::metrics::message(crate::api::route_label(&event), "in");
        // The size check comes before any parsing (SPEC §8): the raw packet
        // text bounds what the event can carry.
        let raw_len = match &v {
            RawValue::Str(text, bins) => {
                text.len() + bins.as_ref().map_or(0, |b| b.iter().map(|x| x.len()).sum())
            }
            RawValue::Bytes(b) => b.len(),
        };
        let max = self.state.config.max_payload;
        if raw_len > max {
            crate::metrics::refused(Code::PayloadTooLarge.as_str());
            let _ = ack.send(
                &AppError::new(
                    Code::PayloadTooLarge,
                    format!("event is {raw_len} bytes; the limit is {max}"),
                )
                .ack(),
            );
            return;
        }
        if let Err(refusal) = self.session.admit() {
            refuse_rate(&self.state, &socket, ack, refusal);
            return;
        }
        // Binary attachments become a clean refusal; an event without
        // arguments (`ping`, `rooms`) is an empty object.
        let has_binary = match &v {
            RawValue::Str(_, Some(bins)) => !bins.is_empty(),
            RawValue::Str(_, None) => false,
            RawValue::Bytes(_) => true,
        };
        let data: Result<Value, AppError> = if has_binary {
            Err(AppError::new(
                Code::ValidationFailed,
                "binary attachments are not accepted; send JSON",
            ))
        } else {
            Ok(
                match TryData::<Value>::from_message_parts(&s, &mut v, &ack_id) {
                    Ok(TryData(Ok(data))) => data,
                    _ => first_argument(&v),
                },
            )
        };
        let Some(slot) = self.session.reserve() else {
            let _ = ack.send(
                &AppError::new(
                    Code::RateLimited,
                    "too many events waiting on this connection; slow down",
                )
                .ack(),
            );
            return;
        };
        let (state, session) = (self.state.clone(), self.session.clone());
        let job = Box::pin(async move {
            let started = match data {
                Ok(data) => crate::api::start(&state, &session, &event, data).await,
                Err(e) => Started::Done(Err(e)),
            };
            started.respond(&state.tasks, move |reply| {
                // The client may not have asked for an ack; sending then is a no-op.
                let _ = match reply {
                    Ok(reply) => ack.send(&reply),
                    Err(e) => ack.send(&e.ack()),
                };
            });
        });
        slot.send(job);
    }
}

/// Answers an event a rate limit refused; drops a socket that keeps going.
fn refuse_rate<A: Adapter>(
    state: &AppState,
    socket: &SocketRef<A>,
    ack: AckSender<A>,
    refusal: RateRefusal,
) {
    crate::metrics::rate_limited();
    crate::metrics::refused(Code::RateLimited.as_str());
    let message = if refusal.per_user {
        format!(
            "more than {} events/s from your user across its connections; slow down",
            state.config.user_rate_limit
        )
    } else {
        format!(
            "more than {} events/s on this connection; slow down",
            state.config.rate_limit
        )
    };
    let _ = ack.send(&AppError::new(Code::RateLimited, message).ack());
    if refusal.abusive {
        tracing::warn!(sid = %socket.id, "sustained rate-limit abuse: disconnecting");
        let _ = socket.clone().disconnect();
    }
}

/// The event's first argument read from the packet text (`["name", arg]`),
/// for when socketioxide's own reading fails: it does for every object key
/// written with an escape sequence (`"a\"b"`, `"\u0000"`), which would
/// otherwise turn the whole argument into nothing. Null when there is none.
fn first_argument(v: &RawValue) -> Value {
    match v {
        RawValue::Str(text, _) => serde_json::from_str::<Vec<Value>>(text)
            .ok()
            .filter(|args| args.len() > 1)
            .map_or(Value::Null, |mut args| args.swap_remove(1)),
        RawValue::Bytes(_) => Value::Null,
    }
}
