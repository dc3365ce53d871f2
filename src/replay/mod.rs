//! Log and replay (SPEC §5): live delivery of durable events with a position
//! per socket and room ([`feed`]), catch-up from the database, the offline
//! queue's cursors, and retention.
//!
//! Guarantees, precisely:
//! - **Exactly once, in order, with offsets.** A client that sends
//!   `auth.offsets` or `subscribe { offsets }` gets every retained event
//!   after those offsets, in offset order, then the live ones, with no gap
//!   and no duplicate, even while events are being published (see
//!   [`feed`] for the hand-over). A client that tracks `meta.offset` and
//!   resumes with it therefore sees each durable event exactly once.
//! - **At least once for unchanged clients (the offline queue)**, however
//!   the connection ends. The server remembers per user and device a cursor
//!   in each automatic room that never runs ahead of what the client
//!   processed: the last offset sent at least a heartbeat proof window
//!   before the socket left (`crate::socket::proof::proof_window`), stored
//!   first before `session` and then every few seconds while connected
//!   ([`cursors`]), so a node crash costs duplicates, not losses.
//!   `events:ack` makes the cursor follow the client's acknowledgements.
//! - **At most once for ephemeral types**: never stored, never replayed.
//! - Retention: events older than `WS_MESSAGE_QUEUE_TTL` (critical: 7 days)
//!   are not replayed and are pruned; a resume from before the oldest
//!   retained event gets `replay:truncated { room, oldestOffset }` first.

pub mod cursors;
pub mod feed;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;

use crate::catalog::{Catalog, RoleSet};
use crate::cluster::DurableBus;
use crate::domain::now_ms;
use crate::store::{Store, StoredEvent};
pub use feed::{Feeds, LogEvent, Member, Notified, SendFail, Sink};

/// Events read per database round trip during a catch-up: bounded memory
/// whatever the backlog.
const PAGE: i64 = 500;
/// A socket that accepts nothing for this long during a catch-up is a slow
/// consumer: it is cut off (and catches up when it reconnects).
const STALL_LIMIT: Duration = Duration::from_secs(10);

pub struct DurableHub {
    pub feeds: Feeds,
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    bus: OnceLock<DurableBus>,
}

impl DurableHub {
    pub fn new(store: Arc<dyn Store>, catalog: Arc<Catalog>) -> Arc<Self> {
        Arc::new(Self {
            feeds: Feeds::default(),
            store,
            catalog,
            bus: OnceLock::new(),
        })
    }

    pub fn set_bus(&self, bus: DurableBus) {
        let _ = self.bus.set(bus);
    }

    fn receive_of(&self, event_type: &str) -> RoleSet {
        self.catalog.receive_roles(event_type)
    }

    pub fn log_event(&self, company: &str, e: StoredEvent, exclude: Option<String>) -> LogEvent {
        LogEvent {
            company: company.to_string(),
            receive: self.receive_of(&e.event_type).bits(),
            room: e.room,
            offset: e.offset,
            id: e.id,
            event_type: e.event_type,
            payload: e.payload,
            priority: e.priority,
            source: e.source,
            publisher: e.publisher,
            created_at: e.created_at,
            exclude,
        }
    }

    /// Delivers committed events on this node and queues their announcement
    /// to the other nodes (never waiting for Redis: see [`DurableBus`]).
    pub fn publish(self: &Arc<Self>, events: Vec<LogEvent>) {
        for ev in &events {
            self.notify_local(ev);
        }
        if let Some(bus) = self.bus.get() {
            bus.announce(events);
        }
    }

    pub fn notify_local(self: &Arc<Self>, ev: &LogEvent) {
        if let Notified::CatchUp(members) = self.feeds.notify(ev) {
            for member in members {
                self.spawn_catch_up(member);
            }
        }
    }

    pub fn spawn_catch_up(self: &Arc<Self>, member: Arc<Member>) {
        let this = self.clone();
        tokio::spawn(async move {
            this.catch_up(&member, true).await;
        });
    }

    /// After the bus was down, members may have missed notifications.
    pub fn sweep(self: &Arc<Self>) {
        for member in self.feeds.all_members() {
            if member.begin_catch_up() {
                self.spawn_catch_up(member);
            }
        }
    }

    fn attached(&self, member: &Member) -> bool {
        self.feeds
            .member(&member.company, &member.room, &member.sink.id())
            .is_some_and(|m| std::ptr::eq(Arc::as_ptr(&m), member))
    }

    /// Sends the member everything after its position, page by page, then
    /// (with `finalize`) goes live. Returns how many events were sent.
    /// Database errors are retried while the member is attached: an outage
    /// delays delivery but never skips it.
    pub async fn catch_up(&self, member: &Arc<Member>, finalize: bool) -> usize {
        let mut sent = 0;
        let mut first = true;
        loop {
            let page = match self.fetch(member, &mut first).await {
                Ok(page) => page,
                Err(Stop::Gone) => return sent,
                Err(Stop::Retry) if self.attached(member) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(Stop::Retry) => return sent,
            };
            if page.is_empty() {
                if !finalize || member.finish_catch_up() {
                    return sent;
                }
                continue;
            }
            for ev in &page {
                match self.deliver_with_backpressure(member, ev).await {
                    Ok(true) => sent += 1,
                    Ok(false) => {}
                    Err(_) => return sent,
                }
            }
        }
    }

