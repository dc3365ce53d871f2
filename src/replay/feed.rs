//! Per-node live feeds of durable events, with a position per socket and room.
//!
//! Durable events are not sent with socket.io room broadcasts: a broadcast
//! cannot tell which sockets got what, and exact resume needs exactly that.
//! Each socket that is in a room has a [`Member`] here with the last offset
//! it was sent. A notified event is sent only if it is the next offset;
//! a jump means a gap (a lost notification, or events committed while the
//! member was catching up) and hands the member to a catch-up from the
//! database. While a member catches up, notifications only set `missed`, and
//! the catch-up re-reads until it finds nothing new under the lock: that is
//! the hand-over from history to live, with no gap and no duplicate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog::RoleSet;
use crate::domain::{Role, iso8601, receiving_role};

/// A durable event as one room's log holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    pub company: String,
    pub room: String,
    pub offset: i64,
    pub id: String,
    pub event_type: String,
    pub payload: Value,
    pub priority: String,
    pub source: String,
    pub publisher: Option<String>,
    pub created_at: i64,
    /// Roles that may receive the type (from the catalog).
    pub receive: u8,
    /// The publishing socket, which is not sent its own event.
    pub exclude: Option<String>,
}

impl LogEvent {
    pub fn meta(&self) -> Value {
        let mut meta = json!({
            "id": self.id,
            "type": self.event_type,
            "room": self.room,
            "offset": self.offset,
            "timestamp": iso8601(self.created_at),
            "source": self.source,
            "priority": self.priority,
        });
        if let Some(p) = &self.publisher {
            meta["publisher"] = json!(p);
        }
        meta
    }

    fn for_role(&self, role: Role) -> bool {
        RoleSet::from_bits(self.receive).contains(role)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFail {
    /// The socket's outgoing buffer is full.
    Full,
    /// The socket is gone.
    Closed,
}

/// Where a member's events go: a socket, seen without its adapter type.
pub trait Sink: Send + Sync + 'static {
    fn id(&self) -> String;
    fn role(&self) -> Role;
    fn emit(&self, event: &str, payload: &Value, meta: &Value) -> Result<(), SendFail>;
    /// A single-argument event (`replay:truncated`).
    fn emit_one(&self, event: &str, data: &Value) -> Result<(), SendFail>;
    /// A live send found the buffer full: the socket is disconnected (it
    /// reconnects and catches up) instead of silently losing the event.
    fn overflowed(&self);
}

#[derive(Debug, Default)]
struct Track {
    last: i64,
    catching_up: bool,
    missed: bool,
    /// `(when, last)` samples, for the offset confirmed before a deadline.
    samples: VecDeque<(Instant, i64)>,
    initial: i64,
    acked: Option<i64>,
    /// When the socket's buffer was first found full: what was sent after
    /// (and shortly before) that may never have been read.
    stalled_since: Option<Instant>,
}

/// One socket in one room's feed.
pub struct Member {
    pub sink: Arc<dyn Sink>,
    pub company: String,
    pub room: String,
    track: Mutex<Track>,
}

impl Member {
    /// Starts in catch-up mode: nothing live is sent until a catch-up ran.
    pub fn new(sink: Arc<dyn Sink>, company: &str, room: &str, last: i64) -> Arc<Self> {
        Arc::new(Self {
            sink,
            company: company.to_string(),
            room: room.to_string(),
            track: Mutex::new(Track {
                last,
                catching_up: true,
                initial: last,
                ..Track::default()
            }),
        })
    }

    fn track(&self) -> MutexGuard<'_, Track> {
        self.track.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn last(&self) -> i64 {
        self.track().last
    }

    /// The last offset sent at least `window` ago: what the client surely
    /// had before a connection that died silently (heartbeat timeout).
    /// For a member that started at "the head" (`last < 0`).
    pub fn resolve_head(&self, head: i64) {
        let mut t = self.track();
        if t.last < 0 {
            t.last = head;
            t.initial = head;
        }
    }

