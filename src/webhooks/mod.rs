//! Webhooks (issue 15 item 3): per-company endpoints an operator registers
//! through the admin API (`crate::http::webhooks`), a durable outbox in the
//! database, and a delivery loop on every node.
//!
//! - Enqueue: a durable event's deliveries are written in its own append
//!   transaction ([`Webhooks::entries_for`] fills `NewEvent::webhooks`), so
//!   an event that is in the log is in the outbox; ephemeral and lifecycle
//!   events are written just after publishing by a background writer
//!   ([`Webhooks::offer`]: a bounded queue, never waited on). Matching uses
//!   a per-node cache of the endpoints, reloaded every `WEBHOOK_REFRESH_MS`
//!   and at once after a change through this node.
//! - Deliver ([`deliver`]): claim due rows with a lease, POST each with its
//!   signature ([`sign`]), record the outcome; failures retry on the
//!   [`schedule`], then the row is dead (admin API and `/metrics`).
//! - Targets ([`target`]): only registered URLs, validated; private
//!   addresses refused unless `WEBHOOK_ALLOW_PRIVATE`.
//! - Matching and the envelope: [`filter`].

pub mod deliver;
pub mod filter;
pub mod schedule;
pub mod sign;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use crate::catalog::Priority;
use crate::config::WebhookSettings;
use crate::domain::now_ms;
use crate::store::webhooks::{DeadLetter, DeliveryStats, Endpoint, NewDelivery};
use crate::store::{OutboxEntry, Store, StoreError};
use crate::tasks::Tasks;
pub use filter::{Event, Kind, Subscription};

/// Deliveries of ephemeral and lifecycle events waiting to be written; when
/// full, new ones are dropped and counted (publishing never waits).
const QUEUE: usize = 10_000;

/// Endpoints per company, as the matcher needs them.
type Subscriptions = HashMap<String, Vec<Subscription>>;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Target(#[from] target::TargetError),
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an operator asks to register.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub company_id: String,
    pub url: String,
    /// `None` = generate one (returned once, at creation).
    pub secret: Option<String>,
    pub types: Vec<String>,
    pub min_priority: Option<Priority>,
    pub description: Option<String>,
}

pub struct Webhooks {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    node_id: String,
    subscriptions: RwLock<Arc<Subscriptions>>,
    queue: mpsc::Sender<NewDelivery>,
    /// Wakes the delivery loop when this node enqueued something.
    wake: Notify,
}

