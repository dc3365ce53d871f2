//! Ephemeral delivery to the sessions of the transports that have no
//! cluster adapter of their own (plain WebSocket, SSE): an index of this
//! node's such sessions by room ([`LocalRooms`], kept by their sinks'
//! `join`/`leave`), and the [`Hub`] that delivers to them. Other nodes'
//! deliveries arrive through [`super::relay`].
//!
//! The receive rule is the durable feed's: a session in `room` gets a type
//! if the role whose rules apply there ([`receiving_role`]) may receive it.
//! A full outgoing buffer loses the ephemeral event (at most once),
//! counted as socket.io's are.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Notify;

use crate::domain::{Role, RoomName, SessionId, receiving_role};
use crate::fanout::{Delivery, Hub, Signal};
use crate::session::{SendFail, Sink};

/// `(company, room)`.
pub type RoomKey = (String, String);

struct Entry {
    sink: Arc<dyn Sink>,
    role: Role,
}

#[derive(Default)]
struct Index {
    rooms: HashMap<RoomKey, HashMap<SessionId, Entry>>,
    /// Each session's rooms, so a closed session leaves them all at once.
    sessions: HashMap<SessionId, Vec<RoomKey>>,
}

/// This node's plain-WebSocket and SSE sessions by `(company, room)`.
#[derive(Default)]
pub struct LocalRooms {
    // std Mutex: held for map updates and to clone a room's sinks, never
    // across an await or a send.
    index: Mutex<Index>,
    /// Woken when a room gets its first session here or loses its last
    /// (the relay tells the other nodes which rooms this node wants).
    pub changed: Notify,
}

impl LocalRooms {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn join(
        &self,
        id: SessionId,
        role: Role,
        sink: &Arc<dyn Sink>,
        company: &str,
        rooms: &[RoomName],
    ) {
        let mut index = self.lock();
        for room in rooms {
            let key = (company.to_string(), room.as_str().to_string());
            let entry = Entry {
                sink: sink.clone(),
                role,
            };
            let members = index.rooms.entry(key.clone()).or_default();
            if members.is_empty() {
                self.changed.notify_one();
            }
            if members.insert(id, entry).is_none() {
                index.sessions.entry(id).or_default().push(key);
            }
        }
    }

    pub fn leave(&self, id: SessionId, company: &str, room: &RoomName) {
        let mut index = self.lock();
        let key = (company.to_string(), room.as_str().to_string());
        if remove(&mut index.rooms, &key, id) {
            self.changed.notify_one();
        }
        if let Some(keys) = index.sessions.get_mut(&id) {
            keys.retain(|k| *k != key);
        }
    }

    /// The session ended: out of every room.
    pub fn forget(&self, id: SessionId) {
        let mut index = self.lock();
        for key in index.sessions.remove(&id).unwrap_or_default() {
            if remove(&mut index.rooms, &key, id) {
                self.changed.notify_one();
            }
        }
    }

    /// The rooms that have sessions on this node.
    pub fn keys(&self) -> HashSet<RoomKey> {
        self.lock().rooms.keys().cloned().collect()
    }

