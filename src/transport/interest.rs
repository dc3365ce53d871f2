//! Which rooms each other node has plain-WebSocket or SSE sessions in, so
//! that [`super::relay`] publishes a delivery only when some node wants it
//! (a cluster of socket.io clients alone then sends nothing extra).
//!
//! Each node announces changes of its own room set as they happen (a room's
//! first session, a room's last), its whole set every [`FULL_EVERY`] and
//! when another node says hello (at its start, after a Redis reconnect).
//! A node not heard of for [`FORGET_AFTER`] is forgotten. What an
//! announcement lost costs is bounded the same way: a room wanted since
//! less than a full period may miss ephemeral events (at most once, as
//! always for them); durable events do not depend on this.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::local::{LocalRooms, RoomKey};

/// How often a node announces its whole room set.
pub const FULL_EVERY: Duration = Duration::from_secs(10);
/// A node silent for this long is forgotten (it announces every 10 s).
pub const FORGET_AFTER: Duration = Duration::from_secs(35);

/// An announcement of a node's rooms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    pub node: String,
    /// `add` is the node's whole set (replacing what was known).
    pub full: bool,
    #[serde(default)]
    pub add: Vec<RoomKey>,
    #[serde(default)]
    pub remove: Vec<RoomKey>,
}

struct Known {
    rooms: HashSet<RoomKey>,
    seen: Instant,
}

/// The other nodes' rooms, as announced.
#[derive(Default)]
pub struct Remote {
    // std Mutex: one lookup or update at a time, never across an await.
    nodes: Mutex<HashMap<String, Known>>,
    /// Woken when a node asks for everyone's whole set.
    pub full_wanted: Notify,
}

impl Remote {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Known>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a node other than this one has sessions in the room.
    pub fn wants(&self, company: &str, room: &str) -> bool {
        let key = (company.to_string(), room.to_string());
        let now = Instant::now();
        self.lock()
            .values()
            .any(|k| now.duration_since(k.seen) < FORGET_AFTER && k.rooms.contains(&key))
    }

    pub fn apply(&self, a: Announcement) {
        let mut nodes = self.lock();
        let now = Instant::now();
        nodes.retain(|_, k| now.duration_since(k.seen) < FORGET_AFTER);
        let known = nodes.entry(a.node).or_insert_with(|| Known {
            rooms: HashSet::new(),
            seen: now,
        });
        known.seen = now;
        if a.full {
            known.rooms = a.add.into_iter().collect();
        } else {
            known.rooms.extend(a.add);
            for key in &a.remove {
                known.rooms.remove(key);
            }
        }
    }
}

/// What changed in this node's set since the last announcement.
pub fn diff(
    node: &str,
    last: &HashSet<RoomKey>,
    now: &HashSet<RoomKey>,
    full: bool,
) -> Option<Announcement> {
    if full {
        return Some(Announcement {
            node: node.to_string(),
            full: true,
            add: now.iter().cloned().collect(),
            remove: Vec::new(),
        });
    }
    let add: Vec<RoomKey> = now.difference(last).cloned().collect();
    let remove: Vec<RoomKey> = last.difference(now).cloned().collect();
    (!add.is_empty() || !remove.is_empty()).then(|| Announcement {
        node: node.to_string(),
        full: false,
        add,
        remove,
    })
}

/// Announces this node's rooms through `send` until the app stops: changes
/// as they happen, the whole set every [`FULL_EVERY`] and on request.
pub async fn announce_forever(
    local: Arc<LocalRooms>,
    remote: Arc<Remote>,
    node: String,
    send: impl Fn(Announcement) -> bool + Send,
) {
    let mut last = HashSet::new();
    let mut full_tick = tokio::time::interval(FULL_EVERY);
    let mut owed_full = false;
    loop {
        let full = tokio::select! {
            _ = full_tick.tick() => true,
            _ = remote.full_wanted.notified() => true,
            _ = local.changed.notified() => false,
        };
        let now = local.keys();
        if let Some(a) = diff(&node, &last, &now, full || owed_full) {
            // An announcement that could not be queued is healed by a
            // whole set as soon as one goes out.
            owed_full = !send(a);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(room: &str) -> RoomKey {
        ("acme".to_string(), room.to_string())
    }

    #[test]
    fn announcements_and_what_they_say() {
        let remote = Remote::default();
        assert!(!remote.wants("acme", "alarms"));
        let empty = HashSet::new();
        let one: HashSet<RoomKey> = [key("alarms")].into();
        let a = diff("b", &empty, &one, false).unwrap();
        remote.apply(a);
        assert!(remote.wants("acme", "alarms"));
        assert!(!remote.wants("other", "alarms"), "per company");
        assert_eq!(diff("b", &one, &one, false), None, "nothing changed");
        remote.apply(diff("b", &one, &empty, false).unwrap());
        assert!(!remote.wants("acme", "alarms"));
        remote.apply(diff("b", &empty, &one, true).unwrap());
        assert!(remote.wants("acme", "alarms"));
        remote.apply(Announcement {
            node: "b".into(),
            full: true,
            add: vec![key("company")],
            remove: vec![],
        });
        assert!(!remote.wants("acme", "alarms"), "a whole set replaces");
        assert!(remote.wants("acme", "company"));
    }
}