    /// Moves past offsets that no longer exist (expired).
    pub fn skip_to(&self, offset: i64) {
        let mut t = self.track();
        t.last = t.last.max(offset);
    }

    /// Puts a live member back into catch-up; `false` if it already is.
    pub fn begin_catch_up(&self) -> bool {
        let mut t = self.track();
        if t.catching_up {
            return false;
        }
        t.catching_up = true;
        true
    }

    pub fn confirmed(&self, window: Duration) -> i64 {
        let t = self.track();
        if window.is_zero() && t.stalled_since.is_none() {
            return t.last;
        }
        let since = t.stalled_since.unwrap_or_else(Instant::now);
        let Some(deadline) = since.checked_sub(window) else {
            return t.initial;
        };
        t.samples
            .iter()
            .rev()
            .find(|(at, _)| *at <= deadline)
            .map_or(t.initial, |(_, last)| *last)
    }

    pub fn ack(&self, offset: i64) -> i64 {
        let mut t = self.track();
        let acked = offset.min(t.last).max(t.acked.unwrap_or(0));
        t.acked = Some(acked);
        acked
    }

    pub fn acked(&self) -> Option<i64> {
        self.track().acked
    }

    /// Sends `ev` if it is this member's next event; skips what the member's
    /// role may not receive or what it published itself (the position still
    /// advances). `Err(Full)` leaves the position where it was.
    fn send_next(&self, t: &mut Track, ev: &LogEvent) -> Result<bool, SendFail> {
        let sent = if !ev.for_role(receiving_role(&self.room, self.sink.role()))
            || ev.exclude.as_deref() == Some(&self.sink.id())
        {
            false
        } else {
            self.sink.emit(&ev.event_type, &ev.payload, &ev.meta())?;
            true
        };
        t.last = ev.offset;
        let now = Instant::now();
        match t.samples.back_mut() {
            Some((at, last)) if now.duration_since(*at) < Duration::from_millis(500) => {
                *last = ev.offset
            }
            _ => t.samples.push_back((now, ev.offset)),
        }
        // Heartbeat windows are under two minutes; older samples are noise.
        while t.samples.len() > 2 && t.samples[1].0 + Duration::from_secs(180) < now {
            t.samples.pop_front();
        }
        Ok(sent)
    }

    /// A catch-up delivers one event read from the database.
    pub fn deliver_caught_up(&self, ev: &LogEvent) -> Result<bool, SendFail> {
        let mut t = self.track();
        if ev.offset <= t.last {
            return Ok(false);
        }
        self.send_next(&mut t, ev)
    }

    /// Ends a catch-up unless notifications arrived meanwhile (`false`:
    /// read again). Under the same lock as live delivery, so nothing slips
    /// between the last read and going live.
    pub fn finish_catch_up(&self) -> bool {
        let mut t = self.track();
        if t.missed {
            t.missed = false;
            return false;
        }
        t.catching_up = false;
        // `stalled_since` stays: emptying our buffer into the kernel's is no
        // proof that the client read anything.
        true
    }

    /// Notes that the socket's buffer is full (the first time counts).
    pub fn stalled(&self) {
        let mut t = self.track();
        t.stalled_since.get_or_insert_with(Instant::now);
    }
}

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
    rooms: Mutex<HashMap<RoomKey, HashMap<String, Arc<Member>>>>,
}

impl Feeds {
    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomKey, HashMap<String, Arc<Member>>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn attach(&self, member: Arc<Member>) {
        let key = (member.company.clone(), member.room.clone());
        self.rooms()
            .entry(key)
            .or_default()
            .insert(member.sink.id(), member);
    }

    pub fn detach(&self, company: &str, room: &str, sink_id: &str) {
        let mut rooms = self.rooms();
        let key = (company.to_string(), room.to_string());
        if let Some(members) = rooms.get_mut(&key) {
            members.remove(sink_id);
            if members.is_empty() {
                rooms.remove(&key);
            }
        }
    }

