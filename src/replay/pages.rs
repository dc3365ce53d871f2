//! Catch-up pages shared by the members that read the same room from the
//! same position at about the same time.
//!
//! After a Wi-Fi blip every tablet of a plant reconnects with the same
//! offset in the company's room, and each read the same page from the
//! database, decoded it and parsed every payload: 5,000 clients owed 100
//! events meant 5,000 identical queries and half a million parsed
//! payloads. Now the first member's read is shared by the members waiting
//! for the same page, and its events (with their meta, built once) are
//! shared too.
//!
//! A member may only use a read that **started after it joined the
//! room's feed** (and after any head it compares the page with): events
//! committed before that moment are then in the page, and events committed
//! later reach it as notifications, which put it back to reading. A read
//! that started earlier could miss an event whose notification the member
//! never got, so such a read is never joined; the member starts its own.
//! A read therefore starts one scheduler turn after it was asked for: the
//! sessions woken together (a group of connects answered by one query)
//! join the room and ask for the same page in that turn.
//!
//! The map holds reads weakly: a page lives as long as a member still
//! reads or sends it, not until the next catch-up on the node prunes it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::LogEvent;

/// A read is joined only this soon after it was asked for: past that, no
/// member that may still use it is waiting (members ask as they join).
const FRESH: Duration = Duration::from_millis(500);
/// At most this many reads are open for joining at once; beyond that a
/// read is not shared.
const MAX_SHARED: usize = 64;

/// A page's events, shared by the members that read it (each event on its
/// own, as a merged replay buffers them one by one).
pub(super) type Page = Arc<[Arc<LogEvent>]>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    company: String,
    room: String,
    after: i64,
}

struct Read {
    /// When it was created: it is joined only while fresh.
    created: Instant,
    /// When its query started (set under the map's lock).
    started: OnceLock<Instant>,
    page: OnceCell<Page>,
}

impl Read {
    /// A member that needs a read started no earlier than `not_before` may
    /// join this one: it has not started yet, or started late enough.
    fn serves(&self, not_before: Instant, now: Instant) -> bool {
        now.duration_since(self.created) < FRESH
            && self.started.get().is_none_or(|s| *s >= not_before)
    }
}

#[derive(Default)]
pub struct Pages {
    reads: Mutex<HashMap<Key, Weak<Read>>>,
}

impl Pages {
    fn reads(&self) -> MutexGuard<'_, HashMap<Key, Weak<Read>>> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The page of `room` after `after`, from a read that started no
    /// earlier than `not_before`: a pending or just-finished one, or
    /// `read`. An error is not shared: a member waiting on a read that
    /// failed runs its own.
    pub async fn page<E, F, Fut>(
        &self,
        company: &str,
        room: &str,
        after: i64,
        not_before: Instant,
        read: F,
    ) -> Result<Page, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<LogEvent>, E>>,
    {
        let load = || async {
            let events = read().await?;
            Ok(events.into_iter().map(Arc::new).collect())
        };
        let Some(shared) = self.join_or_start(company, room, after, not_before) else {
            return load().await;
        };
        shared
            .page
            .get_or_try_init(|| async {
                // The sessions woken with this one (a group of connects
                // answered together) run first and join before it starts.
                tokio::task::yield_now().await;
                {
                    let _reads = self.reads();
                    let _ = shared.started.set(Instant::now());
                }
                load().await
            })
            .await
            .cloned()
    }

