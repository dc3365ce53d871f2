//! Catch-up: sending a member what it missed from the database, page by
//! page, then handing it over to live delivery (the hand-over rule is in
//! [`super::feed`]); the offline queue's merged replay on connect; and
//! back-pressure, so a catch-up never overflows a connection's buffer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::pages::Page;
use super::{DurableHub, LogEvent, Member};
use crate::domain::now_ms;
use crate::session::SendFail;

/// Events read per database round trip during a catch-up: bounded memory
/// whatever the backlog.
const PAGE: i64 = 500;
/// A session that accepts nothing for this long during a catch-up is a
/// slow consumer: it is cut off (and catches up when it reconnects).
const STALL_LIMIT: Duration = Duration::from_secs(10);

impl DurableHub {
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
            for ev in page.iter() {
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
    /// stay in catch-up mode; [`super::offline::go_live`] finalizes them.
    pub async fn replay_merged(&self, members: &[Arc<Member>]) -> Merged {
        struct Cursor {
            buf: std::collections::VecDeque<Arc<LogEvent>>,
            first: bool,
            done: bool,
            /// Stopped short of the log's end (a read or a send failed).
            failed: bool,
        }
        let mut cursors: Vec<Cursor> = members
            .iter()
            .map(|_| Cursor {
                buf: Default::default(),
                first: true,
                done: false,
                failed: false,
            })
            .collect();
        let mut sent = 0;
        loop {
            for (member, c) in members.iter().zip(cursors.iter_mut()) {
                while c.buf.is_empty() && !c.done {
                    match self.fetch(member, &mut c.first).await {
                        Ok(page) if page.is_empty() => c.done = true,
                        Ok(page) => c.buf.extend(page.iter().cloned()),
                        // Database down: `session` is not held back (ephemeral
                        // traffic goes on); the member stays in catch-up and
                        // the background catch-up retries until it is back.
                        Err(_) => {
                            c.done = true;
                            c.failed = true;
                        }
                    }
                }
            }
            let next = cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.buf.front().map(|e| (i, (e.created_at, e.id.clone()))))
                .min_by(|a, b| a.1.cmp(&b.1))
                .map(|(i, _)| i);
            let Some(i) = next else {
                return Merged {
                    sent,
                    read_through: cursors.iter().map(|c| !c.failed).collect(),
                };
            };
            let Some(ev) = cursors[i].buf.pop_front() else {
                continue;
            };
            match self.deliver_with_backpressure(&members[i], &ev).await {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(_) => {
                    cursors[i].buf.clear();
                    cursors[i].done = true;
                    cursors[i].failed = true;
                }
            }
        }
    }

    /// The next page after the member's position (resolving "the head" and
    /// announcing truncation on the first call).
    async fn fetch(&self, member: &Arc<Member>, first: &mut bool) -> Result<Page, Stop> {
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
                    return Ok(Page::default());
                }
            }
        }
        let after = member.last();
        // The head is read before the page: if the page then comes back
        // empty while the head was already past `after`, those events were
        // committed before the read and are gone (expired), not merely in
        // flight. (Reading the head afterwards would mistake an event
        // committed in between for an expired one and skip it.)
        // A head read at connect (with the cursors, in one query) was read
        // before this page too.
        // A shared read must have started after what this page has to
        // include: for the first page, the member joining its feed (events
        // committed later are notified to it) and the head it is compared
        // with; for a later page, this call (it may follow a notification
        // that interrupted going live, whose event must be in it).
        let mut reads_from = if *first {
            member.reads_from()
        } else {
            std::time::Instant::now()
        };
        let head_before = if *first {
            Some(match member.take_head_hint() {
                Some(head) => head,
                None => {
                    let head = self
                        .store
                        .head_offset(&member.company, &member.room)
                        .await
                        .map_err(store_err)?;
                    // A read started before this one ended may hold an
                    // older snapshot than the head's.
                    reads_from = std::time::Instant::now();
                    head
                }
            })
        } else {
            None
        };
        if head_before == Some(after) {
            // Up to date: the page query would come back empty.
            *first = false;
            return Ok(Page::default());
        }
        let (company, room) = (&member.company, &member.room);
        let page = self
            .pages
            .page(company, room, after, reads_from, || async {
                let stored = self
                    .store
                    .events_after(company, room, after, PAGE, now_ms())
                    .await?;
                Ok(stored
                    .into_iter()
                    .map(|e| self.log_event(company, e, None))
                    .collect())
            })
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
        Ok(page)
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
        self.save_cursors(key, &[(member.room.clone(), start)])
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
        crate::metrics::replay_lag(crate::domain::now_ms() - ev.created_at);
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

/// What [`DurableHub::replay_merged`] did.
pub struct Merged {
    /// Events sent.
    pub sent: usize,
    /// Per member (same order): read up to an empty page with every event
    /// sent, so going live needs no further read unless notifications
    /// arrived since.
    pub read_through: Vec<bool>,
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

#[cfg(test)]
#[path = "catch_up_tests.rs"]
mod tests;
