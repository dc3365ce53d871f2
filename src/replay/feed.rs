//! Per-node live feeds of durable events, with a position per session and room.
//!
//! Durable events are not sent with socket.io room broadcasts: a broadcast
//! cannot tell which sockets got what, and exact resume needs exactly that.
//! Each session that is in a room has a [`Member`] here with the last offset
//! it was sent. A notified event is sent only if it is the next offset;
//! a jump means a gap (a lost notification, or events committed while the
//! member was catching up) and hands the member to a catch-up from the
//! database. While a member catches up, notifications only set `missed`, and
//! the catch-up re-reads until it finds nothing new under the lock: that is
//! the hand-over from history to live, with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog::RoleSet;
use crate::domain::{Role, SessionId, iso8601, receiving_role};
use crate::session::{SendFail, Sink};
use crate::store::CursorKey;

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
    /// The publishing session, which is not sent its own event.
    pub exclude: Option<SessionId>,
    /// [`LogEvent::meta`], built once for all the members it is sent to.
    #[serde(skip)]
    pub meta_json: OnceLock<Value>,
}

impl LogEvent {
    /// The `meta` every member is sent with this event.
    pub fn meta(&self) -> &Value {
        self.meta_json.get_or_init(|| self.build_meta())
    }

    fn build_meta(&self) -> Value {
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

/// A run of sends within half a second: the last offset sent in it and when.
#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    at: Instant,
    pub(super) last: i64,
}

#[derive(Debug, Default)]
pub(super) struct Track {
    pub(super) last: i64,
    pub(super) catching_up: bool,
    pub(super) missed: bool,
    /// When what was sent, for the offset confirmed before a deadline.
    samples: VecDeque<Sample>,
    initial: i64,
    acked: Option<i64>,
    /// When the socket's buffer was first found full: what was sent after
    /// (and shortly before) that may never have been read.
    pub(super) stalled_since: Option<Instant>,
}

/// One session in one room's feed.
pub struct Member {
    pub sink: Arc<dyn Sink>,
    pub session: SessionId,
    /// The session's role (fixed for its life), for the receive rule.
    pub role: Role,
    pub company: String,
    pub room: String,
    /// How long after a send a still-open connection proves the client read
    /// it ([`Sink::proof_window`]).
    window: Duration,
    /// Whose offline-queue cursor this position feeds (automatic rooms only).
    cursor: OnceLock<CursorKey>,
    /// The cursor value last written to the database (-1: none).
    persisted: AtomicI64,
    /// The start is the stored cursor, which could not be read at connect
    /// (database down): it is read before anything is sent.
    from_stored: AtomicBool,
    /// The room's head as read at connect (-1: none), used once by the
    /// first catch-up page instead of reading it again.
    head_hint: AtomicI64,
    /// When it joined the room's feed: a shared catch-up read must have
    /// started after this ([`super::pages`]).
    attached_at: OnceLock<Instant>,
    track: Mutex<Track>,
}

impl Member {
    /// The room's head, read (with the cursors) at connect.
    pub fn hint_head(&self, head: i64) {
        self.head_hint.store(head, Ordering::Relaxed);
    }

    /// Notes that the member is in its room's feed now (notifications
    /// reach it from here on).
    pub(super) fn mark_attached(&self) {
        let _ = self.attached_at.set(Instant::now());
    }

    /// The earliest start of a catch-up read this member may use: one that
    /// started before it was in the feed could lack an event whose
    /// notification it never got. Not attached: only a read started now.
    pub(super) fn reads_from(&self) -> Instant {
        self.attached_at.get().copied().unwrap_or_else(Instant::now)
    }

    /// The head read at connect, once.
    pub fn take_head_hint(&self) -> Option<i64> {
        let head = self.head_hint.swap(-1, Ordering::Relaxed);
        (head >= 0).then_some(head)
    }

    /// Starts in catch-up mode: nothing live is sent until a catch-up ran.
    pub fn new(
        sink: Arc<dyn Sink>,
        session: SessionId,
        role: Role,
        company: &str,
        room: &str,
        last: i64,
    ) -> Arc<Self> {
        let window = sink.proof_window();
        Arc::new(Self {
            sink,
            session,
            role,
            company: company.to_string(),
            room: room.to_string(),
            window,
            cursor: OnceLock::new(),
            persisted: AtomicI64::new(-1),
            from_stored: AtomicBool::new(false),
            head_hint: AtomicI64::new(-1),
            attached_at: OnceLock::new(),
            track: Mutex::new(Track {
                last,
                catching_up: true,
                initial: last,
                ..Track::default()
            }),
        })
    }

