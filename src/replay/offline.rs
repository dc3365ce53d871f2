//! A session's durable positions: joining and leaving rooms' feeds, the
//! offline queue and `auth.offsets` resume on connect, `events:ack`, and
//! saving the offline-queue cursors when a session ends. Plain functions
//! of a [`Session`], its sink and the hub's store.

use std::collections::HashMap;
use std::sync::Arc;

use super::{DurableHub, Member};
use crate::domain::RoomName;
use crate::domain::room::RoomKind;
use crate::error::{AppError, AppResult, Code};
use crate::rooms::automatic_rooms;
use crate::session::{Session, Sink};
use crate::store::{CursorKey, Positions};

/// Whose offline-queue cursors a session reads and writes.
pub fn cursor_key(session: &Session) -> CursorKey {
    let identity = session.identity();
    CursorKey {
        company_id: identity.company_id,
        user_id: identity.user_id,
        device_id: session.device_id.clone().unwrap_or_default(),
    }
}

/// Puts the session in `room`'s durable feed after `start` (`None` = from
/// the current head). Replaces an existing membership for the same room.
pub fn attach(
    hub: &DurableHub,
    session: &Session,
    sink: &Arc<dyn Sink>,
    room: &RoomName,
    start: Option<i64>,
) -> Arc<Member> {
    let identity = session.identity();
    let member = Member::new(
        sink.clone(),
        session.id,
        identity.role,
        &identity.company_id,
        room.as_str(),
        start.unwrap_or(-1),
    );
    hub.feeds.attach(member.clone());
    member
}

pub fn detach(hub: &DurableHub, session: &Session, room: &RoomName) {
    let company = session.identity().company_id;
    hub.feeds.detach(&company, room.as_str(), session.id);
}

/// The session's position in `room`, if it is in that room's feed.
pub fn member(hub: &DurableHub, session: &Session, room: &RoomName) -> Option<Arc<Member>> {
    let company = session.identity().company_id;
    hub.feeds.member(&company, room.as_str(), session.id)
}

/// The offline queue and `auth.offsets` resume, run before `session`.
/// The rooms stay in catch-up mode until [`go_live`] after `session` went
/// out. An automatic room with no stored cursor gets one now, at its start
/// position, before anything is sent: a node that dies at any moment after
/// this leaves the device a cursor to come back to. (The user's own room
/// needs none: without one it starts at 0 anyway, see [`implied_start`].)
pub async fn replay_on_connect(
    hub: &DurableHub,
    session: &Session,
    sink: &Arc<dyn Sink>,
    offsets: &HashMap<String, i64>,
    extra_rooms: &[RoomName],
) -> Vec<Arc<Member>> {
    let identity = session.identity();
    let key = cursor_key(session);
    let automatic = automatic_rooms(&identity);
    let names: Vec<String> = automatic
        .iter()
        .chain(extra_rooms)
        .map(|r| r.as_str().to_string())
        .collect();
    // The cursors and every room's head in one round trip. `None`: the
    // database is down; each automatic room then reads its stored cursor
    // before sending anything (see `DurableHub::start_of`).
    let positions = match hub.store().connect_positions(&key, &names).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "cannot load offline-queue cursors now; each room reads its cursor when the database answers");
            None
        }
    };
    let known = positions.is_some();
    let Positions { cursors, heads } = positions.unwrap_or_default();
    // A room without events has head 0 (as `head_offset` says).
    let head_of = |room: &RoomName| known.then(|| heads.get(room.as_str()).copied().unwrap_or(0));
    let mut fresh = Vec::new();
    let mut members = Vec::new();
    let mut tracked = Vec::new();
    for room in automatic.iter().chain(extra_rooms) {
        let stored = cursors.get(room.as_str()).copied();
        let mut start = offsets.get(room.as_str()).copied().or(stored);
        let is_automatic = automatic.contains(room) && known;
        let mut implied = false;
        if start.is_none() && is_automatic {
            start = first_start(room, head_of(room));
            implied = start.is_some() && start == implied_start(room);
            if let (Some(s), false) = (start, implied) {
                fresh.push((room.to_string(), s));
            }
        }
        let member = attach(hub, session, sink, room, start);
        if let Some(head) = head_of(room) {
            member.hint_head(head);
        }
        if is_automatic {
            tracked.push((member.clone(), stored, start, implied));
        } else if start.is_none() && automatic.contains(room) {
            member.start_from_stored_cursor(key.clone());
        }
        members.push(member);
    }
    let fresh_saved = fresh.is_empty()
        || match hub.save_cursors(&key, &fresh).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not store first cursors; the next save retries");
                false
            }
        };
    for (member, stored, start, implied) in tracked {
        let saved = stored.or(start.filter(|_| implied || fresh_saved));
        member.track_cursor(key.clone(), saved.unwrap_or(-1));
    }
    members
}

