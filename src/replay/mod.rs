//! Log and replay (SPEC §5): live delivery of durable events with a position
//! per session and room ([`feed`]), catch-up from the database
//! ([`catch_up`]), the offline queue ([`offline`]) and its cursors
//! ([`cursors`]), the Redis bus that tells other nodes about new events
//! ([`bus`]), and retention.
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
//!   before the session left ([`crate::session::Sink::proof_window`]),
//!   stored first before `session` and then every few seconds while
//!   connected ([`cursors`]), so a node crash costs duplicates, not losses.
//!   `events:ack` makes the cursor follow the client's acknowledgements.
//! - **At most once for ephemeral types**: never stored, never replayed.
//! - Retention: events older than `WS_MESSAGE_QUEUE_TTL` (critical: 7 days)
//!   are not replayed and are pruned; a resume from before the oldest
//!   retained event gets `replay:truncated { room, oldestOffset }` first.

pub mod bus;
mod catch_up;
pub mod cursors;
pub mod feed;
mod feeds;
pub mod offline;
mod pages;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::catalog::{Catalog, RoleSet};
use crate::domain::now_ms;
use crate::store::cursor_batch::CursorWriter;
use crate::store::{CursorKey, Store, StoreError, StoredEvent};
use crate::tasks::Tasks;
pub use bus::DurableBus;
pub use catch_up::Merged;
pub use feed::{LogEvent, Member};
pub use feeds::{Feeds, Notified};

/// The durable side of delivery on this node: the feeds, the catch-ups
/// that feed them from the database, and the bus to the other nodes.
pub struct DurableHub {
    pub feeds: Feeds,
    /// Catch-up reads shared by members at the same position.
    pages: pages::Pages,
    store: Arc<dyn Store>,
    cursors: CursorWriter,
    catalog: Arc<Catalog>,
    bus: OnceLock<DurableBus>,
    tasks: Tasks,
}

impl DurableHub {
    pub fn new(store: Arc<dyn Store>, catalog: Arc<Catalog>, tasks: Tasks) -> Arc<Self> {
        Arc::new(Self {
            feeds: Feeds::default(),
            pages: pages::Pages::default(),
            cursors: CursorWriter::new(store.clone(), &tasks),
            store,
            catalog,
            bus: OnceLock::new(),
            tasks,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores offline-queue cursors (never moving one back), in one
    /// statement with the other saves waiting on this node
    /// ([`CursorWriter`]).
    pub async fn save_cursors(
        &self,
        key: &CursorKey,
        cursors: &[(String, i64)],
    ) -> Result<(), StoreError> {
        self.cursors.save(key, cursors, now_ms()).await
    }

    pub fn set_bus(&self, bus: DurableBus) {
        let _ = self.bus.set(bus);
    }

    fn receive_of(&self, event_type: &str) -> RoleSet {
        self.catalog.receive_roles(event_type)
    }

    pub fn log_event(
        &self,
        company: &str,
        e: StoredEvent,
        exclude: Option<crate::domain::SessionId>,
    ) -> LogEvent {
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
            meta_json: Default::default(),
        }
    }

    /// Delivers committed events on this node and queues their announcement
    /// to the other nodes (never waiting for Redis: see [`DurableBus`]).
    pub fn publish(self: &Arc<Self>, events: Vec<LogEvent>) {
        if events.is_empty() {
            return;
        }
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
        crate::metrics::catch_up_started();
        let this = self.clone();
        self.tasks.spawn(async move {
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
            .member(&member.company, &member.room, member.session)
            .is_some_and(|m| std::ptr::eq(Arc::as_ptr(&m), member))
    }
}

/// Deletes expired events every minute (until shutdown).
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
