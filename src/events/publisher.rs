//! The publishing service: what every publish path shares once a request
//! is parsed and prepared. It owns the group-commit writer (`appender`),
//! the durable hub, the fan-out and the conflator; it hands matching events
//! to the webhooks (in the append transaction when durable).

use std::sync::{Arc, OnceLock};

use super::Prepared;
use super::conflate::Conflator;
use crate::catalog::{Catalog, EventSpec};
use crate::domain::SessionId;
use crate::error::{AppError, AppResult};
use crate::fanout::{Fanout, Hub};
use crate::replay::{DurableHub, LogEvent};
use crate::store::batch::{Appender, OnCommit};
use crate::store::{Appended, NewEvent};
use crate::webhooks::Webhooks;

/// What publishing needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `WS_MAX_PAYLOAD`, bytes.
    pub max_payload: usize,
    /// `WS_MESSAGE_QUEUE_TTL`, ms.
    pub queue_ttl_ms: i64,
}

/// Sees each event a client or backend publishes, after the whole batch
/// was validated and before anything is stored (telemetry rules,
/// `crate::rules`). Must not wait: it runs on the publisher's path.
pub trait Observer: Send + Sync + 'static {
    /// `false` suppresses the event (a deadband): it is neither stored nor
    /// delivered.
    fn observe(&self, event: &Prepared) -> bool;
}

pub struct Publisher {
    catalog: Arc<Catalog>,
    appender: Appender,
    durable: Arc<DurableHub>,
    fanout: Arc<Fanout>,
    conflator: Arc<Conflator>,
    webhooks: Arc<Webhooks>,
    settings: Settings,
    observer: OnceLock<Arc<dyn Observer>>,
}

impl Publisher {
    pub fn new(
        catalog: Arc<Catalog>,
        appender: Appender,
        durable: Arc<DurableHub>,
        fanout: Arc<Fanout>,
        conflator: Arc<Conflator>,
        webhooks: Arc<Webhooks>,
        settings: Settings,
    ) -> Self {
        Self {
            catalog,
            appender,
            durable,
            fanout,
            conflator,
            webhooks,
            settings,
            observer: OnceLock::new(),
        }
    }

