//! The application's services, held for whoever serves a request (HTTP
//! handlers, transports, `api`). No logic lives here: each service owns its
//! narrow dependencies and is built, in dependency order, by `App::build`.
//!
//! Nothing here is cluster state: counters are this node's, and everything
//! another node must see lives in the database or travels through Redis.

use std::sync::Arc;
use std::time::Instant;

use crate::admin::Admin;
use crate::auth::JwtVerifier;
use crate::catalog::Catalog;
use crate::cluster::RedisLink;
use crate::config::Config;
use crate::documents::Documents;
use crate::events::Publisher;
use crate::fanout::Fanout;
use crate::limits::ConnectionLimits;
use crate::presence::Presence;
use crate::replay::DurableHub;
use crate::session::Sessions;
use crate::store::Store;
use crate::tasks::Tasks;
use crate::throttle::{KeyFailures, UserRates};
use crate::webhooks::Webhooks;

#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub config: Config,
    pub verifier: JwtVerifier,
    pub store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
    /// Publishing: validation, the durable append, delivery.
    pub publisher: Publisher,
    /// Live delivery and replay of durable events (with its Redis bus).
    pub durable: Arc<DurableHub>,
    /// Ephemeral delivery through every transport's hub.
    pub fanout: Arc<Fanout>,
    pub documents: Documents,
    /// Who is online, and typing (SPEC §7).
    pub presence: Arc<Presence>,
    /// This node's open sessions, every transport's (shared with `admin`).
    pub sessions: Arc<Sessions>,
    /// The admin API's cluster-wide listings, kicks and statistics.
    pub admin: Admin,
    /// Webhook endpoints, their outbox and delivery.
    pub webhooks: Arc<Webhooks>,
    pub limits: ConnectionLimits,
    /// One event-rate bucket per user on this node (`WS_USER_RATE_LIMIT`).
    pub user_rates: UserRates,
    /// Failed API-key attempts per client address (`API_KEY_FAILURE_LIMIT`).
    pub key_failures: KeyFailures,
    pub redis: Option<RedisLink>,
    /// Every background task, and the shutdown flag.
    pub tasks: Tasks,
    pub started: Instant,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }

    /// Set on SIGTERM: new connections and durable writes are refused.
    pub fn is_shutting_down(&self) -> bool {
        self.tasks.is_draining()
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}