    /// A read to join or to run, or `None` when too many are kept.
    fn join_or_start(
        &self,
        company: &str,
        room: &str,
        after: i64,
        not_before: Instant,
    ) -> Option<Arc<Read>> {
        let key = Key {
            company: company.to_string(),
            room: room.to_string(),
            after,
        };
        let now = Instant::now();
        let mut reads = self.reads();
        if let Some(r) = reads
            .get(&key)
            .and_then(Weak::upgrade)
            .filter(|r| r.serves(not_before, now))
        {
            return Some(r);
        }
        // Gone (every member that held it is done) or stale.
        reads.retain(|_, r| {
            r.upgrade()
                .is_some_and(|r| now.duration_since(r.created) < FRESH)
        });
        if reads.len() >= MAX_SHARED {
            return None;
        }
        let r = Arc::new(Read {
            created: now,
            started: OnceLock::new(),
            page: OnceCell::new(),
        });
        reads.insert(key, Arc::downgrade(&r));
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn event(offset: i64) -> LogEvent {
        LogEvent {
            company: "c".into(),
            room: "company".into(),
            offset,
            id: format!("e{offset}"),
            event_type: "order:status_changed".into(),
            payload: serde_json::json!({}),
            priority: "normal".into(),
            source: "test".into(),
            publisher: None,
            created_at: 0,
            receive: 0,
            exclude: None,
            meta_json: Default::default(),
        }
    }

    async fn read_counted(reads: &AtomicUsize, offsets: &[i64]) -> Result<Vec<LogEvent>, ()> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(offsets.iter().copied().map(event).collect())
    }

    #[tokio::test]
    async fn members_that_joined_before_a_read_started_share_it() {
        let pages = Pages::default();
        let reads = AtomicUsize::new(0);
        let joined = Instant::now();
        let (a, b) = tokio::join!(
            pages.page("c", "company", 4, joined, || read_counted(&reads, &[5, 6])),
            // Joined after the first asked, before its read started.
            pages.page("c", "company", 4, Instant::now(), || read_counted(
                &reads,
                &[5, 6]
            )),
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a[0], &b[0]), "the same events, not copies");
    }

    #[tokio::test]
    async fn a_member_never_uses_a_read_that_started_before_it_joined() {
        let pages = Pages::default();
        let reads = AtomicUsize::new(0);
        let early = Instant::now();
        let first = pages
            .page("c", "company", 4, early, || read_counted(&reads, &[5]))
            .await;
        assert_eq!(first.unwrap().len(), 1);
        // Joined after that read started: an event committed in between
        // (offset 6) could be missing from it, so it reads again.
        let late = Instant::now();
        let second = pages
            .page("c", "company", 4, late, || read_counted(&reads, &[5, 6]))
            .await;
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(second.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn other_positions_rooms_and_companies_are_other_reads() {
        let pages = Pages::default();
        let reads = AtomicUsize::new(0);
        let t = Instant::now();
        for (company, room, after) in [
            ("c", "company", 4),
            ("c", "company", 5),
            ("c", "role:admin", 4),
            ("d", "company", 4),
        ] {
            pages
                .page(company, room, after, t, || read_counted(&reads, &[]))
                .await
                .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_page_is_not_kept_once_its_members_are_done_with_it() {
        let pages = Pages::default();
        let reads = AtomicUsize::new(0);
        let t = Instant::now();
        let page = pages
            .page("c", "company", 4, t, || read_counted(&reads, &[5, 6]))
            .await
            .unwrap();
        let event = Arc::downgrade(&page[0]);
        drop(page);
        assert!(
            event.upgrade().is_none(),
            "the page's events are freed with the last member's copy"
        );
        let live = pages
            .reads()
            .values()
            .filter(|r| r.upgrade().is_some())
            .count();
        assert_eq!(live, 0);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_shared() {
        let pages = Pages::default();
        let t = Instant::now();
        let failed: Result<Page, &str> = pages
            .page("c", "company", 4, t, || async { Err("down") })
            .await;
        assert!(failed.is_err());
        let reads = AtomicUsize::new(0);
        let next = pages
            .page("c", "company", 4, t, || read_counted(&reads, &[5]))
            .await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(next.unwrap().len(), 1);
    }

    #[test]
    fn a_read_serves_those_that_joined_before_it_started_while_fresh() {
        let t = Instant::now();
        let read = Read {
            created: t,
            started: OnceLock::new(),
            page: OnceCell::new(),
        };
        let later = t + Duration::from_millis(1);
        assert!(read.serves(later, later), "not started: anyone may join");
        read.started.set(t).unwrap();
        assert!(read.serves(t, later));
        assert!(
            !read.serves(later, later),
            "started before this member joined"
        );
        assert!(!read.serves(t, t + FRESH), "stale");
    }
}
