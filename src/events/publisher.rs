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
use crate::store::batch::Appender;
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
    /// ones skip the log). Returns, per event, its append result (`None` if
    /// ephemeral or suppressed).
    pub async fn persist(&self, batch: &[Prepared]) -> AppResult<Vec<Option<Appended>>> {
        self.persist_queued(batch).await?.await
    }

    /// [`Self::persist`] in two steps: queues the batch's durable events in
    /// the group-commit writer, behind everything queued before, and
    /// returns the wait for the results (see `crate::session::pipeline`).
    pub async fn persist_queued(
        &self,
        batch: &[Prepared],
    ) -> AppResult<impl Future<Output = AppResult<Vec<Option<Appended>>>> + Send + 'static> {
        let ttl = self.settings.queue_ttl_ms;
        let stored: Vec<bool> = batch.iter().map(|p| p.durable && !p.suppressed).collect();
        let durable: Vec<NewEvent> = batch
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| **stored)
            .map(|(p, _)| {
                let mut event = p.new_event(ttl);
                event.webhooks = self.webhooks.entries_for(&p.webhook_event());
                event
            })
            .collect();
        let hooked = durable.iter().any(|e| !e.webhooks.is_empty());
        let pending = if durable.is_empty() {
            None
        } else {
            Some(
                self.appender
                    .submit(durable)
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

    /// Sends a published event on its way: durable events through the durable
    /// feeds (exact per-socket positions), ephemeral ones as room broadcasts,
    /// conflated when their type says so. `exclude` is the publishing socket.
    pub async fn dispatch(
        &self,
        prepared: &Prepared,
        appended: Option<&Appended>,
        exclude: Option<SessionId>,
    ) {
        if prepared.suppressed {
            return;
        }
        match appended {
            Some(a) if a.duplicate => {}
            Some(a) => {
                let events = a
                    .offsets
                    .iter()
                    .map(|(room, offset)| LogEvent {
                        company: prepared.company.clone(),
                        room: room.clone(),
                        offset: *offset,
                        id: a.id.clone(),
                        event_type: prepared.event_type.clone(),
                        payload: prepared.payload.clone(),
                        priority: prepared.priority.as_str().to_string(),
                        source: prepared.source.clone(),
                        publisher: prepared.publisher.clone(),
                        created_at: prepared.created_at,
                        receive: prepared.receive.bits(),
                        exclude,
                    })
                    .collect();
                self.durable.publish(events);
            }
            None => {
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
    }
}