    pub(super) fn track(&self) -> MutexGuard<'_, Track> {
        self.track.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn last(&self) -> i64 {
        self.track().last
    }

    /// The position this member started after (-1: not resolved yet).
    pub fn start(&self) -> i64 {
        self.track().initial
    }

    /// Makes this position feed `key`'s offline-queue cursor, whose stored
    /// value is `stored` (-1: none).
    pub fn track_cursor(&self, key: CursorKey, stored: i64) {
        let _ = self.cursor.set(key);
        self.persisted.store(stored, Ordering::Release);
    }

    /// The start is `key`'s stored cursor, still to be read.
    pub fn start_from_stored_cursor(&self, key: CursorKey) {
        self.track_cursor(key, -1);
        self.from_stored.store(true, Ordering::Release);
    }

    /// The cursor whose stored value is this member's start, if it is still
    /// to be read.
    pub fn pending_cursor(&self) -> Option<&CursorKey> {
        self.from_stored
            .load(Ordering::Acquire)
            .then(|| self.cursor.get())
            .flatten()
    }

    /// The cursor to store if it moved past what is stored:
    /// `(key, room, offset)`.
    pub fn cursor_to_save(&self) -> Option<(CursorKey, String, i64)> {
        let key = self.cursor.get()?;
        let safe = self.unsaved()?;
        Some((key.clone(), self.room.clone(), safe))
    }

    /// [`Self::safe`], if the stored cursor is known to be behind it (or
    /// not known at all). Stored cursors never move back, so writing a
    /// position at or behind the stored one would change nothing.
    pub fn unsaved(&self) -> Option<i64> {
        let safe = self.safe();
        (safe >= 0 && safe > self.persisted.load(Ordering::Acquire)).then_some(safe)
    }

    /// Records that `offset` is stored.
    pub fn cursor_saved(&self, offset: i64) {
        self.persisted.fetch_max(offset, Ordering::AcqRel);
    }

    /// The offset the client has surely processed: its last acknowledgement
    /// if it sends them, else the last offset sent at least `window` before
    /// now (or before its buffer first filled). Never ahead of the truth as
    /// long as the connection is open now.
    pub fn safe(&self) -> i64 {
        self.acked().unwrap_or_else(|| self.confirmed())
    }

    /// Sets the start of a member that had none (`last < 0`).
    pub fn resolve_head(&self, head: i64) {
        let mut t = self.track();
        if t.last < 0 {
            t.last = head;
            t.initial = head;
        }
        self.from_stored.store(false, Ordering::Release);
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

    /// The last offset sent at least `window` before now, or before the
    /// socket's buffer first filled if it did.
    pub fn confirmed(&self) -> i64 {
        let t = self.track();
        let since = t.stalled_since.unwrap_or_else(Instant::now);
        let Some(deadline) = since.checked_sub(self.window) else {
            return t.initial;
        };
        t.samples
            .iter()
            .rev()
            .find(|s| s.at <= deadline)
            .map_or(t.initial, |s| s.last)
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
    pub(super) fn send_next(&self, t: &mut Track, ev: &LogEvent) -> Result<bool, SendFail> {
        let sent = if !ev.for_role(receiving_role(&self.room, self.role))
            || ev.exclude == Some(self.session)
        {
            false
        } else {
            self.sink.emit(&ev.event_type, &ev.payload, ev.meta())?;
            true
        };
        t.last = ev.offset;
        let now = Instant::now();
        match t.samples.back_mut() {
            Some(s) if now.duration_since(s.start) < Duration::from_millis(500) => {
                s.at = now;
                s.last = ev.offset;
            }
            _ => t.samples.push_back(Sample {
                start: now,
                at: now,
                last: ev.offset,
            }),
        }
        // Only the newest sample older than the window is ever looked up.
        let keep = self.window + Duration::from_secs(5);
        while t.samples.len() > 2 && t.samples[1].at + keep < now {
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

#[cfg(test)]
#[path = "feed_tests.rs"]
pub(super) mod tests;