impl Webhooks {
    /// Loads the endpoints, then starts the writer, the delivery loop and
    /// the cache refresh under `tasks`.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: WebhookSettings,
        node_id: String,
        tasks: &Tasks,
    ) -> Result<Arc<Self>, WebhookError> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let hooks = Arc::new(Self {
            store,
            settings,
            node_id,
            subscriptions: RwLock::new(Arc::default()),
            queue,
            wake: Notify::new(),
        });
        hooks.reload().await?;
        deliver::sample_now(&hooks).await;
        tasks.spawn(deliver::write_queue(hooks.clone(), rx));
        tasks.spawn(deliver::run(
            hooks.clone(),
            deliver::client(&hooks.settings),
        ));
        tasks.spawn(refresh(hooks.clone()));
        Ok(hooks)
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// Re-reads every endpoint into the matcher's cache.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let mut map: Subscriptions = HashMap::new();
        for e in self.store.webhooks(None).await? {
            map.entry(e.company_id.clone())
                .or_default()
                .push(Subscription {
                    endpoint_id: e.id,
                    types: e.types,
                    min_priority: e.min_priority.as_deref().and_then(Priority::parse),
                });
        }
        *self
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
        Ok(())
    }

    fn matching(&self, event: &Event<'_>) -> Vec<String> {
        let subs = self
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        subs.get(event.company)
            .map(|list| {
                list.iter()
                    .filter(|s| s.matches(event.event_type, event.kind()))
                    .map(|s| s.endpoint_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The outbox rows of a durable event, to write in its append
    /// transaction (empty, without building a body, when nothing matches).
    pub fn entries_for(&self, event: &Event<'_>) -> Vec<OutboxEntry> {
        let ids = self.matching(event);
        if ids.is_empty() {
            return Vec::new();
        }
        let body = event.body();
        ids.into_iter()
            .map(|endpoint_id| OutboxEntry {
                endpoint_id,
                body: body.clone(),
            })
            .collect()
    }

    /// Wakes the delivery loop (after an append that wrote outbox rows).
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Queues the deliveries of an event that is not appended to the log
    /// (ephemeral, presence or command lifecycle); returns at once.
    pub fn offer(&self, event: &Event<'_>) {
        let ids = self.matching(event);
        if ids.is_empty() {
            return;
        }
        let body = event.body();
        for endpoint_id in ids {
            let row = NewDelivery {
                endpoint_id,
                company_id: event.company.to_string(),
                event_id: event.id.to_string(),
                event_type: event.event_type.to_string(),
                body: body.clone(),
            };
            if self.queue.try_send(row).is_err() {
                crate::metrics::webhook_dropped();
            }
        }
    }

    /// A lifecycle signal (e.g. `user:online`) to the endpoints that name it.
    pub fn offer_lifecycle(&self, company: &str, event_type: &str, payload: &Value) {
        let id = uuid::Uuid::now_v7().to_string();
        self.offer(&Event {
            id: &id,
            company,
            event_type,
            rooms: &[],
            payload,
            priority: None,
            source: "server",
            publisher: None,
            created_at: now_ms(),
        });
    }

    /// Registers an endpoint (URL checked, see [`target`]); returns it with its secret.
    pub async fn create(&self, new: NewEndpoint) -> Result<Endpoint, WebhookError> {
        let url = target::validate(&new.url, self.settings.allow_private)?;
        if new.types.is_empty() && new.min_priority.is_none() {
            return Err(WebhookError::Invalid {
                field: "types",
                message: "give `types`, `minPriority` or both: an endpoint subscribes to something"
                    .into(),
            });
        }
        let secret = match new.secret {
            Some(s) if (16..=256).contains(&s.len()) => s,
            Some(_) => {
                return Err(WebhookError::Invalid {
                    field: "secret",
                    message: "`secret` must be 16-256 characters".into(),
                });
            }
            None => generate_secret(),
        };
        let endpoint = Endpoint {
            id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
            company_id: new.company_id,
            url: url.to_string(),
            secret,
            types: new.types,
            min_priority: new.min_priority.map(|p| p.as_str().to_string()),
            description: new.description,
            created_at: now_ms(),
        };
        self.store.create_webhook(&endpoint).await?;
        self.reload().await?;
        Ok(endpoint)
    }

    pub async fn list(&self, company_id: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        self.store.webhooks(company_id).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<(Endpoint, DeliveryStats)>, StoreError> {
        match self.store.webhook(id).await? {
            Some(e) => {
                let stats = self.store.delivery_stats(id).await?;
                Ok(Some((e, stats)))
            }
            None => Ok(None),
        }
    }

    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_webhook(id).await?;
        self.reload().await?;
        Ok(deleted)
    }

    pub async fn dead_letters(&self, id: &str, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        self.store.dead_letters(id, limit).await
    }

    pub async fn redeliver(&self, id: &str, delivery_id: i64) -> Result<bool, StoreError> {
        let done = self.store.redeliver(id, delivery_id, now_ms()).await?;
        self.kick();
        Ok(done)
    }
}

fn generate_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    format!("whsec_{}", hex::encode(bytes))
}

/// Reloads the cache so endpoints registered through another node are
/// matched here within `WEBHOOK_REFRESH_MS`.
async fn refresh(hooks: Arc<Webhooks>) {
    let mut tick = tokio::time::interval(hooks.settings.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = hooks.reload().await {
            tracing::warn!(error = %e, "webhook endpoints not reloaded");
        }
    }
}

/// How long a claimed delivery is held: the request timeout plus room to
/// record the outcome.
fn lease(settings: &WebhookSettings) -> Duration {
    settings.timeout * 2 + Duration::from_secs(5)
}