    /// Installs the observer (once; built after the publisher, which it uses).
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        if self.observer.set(observer).is_err() {
            tracing::warn!("a publish observer was already installed");
        }
    }

    /// Shows a validated batch to the observer, marking what it suppresses.
    /// Events the server makes itself (alarms, command status) skip this.
    pub fn observe(&self, batch: &mut [Prepared]) {
        if let Some(o) = self.observer.get() {
            for p in batch {
                p.suppressed = !o.observe(p);
            }
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The catalog entry of `event_type` (UNKNOWN_EVENT, or a refused name).
    pub fn spec(&self, event_type: &str) -> AppResult<&EventSpec> {
        self.catalog.event(event_type)
    }

    /// The entry of a type a client publishes (sockets, HTTP API):
    /// FORBIDDEN for a `serverOnly` type, which only the server's own
    /// paths (command announcements, rules) publish through [`Self::spec`].
    pub fn client_spec(&self, event_type: &str) -> AppResult<&EventSpec> {
        self.catalog.client_event(event_type)
    }

    /// [`super::prepare`] with this server's payload limit.
    pub fn prepare(&self, spec: &EventSpec, draft: super::Draft<'_>) -> AppResult<Prepared> {
        super::prepare(spec, draft, self.settings.max_payload)
    }

    /// Appends the durable events of a batch in one transaction (ephemeral
    /// ones skip the log) and hands them to the durable feeds once
    /// committed (not a duplicate of an earlier append), except to the
    /// session `exclude`. Returns, per event, its append result (`None` if
    /// ephemeral or suppressed).
    pub async fn persist(
        &self,
        batch: &[Prepared],
        exclude: Option<SessionId>,
    ) -> AppResult<Vec<Option<Appended>>> {
        self.persist_queued(batch, exclude).await?.await
    }

    /// [`Self::persist`] in two steps: queues the batch's durable events in
    /// the group-commit writer, behind everything queued before, and
    /// returns the wait for the results (see `crate::session::pipeline`).
    /// Their delivery runs in the writer's commit order (see
    /// `crate::store::batch`), so each room's feed gets its offsets in order.
    pub async fn persist_queued(
        &self,
        batch: &[Prepared],
        exclude: Option<SessionId>,
    ) -> AppResult<impl Future<Output = AppResult<Vec<Option<Appended>>>> + Send + 'static> {
        let ttl = self.settings.queue_ttl_ms;
        let stored: Vec<bool> = batch.iter().map(|p| p.durable && !p.suppressed).collect();
        let kept = || {
            batch
                .iter()
                .zip(&stored)
                .filter(|(_, s)| **s)
                .map(|(p, _)| p)
        };
        let durable: Vec<NewEvent> = kept()
            .map(|p| {
                let mut event = p.new_event(ttl);
                event.webhooks = self.webhooks.entries_for(&p.webhook_event());
                event
            })
            .collect();
        let hooked = durable.iter().any(|e| !e.webhooks.is_empty());
        let pending = if durable.is_empty() {
            None
        } else {
            let unplaced: Vec<LogEvent> = kept().map(|p| unplaced(p, exclude)).collect();
            let hub = self.durable.clone();
            let on_commit: OnCommit = Box::new(move |appended: &[Appended]| {
                let events: Vec<LogEvent> = unplaced
                    .into_iter()
                    .zip(appended)
                    .filter(|(_, a)| !a.duplicate)
                    .flat_map(|(event, a)| placed(event, a))
                    .collect();
                hub.publish(events);
            });
            Some(
                self.appender
                    .submit(durable, Some(on_commit))
                    .await
                    .map_err(AppError::unavailable)?,
            )
        };
        let webhooks = self.webhooks.clone();
        Ok(async move {
            let mut appended = match pending {
                None => Vec::new().into_iter(),
                Some(pending) => pending.await.map_err(AppError::unavailable)?.into_iter(),
            };
            if hooked {
                webhooks.kick();
            }
            Ok(stored
                .into_iter()
                .map(|stored| if stored { appended.next() } else { None })
                .collect())
        })
    }

    /// Hands an appended durable event to the durable feeds again (a
    /// recovery whose append turned out to be a duplicate: the node that
    /// appended it may have died before delivering it). Members already
    /// past its offsets ignore it.
    pub fn announce(&self, prepared: &Prepared, appended: &Appended) {
        self.durable
            .publish(placed(unplaced(prepared, None), appended));
    }

    /// Sends an event that skipped the log on its way: a room broadcast,
    /// conflated when its type says so. `exclude` is the publishing
    /// socket. Durable events are delivered by [`Self::persist`] when they
    /// commit, so this leaves them alone.
    pub async fn dispatch(&self, prepared: &Prepared, exclude: Option<SessionId>) {
        if prepared.suppressed || prepared.durable {
            return;
        }
        self.webhooks.offer(&prepared.webhook_event());
        for mut d in prepared.deliveries(None) {
            d.exclude = exclude;
            match &prepared.conflate {
                Some((key, window)) => self.conflator.offer(key.clone(), *window, d),
                None => self.fanout.deliver(&d).await,
            }
        }
    }
}

/// A durable event as the feeds take it, before its append placed it.
fn unplaced(prepared: &Prepared, exclude: Option<SessionId>) -> LogEvent {
    LogEvent {
        company: prepared.company.clone(),
        room: String::new(),
        offset: 0,
        id: prepared.id.clone(),
        event_type: prepared.event_type.clone(),
        payload: prepared.payload.clone(),
        priority: prepared.priority.as_str().to_string(),
        source: prepared.source.clone(),
        publisher: prepared.publisher.clone(),
        created_at: prepared.created_at,
        receive: prepared.receive.bits(),
        exclude,
        meta_json: Default::default(),
    }
}

/// The event once per room its append placed it in, at its offset there
/// (the last room takes `event` itself: one payload copy fewer per event).
fn placed(event: LogEvent, appended: &Appended) -> Vec<LogEvent> {
    let mut out = Vec::with_capacity(appended.offsets.len());
    let Some(((last_room, last_offset), others)) = appended.offsets.split_last() else {
        return out;
    };
    for (room, offset) in others {
        out.push(LogEvent {
            room: room.clone(),
            offset: *offset,
            id: appended.id.clone(),
            // Never the unplaced event's meta: room and offset changed.
            meta_json: Default::default(),
            ..event.clone()
        });
    }
    out.push(LogEvent {
        room: last_room.clone(),
        offset: *last_offset,
        id: appended.id.clone(),
        meta_json: Default::default(),
        ..event
    });
    out
}
