//! An SSE session's outbox as the response body's event stream, with the
//! resume token of every durable event, and the session's end when the
//! client goes away (the body is dropped).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event;
use futures::Stream;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{RETRY, resume};
use crate::session::Session;
use crate::transport::outbox::{Out, Outbox};
use crate::transport::plain::{self, Plain};

/// What the stream holds; dropping it (the client left) ends the session.
struct Feed {
    rx: mpsc::Receiver<Out>,
    outbox: Arc<Outbox>,
    session: Arc<Session>,
    plain: Plain,
    /// Each room's offset as of the last event written.
    positions: BTreeMap<String, i64>,
    started: bool,
}

impl Drop for Feed {
    fn drop(&mut self) {
        let (plain, session) = (self.plain.clone(), self.session.clone());
        self.plain.state.tasks.spawn(async move {
            plain::close(&plain, &session, "client left").await;
        });
    }
}

pub fn events(
    plain: Plain,
    session: Arc<Session>,
    outbox: Arc<Outbox>,
    rx: mpsc::Receiver<Out>,
    starts: HashMap<String, i64>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let feed = Feed {
        rx,
        outbox,
        session,
        plain,
        positions: starts.into_iter().collect(),
        started: false,
    };
    futures::stream::unfold(feed, |mut feed| async move {
        if !feed.started {
            feed.started = true;
            return Some((Ok(Event::default().retry(RETRY).comment("connected")), feed));
        }
        // Queued frames first: a `session:expired` before the end.
        let out = tokio::select! {
            biased;
            out = feed.rx.recv() => out,
            _ = feed.outbox.end.cancelled() => None,
            _ = feed.session.closed.cancelled() => None,
        }?;
        let event = feed.event(out);
        Some((Ok(event), feed))
    })
}

impl Feed {
    fn event(&mut self, out: Out) -> Event {
        let (frame, durable) = match out {
            Out::Event {
                frame,
                room,
                offset: Some(offset),
                ..
            } => {
                self.positions.insert(room, offset);
                (frame, true)
            }
            Out::Event { frame, .. } | Out::Message(frame) => (frame, false),
        };
        let name = frame
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_string();
        let mut event = Event::default()
            .event(name)
            .data(serde_json::to_string(&frame).unwrap_or_default());
        if durable {
            self.fill_starts();
            event = event.id(resume::encode(&self.positions));
        }
        event
    }

    /// Rooms without an event written yet resume from where their feed
    /// started (never from where it is now: events may be queued behind).
    fn fill_starts(&mut self) {
        let state = &self.plain.state;
        let rooms = crate::rooms::automatic_rooms(&self.session.identity())
            .into_iter()
            .chain(self.session.joined());
        for room in rooms {
            if self.positions.contains_key(room.as_str()) {
                continue;
            }
            if let Some(member) =
                crate::replay::offline::member(&state.durable, &self.session, &room)
                && member.start() >= 0
            {
                self.positions.insert(room.to_string(), member.start());
            }
        }
    }
}