    pub fn member(&self, company: &str, room: &str, sink_id: &str) -> Option<Arc<Member>> {
        self.rooms()
            .get(&(company.to_string(), room.to_string()))
            .and_then(|m| m.get(sink_id).cloned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        got: Mutex<Vec<i64>>,
        full: std::sync::atomic::AtomicBool,
    }

    struct TestSink(Arc<Recorder>, Role);

    impl Sink for TestSink {
        fn id(&self) -> String {
            "s1".into()
        }
        fn role(&self) -> Role {
            self.1
        }
        fn emit(&self, _: &str, _: &Value, meta: &Value) -> Result<(), SendFail> {
            if self.0.full.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(SendFail::Full);
            }
            self.0
                .got
                .lock()
                .unwrap()
                .push(meta["offset"].as_i64().unwrap());
            Ok(())
        }
        fn emit_one(&self, _: &str, _: &Value) -> Result<(), SendFail> {
            Ok(())
        }
        fn overflowed(&self) {}
    }

    fn ev(offset: i64, receive: RoleSet) -> LogEvent {
        LogEvent {
            company: "c".into(),
            room: "company".into(),
            offset,
            id: format!("e{offset}"),
            event_type: "t".into(),
            payload: json!({}),
            priority: "medium".into(),
            source: "test".into(),
            publisher: None,
            created_at: 0,
            receive: receive.bits(),
            exclude: None,
        }
    }

    fn setup(role: Role, last: i64) -> (Feeds, Arc<Member>, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let feeds = Feeds::default();
        let m = Member::new(Arc::new(TestSink(rec.clone(), role)), "c", "company", last);
        feeds.attach(m.clone());
        (feeds, m, rec)
    }

    #[test]
    fn notifications_during_catch_up_are_deferred_then_reread() {
        let (feeds, m, rec) = setup(Role::Operator, 0);
        assert!(matches!(feeds.notify(&ev(1, RoleSet::ALL)), Notified::Done));
        assert!(
            rec.got.lock().unwrap().is_empty(),
            "nothing live while catching up"
        );
        assert!(
            !m.finish_catch_up(),
            "a missed notification forces another read"
        );
        m.deliver_caught_up(&ev(1, RoleSet::ALL)).unwrap();
        assert!(m.finish_catch_up());
        feeds.notify(&ev(2, RoleSet::ALL));
        feeds.notify(&ev(2, RoleSet::ALL));
        assert_eq!(*rec.got.lock().unwrap(), vec![1, 2], "no duplicate");
    }

    #[test]
    fn a_gap_hands_the_member_to_catch_up() {
        let (feeds, m, rec) = setup(Role::Operator, 5);
        assert!(m.finish_catch_up());
        match feeds.notify(&ev(7, RoleSet::ALL)) {
            Notified::CatchUp(members) => assert_eq!(members.len(), 1),
            Notified::Done => panic!("gap not detected"),
        }
        assert!(rec.got.lock().unwrap().is_empty());
        assert_eq!(m.last(), 5);
    }

    #[test]
    fn role_filtered_events_advance_the_position_without_sending() {
        let (feeds, m, rec) = setup(Role::Operator, 0);
        assert!(m.finish_catch_up());
        feeds.notify(&ev(1, RoleSet::of(&[Role::Supervisor, Role::Admin])));
        feeds.notify(&ev(2, RoleSet::ALL));
        assert_eq!(*rec.got.lock().unwrap(), vec![2]);
    }

    #[test]
    fn a_full_buffer_hands_the_member_to_catch_up_without_advancing() {
        let (feeds, m, rec) = setup(Role::Operator, 0);
        assert!(m.finish_catch_up());
        rec.full.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            feeds.notify(&ev(1, RoleSet::ALL)),
            Notified::CatchUp(_)
        ));
        assert_eq!(m.last(), 0);
    }

    #[test]
    fn acks_never_exceed_what_was_sent() {
        let (_feeds, m, _rec) = setup(Role::Operator, 3);
        assert_eq!(m.ack(10), 3);
        assert_eq!(m.ack(1), 3, "acks never move back");
    }
}
