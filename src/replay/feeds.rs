//! The members of each room that has sessions on this node, and the live
//! delivery of a freshly committed event to them (with the hand-over rules
//! of [`super::feed`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::feed::{LogEvent, Member};
use crate::domain::SessionId;
use crate::session::SendFail;

/// What a notification asks of the caller.
pub enum Notified {
    Done,
    /// These members have a gap and must catch up from the database.
    CatchUp(Vec<Arc<Member>>),
}

type RoomKey = (String, String);

/// The members of each room that has sockets on this node.
#[derive(Default)]
pub struct Feeds {
    rooms: Mutex<HashMap<RoomKey, HashMap<SessionId, Arc<Member>>>>,
}

impl Feeds {
    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomKey, HashMap<SessionId, Arc<Member>>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn attach(&self, member: Arc<Member>) {
        let key = (member.company.clone(), member.room.clone());
        self.rooms()
            .entry(key)
            .or_default()
            .insert(member.session, member.clone());
        member.mark_attached();
    }

    /// Takes the session out of the room's feed; returns its member.
    pub fn detach(&self, company: &str, room: &str, session: SessionId) -> Option<Arc<Member>> {
        let mut rooms = self.rooms();
        let key = (company.to_string(), room.to_string());
        let members = rooms.get_mut(&key)?;
        let member = members.remove(&session);
        if members.is_empty() {
            rooms.remove(&key);
        }
        member
    }

    pub fn member(&self, company: &str, room: &str, session: SessionId) -> Option<Arc<Member>> {
        self.rooms()
            .get(&(company.to_string(), room.to_string()))
            .and_then(|m| m.get(&session).cloned())
    }

    /// Rooms with members on this node, for a sweep after a bus outage.
    pub fn all_members(&self) -> Vec<Arc<Member>> {
        self.rooms()
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Delivers a freshly committed event to this node's members of its room.
    pub fn notify(&self, ev: &LogEvent) -> Notified {
        let members: Vec<Arc<Member>> =
            match self.rooms().get(&(ev.company.clone(), ev.room.clone())) {
                Some(m) => m.values().cloned().collect(),
                None => return Notified::Done,
            };
        let mut gaps = Vec::new();
        let mut sent = 0u64;
        for member in members {
            let mut t = member.track();
            if t.catching_up {
                t.missed = true;
            } else if ev.offset <= t.last {
                // Already sent (a catch-up got there first).
            } else if ev.offset == t.last + 1 {
                match member.send_next(&mut t, ev) {
                    Ok(true) => sent += 1,
                    Ok(false) | Err(SendFail::Closed) => {}
                    // A burst filled the socket's buffer: nothing is dropped
                    // or buffered here; the member catches up from the
                    // database at the pace the socket drains (and is cut off
                    // only if it stops draining altogether).
                    Err(SendFail::Full) => {
                        t.catching_up = true;
                        t.stalled_since.get_or_insert_with(Instant::now);
                        drop(t);
                        gaps.push(member);
                    }
                }
            } else {
                t.catching_up = true;
                drop(t);
                gaps.push(member);
            }
        }
        if sent > 0 {
            crate::metrics::messages_out(&ev.event_type, sent);
            let age_ms = (crate::domain::now_ms() - ev.created_at).max(0);
            crate::metrics::latency(age_ms as f64 / 1000.0);
        }
        if gaps.is_empty() {
            Notified::Done
        } else {
            Notified::CatchUp(gaps)
        }
    }
}