    /// The offline queue on connect: several rooms replayed as one timeline
    /// (merged by publish time), each room still in offset order. Members
    /// stay in catch-up mode; finalize them with [`Self::catch_up`].
    pub async fn replay_merged(&self, members: &[Arc<Member>]) -> usize {
        struct Cursor {
            buf: std::collections::VecDeque<LogEvent>,
            first: bool,
            done: bool,
        }
        let mut cursors: Vec<Cursor> = members
            .iter()
            .map(|_| Cursor {
                buf: Default::default(),
                first: true,
                done: false,
            })
            .collect();
        let mut sent = 0;
        loop {
            for (member, c) in members.iter().zip(cursors.iter_mut()) {
                while c.buf.is_empty() && !c.done {
                    match self.fetch(member, &mut c.first).await {
                        Ok(page) if page.is_empty() => c.done = true,
                        Ok(page) => c.buf.extend(page),
                        // Database down: `session` is not held back (ephemeral
                        // traffic goes on); the member stays in catch-up and
                        // the background catch-up retries until it is back.
                        Err(_) => c.done = true,
                    }
                }
            }
            let next = cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.buf.front().map(|e| (i, (e.created_at, e.id.clone()))))
                .min_by(|a, b| a.1.cmp(&b.1))
                .map(|(i, _)| i);
            let Some(i) = next else { return sent };
            let Some(ev) = cursors[i].buf.pop_front() else {
                return sent;
            };
            match self.deliver_with_backpressure(&members[i], &ev).await {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(_) => {
                    cursors[i].buf.clear();
                    cursors[i].done = true;
                }
            }
        }
    }

    /// The next page after the member's position (resolving "the head" and
    /// announcing truncation on the first call).
    async fn fetch(&self, member: &Arc<Member>, first: &mut bool) -> Result<Vec<LogEvent>, Stop> {
        let store_err = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, room = %member.room, "replay read failed; retrying");
            Stop::Retry
        };
        if member.last() < 0 {
            match self.start_of(member).await.map_err(store_err)? {
                Start::Cursor(offset) => member.resolve_head(offset),
                Start::Head(head) => {
                    member.resolve_head(head);
                    // Starting at the head: nothing can be truncated, and
                    // anything committed after that read is announced live
                    // (and re-read by the finalizing pass): nothing to page.
                    *first = false;
                    return Ok(Vec::new());
                }
            }
        }
        let after = member.last();
        // The head is read before the page: if the page then comes back
        // empty while the head was already past `after`, those events were
        // committed before the read and are gone (expired), not merely in
        // flight. (Reading the head afterwards would mistake an event
        // committed in between for an expired one and skip it.)
        let head_before = if *first {
            Some(
                self.store
                    .head_offset(&member.company, &member.room)
                    .await
                    .map_err(store_err)?,
            )
        } else {
            None
        };
        if head_before == Some(after) {
            // Up to date: the page query would come back empty.
            *first = false;
            return Ok(Vec::new());
        }
        let page = self
            .store
            .events_after(&member.company, &member.room, after, PAGE, now_ms())
            .await
            .map_err(store_err)?;
        if let Some(head) = head_before {
            *first = false;
            // Offsets commit in order, so a page that starts past `after + 1`
            // means the events in between expired.
            let oldest = match page.first() {
                Some(e) if e.offset > after + 1 => Some(e.offset),
                Some(_) => None,
                None => (head > after).then_some(head + 1),
            };
            if let Some(oldest) = oldest {
                let notice = json!({ "room": member.room, "oldestOffset": oldest });
                if member.sink.emit_one("replay:truncated", &notice).is_err() {
                    return Err(Stop::Gone);
                }
                member.skip_to(oldest - 1);
            }
        }
        Ok(page
            .into_iter()
            .map(|stored| self.log_event(&member.company, stored, None))
            .collect())
    }

    /// Where a member without a position starts: its stored cursor if that
    /// could not be read at connect (stored now if there was none: a first
    /// cursor is on record before anything is sent), else the head.
    async fn start_of(&self, member: &Member) -> Result<Start, crate::store::StoreError> {
        let Some(key) = member.pending_cursor() else {
            let head = self
                .store
                .head_offset(&member.company, &member.room)
                .await?;
            return Ok(Start::Head(head));
        };
        if let Some(offset) = self.store.load_cursors(key).await?.get(&member.room) {
            member.cursor_saved(*offset);
            return Ok(Start::Cursor(*offset));
        }
        let start = if member.room.starts_with("user:") {
            0
        } else {
            self.store
                .head_offset(&member.company, &member.room)
                .await?
        };
        self.store
            .save_cursors(key, &[(member.room.clone(), start)], now_ms())
            .await?;
        member.cursor_saved(start);
        Ok(if start == 0 {
            Start::Cursor(0)
        } else {
            Start::Head(start)
        })
    }

    /// Replay waits for room in the socket's buffer instead of overflowing it.
    async fn deliver_with_backpressure(
        &self,
        member: &Member,
        ev: &LogEvent,
    ) -> Result<bool, Stop> {
        crate::metrics::replay_lag(ev.created_at);
        let start = tokio::time::Instant::now();
        loop {
            match member.deliver_caught_up(ev) {
                Ok(sent) => return Ok(sent),
                Err(SendFail::Closed) => return Err(Stop::Gone),
                Err(SendFail::Full) if start.elapsed() > STALL_LIMIT || !self.attached(member) => {
                    member.sink.overflowed();
                    return Err(Stop::Gone);
                }
                Err(SendFail::Full) => {
                    member.stalled();
                    tokio::time::sleep(Duration::from_millis(2)).await
                }
            }
        }
    }
}

enum Stop {
    Gone,
    Retry,
}

enum Start {
    /// From a stored position: page from there.
    Cursor(i64),
    /// From the head: nothing to page.
    Head(i64),
}

/// Deletes expired events every minute.
pub async fn prune_forever(store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        match store.prune(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned expired events"),
            Err(e) => tracing::warn!(error = %e, "pruning failed; will retry"),
        }
    }
}
