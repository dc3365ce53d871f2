//! Shared application state handed to HTTP handlers and socket handlers.
//!
//! Nothing here is cluster state: counters are this node's, and everything
//! another node must see lives in the database or travels through the adapter.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};
use std::time::Instant;

use tokio_util::task::TaskTracker;

use crate::auth::JwtVerifier;
use crate::catalog::Catalog;
use crate::cluster::RedisLink;
use crate::config::Config;
use crate::events::conflate::Conflator;
use crate::limits::ConnectionLimits;
use crate::presence::Presence;
use crate::replay::DurableHub;
use crate::socket::broadcast::Hub;
use crate::store::Store;
use crate::throttle::{KeyFailures, UserRates};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub verifier: JwtVerifier,
    pub store: Arc<dyn Store>,
    /// Group commit for durable appends.
    pub appender: crate::store::batch::Appender,
    pub catalog: Arc<Catalog>,
    /// Live delivery and replay of durable events.
    pub durable: Arc<DurableHub>,
    pub redis: Option<RedisLink>,
    pub started: Instant,
    /// Sockets connected to this node (health's `connectedClients`).
    pub connections: AtomicUsize,
    /// Set on SIGTERM: new connections and durable writes are refused.
    pub shutting_down: AtomicBool,
    /// Per-socket workers, so shutdown can wait for in-flight writes.
    pub workers: TaskTracker,
    pub conflator: Arc<Conflator>,
    pub limits: ConnectionLimits,
    /// One event-rate bucket per user on this node (`WS_USER_RATE_LIMIT`).
    pub user_rates: UserRates,
    /// Failed API-key attempts per client address (`API_KEY_FAILURE_LIMIT`).
    pub key_failures: KeyFailures,
    /// This node's presence registrations and typing states (SPEC §7).
    pub presence: Presence,
    /// Set once the Socket.IO instance exists (it is built after the state).
    hub: OnceLock<Arc<dyn Hub>>,
}

impl AppState {
    pub fn new(
        config: Config,
        verifier: JwtVerifier,
        store: Arc<dyn Store>,
        catalog: Catalog,
        redis: Option<RedisLink>,
    ) -> Self {
        let catalog = Arc::new(catalog);
        let durable = DurableHub::new(store.clone(), catalog.clone());
        let presence = Presence::new(&config);
        let appender = crate::store::batch::Appender::new(store.clone());
        let user_rates = UserRates::new(config.user_rate_limit, config.user_rate_burst);
        let key_failures = KeyFailures::new(config.api_key_failure_limit);
        Self(Arc::new(Inner {
            config,
            verifier,
            appender,
            store,
            catalog,
            durable,
            redis,
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            workers: TaskTracker::new(),
            conflator: Arc::new(Conflator::default()),
            limits: ConnectionLimits::default(),
            user_rates,
            key_failures,
            presence,
            hub: OnceLock::new(),
        }))
    }

    pub fn set_hub(&self, hub: Arc<dyn Hub>) {
        let _ = self.0.hub.set(hub);
    }

    /// The delivery hub. Only absent before `app::build` finished, when no
    /// request can be served yet.
    pub fn hub(&self) -> Arc<dyn Hub> {
        self.0.hub.get().cloned().unwrap_or_else(|| Arc::new(NoHub))
    }

    pub fn queue_ttl_ms(&self) -> i64 {
        self.config.message_queue_ttl.as_millis() as i64
    }

    pub fn is_shutting_down(&self) -> bool {
        self.0.shutting_down.load(Ordering::Acquire)
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

struct NoHub;

#[async_trait::async_trait]
impl Hub for NoHub {
    async fn deliver(&self, _: &crate::socket::broadcast::Delivery) {
        tracing::error!("delivery before the Socket.IO layer was built");
    }

    async fn emit(&self, _: &crate::socket::broadcast::Signal) {
        tracing::error!("signal before the Socket.IO layer was built");
    }
}
