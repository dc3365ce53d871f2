//! `subscribe`, `unsubscribe`, `rooms`: joining rooms within one's company.
//! The decision is the pure [`crate::rooms::plan_subscribe`]; this applies
//! it to the session, its transport, its durable feeds and presence.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::reply::{Reply, Rooms, Subscribed, Unsubscribed};
use super::request::{RoomList, Subscribe};
use crate::domain::RoomName;
use crate::error::{AppError, AppResult, Code};
use crate::replay::offline;
use crate::rooms::{Denial, automatic_rooms, plan_subscribe};
use crate::session::Session;
use crate::state::AppState;

pub async fn subscribe(
    state: &AppState,
    session: &Arc<Session>,
    req: Subscribe,
) -> AppResult<Reply> {
    let identity = session.identity();
    let current: BTreeSet<String> = session
        .joined()
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    let (join, denied) = plan_subscribe(
        &identity,
        &state.catalog,
        &req.rooms.0,
        &current,
        state.config.max_subscriptions,
    );
    session.add_rooms(&join);
    let sink = session.sink();
    if let Some(sink) = &sink {
        sink.join(&identity.company_id, &join);
    }
    // Durable feeds: resume after the given offsets (replaying first), or
    // go live from the head for a room without an offset.
    let mut replayed = 0;
    for room in &join {
        let offset = req.offsets.get(room.as_str()).copied();
        if offset.is_none() && offline::member(&state.durable, session, room).is_some() {
            continue; // already live in this room
        }
        let Some(sink) = &sink else { break };
        let member = offline::attach(&state.durable, session, sink, room, offset);
        replayed += state.durable.catch_up(&member, true).await;
    }
    state.presence.rooms_changed(session.id, &join, &[]).await;
    state.commands.joined(session, &join).await;
    crate::metrics::replayed(replayed as u64);
    Ok(Reply::Subscribed(Subscribed {
        ok: true,
        rooms: join,
        denied,
        replayed: (!req.offsets.is_empty()).then_some(replayed),
    }))
}

pub async fn unsubscribe(
    state: &AppState,
    session: &Arc<Session>,
    req: RoomList,
) -> AppResult<Reply> {
    let identity = session.identity();
    let automatic = automatic_rooms(&identity);
    let sink = session.sink();
    let mut left = Vec::new();
    let mut gone = Vec::new();
    let mut denied = Vec::new();
    for raw in &req.0 {
        match RoomName::parse(raw) {
            Err(e) => denied.push(Denial::new(raw, e)),
            Ok(room) if automatic.contains(&room) => denied.push(Denial::new(
                raw,
                AppError::new(Code::Forbidden, "automatic rooms cannot be left"),
            )),
            Ok(room) => {
                session.remove_room(&room);
                if let Some(sink) = &sink {
                    sink.leave(&identity.company_id, &room);
                }
                offline::detach(&state.durable, session, &room);
                left.push(room.as_str().to_string());
                gone.push(room);
            }
        }
    }
    state.presence.rooms_changed(session.id, &[], &gone).await;
    Ok(Reply::Unsubscribed(Unsubscribed {
        ok: true,
        rooms: left,
        denied,
    }))
}

/// Every room the session is in (automatic ones included), sorted.
pub fn list(session: &Session) -> Reply {
    Reply::Rooms(Rooms {
        ok: true,
        rooms: names(session),
    })
}

/// The names behind [`list`].
pub fn names(session: &Session) -> Vec<String> {
    let mut rooms: Vec<String> = automatic_rooms(&session.identity())
        .into_iter()
        .chain(session.joined())
        .map(|r| r.as_str().to_string())
        .collect();
    rooms.sort();
    rooms
}