    /// The sinks in a room that pass `keep`.
    fn targets(
        &self,
        company: &str,
        room: &str,
        keep: impl Fn(SessionId, Role) -> bool,
    ) -> Vec<Arc<dyn Sink>> {
        let index = self.lock();
        index
            .rooms
            .get(&(company.to_string(), room.to_string()))
            .map(|m| {
                m.iter()
                    .filter(|(id, e)| keep(**id, e.role))
                    .map(|(_, e)| e.sink.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A domain event to this node's sessions in its room.
    pub fn deliver(&self, d: &Delivery) {
        let targets = self.targets(&d.company, &d.room, |id, role| {
            Some(id) != d.exclude && d.receive.contains(receiving_role(&d.room, role))
        });
        count(
            targets
                .iter()
                .map(|s| s.emit(&d.event_type, &d.payload, &d.meta)),
        );
    }

    /// A server message to this node's sessions in its room.
    pub fn signal(
        &self,
        company: &str,
        room: &str,
        event: &str,
        data: &Value,
        exclude: Option<SessionId>,
    ) {
        let targets = self.targets(company, room, |id, _| Some(id) != exclude);
        count(targets.iter().map(|s| s.emit_one(event, data)));
    }
}

/// Takes the session out of the room; `true` when that emptied the room.
fn remove(
    rooms: &mut HashMap<RoomKey, HashMap<SessionId, Entry>>,
    key: &RoomKey,
    id: SessionId,
) -> bool {
    let Some(members) = rooms.get_mut(key) else {
        return false;
    };
    members.remove(&id);
    if members.is_empty() {
        rooms.remove(key);
        return true;
    }
    false
}

/// Full buffers lost the event: counted, never silent.
fn count(results: impl Iterator<Item = Result<(), SendFail>>) {
    let full = results.filter(|r| *r == Err(SendFail::Full)).count();
    if full > 0 {
        crate::metrics::dropped_ephemeral(full as u64);
    }
}

#[async_trait]
impl Hub for LocalRooms {
    async fn deliver(&self, d: &Delivery) {
        LocalRooms::deliver(self, d);
    }

    async fn emit(&self, s: &Signal) {
        self.signal(&s.company, &s.room, s.event, &s.data, s.exclude);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RoleSet;
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorder(StdMutex<Vec<String>>);

    impl Sink for Recorder {
        fn emit(&self, event: &str, _: &Value, _: &Value) -> Result<(), SendFail> {
            self.0.lock().unwrap().push(event.to_string());
            Ok(())
        }
        fn emit_one(&self, event: &str, _: &Value) -> Result<(), SendFail> {
            self.0.lock().unwrap().push(event.to_string());
            Ok(())
        }
        fn disconnect(&self) {}
        fn overflowed(&self) {}
        fn proof_window(&self) -> Duration {
            Duration::ZERO
        }
    }

    #[test]
    fn rooms_roles_tenants_and_exclusion() {
        let rooms = LocalRooms::new();
        let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let (ida, idb) = (SessionId::new(), SessionId::new());
        let sa: Arc<dyn Sink> = a.clone();
        let sb: Arc<dyn Sink> = b.clone();
        let room = RoomName::parse("alarms").unwrap();
        rooms.join(
            ida,
            Role::Operator,
            &sa,
            "acme",
            std::slice::from_ref(&room),
        );
        rooms.join(idb, Role::Manager, &sb, "acme", std::slice::from_ref(&room));
        let all = RoleSet::of(&Role::ALL);
        let managers = RoleSet::of(&[Role::Manager, Role::Admin]);
        let v = Value::Null;
        let d = |company: &str, event: &str, receive, exclude| Delivery {
            company: company.into(),
            room: "alarms".into(),
            event_type: event.into(),
            payload: Value::Null,
            meta: Value::Null,
            receive,
            exclude,
        };
        rooms.deliver(&d("acme", "alarm", all, None));
        rooms.deliver(&d("acme", "secret", managers, None));
        rooms.deliver(&d("other", "alarm", all, None));
        rooms.deliver(&d("acme", "mine", all, Some(ida)));
        rooms.signal("acme", "alarms", "user:typing", &v, Some(idb));
        assert_eq!(*a.0.lock().unwrap(), ["alarm", "user:typing"]);
        assert_eq!(*b.0.lock().unwrap(), ["alarm", "secret", "mine"]);
        rooms.forget(ida);
        rooms.leave(idb, "acme", &room);
        rooms.deliver(&d("acme", "late", all, None));
        assert_eq!(a.0.lock().unwrap().len(), 2);
        assert_eq!(b.0.lock().unwrap().len(), 3);
        assert!(
            rooms.lock().rooms.is_empty()
                && rooms.lock().sessions.get(&idb).is_none_or(Vec::is_empty)
        );
    }
}