/// Where an automatic room without a cursor starts: a user's own room keeps
/// what was addressed to them before their first connection; shared rooms
/// start at the head (read at connect). `None` (resolved later) if the head
/// could not be read.
fn first_start(room: &RoomName, head: Option<i64>) -> Option<i64> {
    implied_start(room).or(head)
}

/// Where a room without a stored cursor starts whenever it is read: a
/// user's own room from its beginning (here and in `DurableHub::start_of`).
/// Such a first cursor is not written: a stored 0 would mean what no row
/// means, and a new device's connect is one row cheaper.
fn implied_start(room: &RoomName) -> Option<i64> {
    matches!(room.kind(), RoomKind::User(_)).then_some(0)
}

/// After `session` went out: each member catches up what was committed
/// meanwhile and goes live.
///
/// A member the merged replay read to the end goes live at once unless a
/// notification arrived since that read (the same rule as the end of a
/// catch-up: [`Member::finish_catch_up`]). Reading the log again for it,
/// as every member once did, cost each connect a query per room and each
/// reconnect storm tens of thousands of them.
pub fn go_live(hub: &Arc<DurableHub>, members: Vec<Arc<Member>>, read_through: &[bool]) {
    for (i, member) in members.into_iter().enumerate() {
        let done = read_through.get(i).copied().unwrap_or(false);
        if !(done && member.finish_catch_up()) {
            hub.spawn_catch_up(member);
        }
    }
}

/// `events:ack { room, offset }`: the client confirms what it processed;
/// returns the position acknowledged (never past what was sent).
pub async fn ack(
    hub: &DurableHub,
    session: &Session,
    room: &RoomName,
    offset: i64,
) -> AppResult<i64> {
    let member = member(hub, session, room).ok_or_else(|| {
        AppError::new(
            Code::ValidationFailed,
            format!("not subscribed to `{room}`"),
        )
    })?;
    let acked = member.ack(offset);
    if automatic_rooms(&session.identity()).contains(room) {
        hub.save_cursors(&cursor_key(session), &[(room.to_string(), acked)])
            .await
            .map_err(AppError::unavailable)?;
    }
    Ok(acked)
}

/// Saves the offline-queue cursors of the session's automatic rooms and
/// leaves every feed. Whatever the reason, the cursor is what the client
/// surely processed ([`Sink::proof_window`]): a client that closed the
/// connection itself may not have read what was in flight either.
pub async fn leave(hub: &DurableHub, session: &Session, reason: &str) {
    let identity = session.identity();
    let automatic = automatic_rooms(&identity);
    let mut cursors = Vec::new();
    for room in automatic.iter().cloned().chain(session.joined()) {
        let Some(member) = hub
            .feeds
            .detach(&identity.company_id, room.as_str(), session.id)
        else {
            continue;
        };
        if automatic.contains(&room)
            && let Some(offset) = member.unsaved()
        {
            cursors.push((member.room.clone(), offset));
        }
    }
    tracing::debug!(session = %session.id, reason, ?cursors, "saving offline-queue cursors");
    // A position still unresolved (database down since the connect) is -1
    // and was left out, as was one already stored: the stored cursor stays
    // as it was. (A reconnect storm's departures of sockets that received
    // nothing then write nothing.)
    if cursors.is_empty() {
        return;
    }
    if let Err(e) = hub.save_cursors(&cursor_key(session), &cursors).await {
        tracing::warn!(error = %e, "could not save offline-queue cursors; the client may get duplicates");
    }
}
