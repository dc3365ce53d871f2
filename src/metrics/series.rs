//! Every series this node exports, with its help text, registered at
//! startup ([`register_all`]) so that a fresh node shows all of them at zero
//! (Prometheus sees a live node, and `rate()` has a starting point).
//!
//! Labels with known values are registered for each value: `code` (every
//! protocol code), `reason` (the three authentication failures),
//! `direction`, and `type` (every catalog entry outgoing, `unknown` both
//! ways). No label carries a room, user or company: cardinality is bounded
//! by the catalog.

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

pub const ACTIVE_CONNECTIONS: &str = "websocket_active_connections";
pub const CONNECTIONS_TOTAL: &str = "websocket_connections_total";
pub const AUTH_FAILURES: &str = "websocket_auth_failures_total";
pub const MESSAGES: &str = "websocket_messages_total";
pub const LATENCY: &str = "websocket_message_latency_seconds";
pub const REPLAYED: &str = "websocket_replayed_messages_total";
pub const CATCH_UPS: &str = "switchyard_catch_ups_total";
pub const REPLAY_LAG: &str = "websocket_replay_lag_seconds";
pub const QUEUED: &str = "websocket_queued_messages";
pub const CONFLICTS: &str = "websocket_conflicts_total";
pub const RATE_LIMITED: &str = "websocket_rate_limited_total";
pub const REFUSED: &str = "websocket_refused_total";
pub const SLOW_CONSUMERS: &str = "websocket_slow_consumer_disconnects_total";
pub const DROPPED_EPHEMERAL: &str = "websocket_dropped_ephemeral_total";
pub const DB_ERRORS: &str = "websocket_db_errors_total";
pub const REDIS_ERRORS: &str = "websocket_redis_errors_total";
pub const HTTP_REFUSED: &str = "http_connections_refused_total";
pub const HTTP_ACCEPT_ERRORS: &str = "http_accept_errors_total";
pub const BUILD_INFO: &str = "switchyard_build_info";
pub const DATABASE_UP: &str = "switchyard_database_up";
pub const REDIS_UP: &str = "switchyard_redis_up";
pub const POOL_CONNECTIONS: &str = "switchyard_db_pool_connections";
pub const POOL_MAX: &str = "switchyard_db_pool_max_connections";
pub const WEBHOOK_ATTEMPTS: &str = "switchyard_webhook_attempts_total";
pub const WEBHOOK_OUTBOX: &str = "switchyard_webhook_outbox";
pub const WEBHOOK_DROPPED: &str = "switchyard_webhook_dropped_total";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A series: name, kind, help text.
pub type Series = (&'static str, Kind, &'static str);

/// Every series, in the order of the README's table.
pub const ALL: [Series; 26] = [
    (
        ACTIVE_CONNECTIONS,
        Kind::Gauge,
        "Socket.IO connections open on this node.",
    ),
    (
        CONNECTIONS_TOTAL,
        Kind::Counter,
        "Socket.IO connections accepted (authenticated) by this node.",
    ),
    (
        AUTH_FAILURES,
        Kind::Counter,
        "Connections refused for their token, by reason (UNAUTHORIZED, INVALID_TOKEN, TOKEN_EXPIRED).",
    ),
    (
        MESSAGES,
        Kind::Counter,
        "Socket events received (direction=in, type=the request) and deliveries sent (direction=out, type=the catalog type).",
    ),
    (
        LATENCY,
        Kind::Histogram,
        "Publish-to-emit latency of live durable deliveries, seconds.",
    ),
    (
        REPLAYED,
        Kind::Counter,
        "Durable events replayed on connect and subscribe (offline queue and resume).",
    ),
    (
        CATCH_UPS,
        Kind::Counter,
        "Background catch-ups started: a room member reading the log because the live feed moved on without it (events announced during its connect replay, a gap in its live feed, a bus outage).",
    ),
    (
        REPLAY_LAG,
        Kind::Histogram,
        "Age of each durable event delivered by replay or catch-up instead of live, seconds.",
    ),
    (
        QUEUED,
        Kind::Gauge,
        "Offline-queue backlog, cluster-wide: durable events beyond the cursors of devices seen within WS_MESSAGE_QUEUE_TTL (sampled every 15 s).",
    ),
    (
        CONFLICTS,
        Kind::Counter,
        "Document updates that conflicted and were merged last-write-wins.",
    ),
    (
        RATE_LIMITED,
        Kind::Counter,
        "Socket events refused by a rate limit.",
    ),
    (
        REFUSED,
        Kind::Counter,
        "Refusals (connect errors and error acks) by code.",
    ),
    (
        SLOW_CONSUMERS,
        Kind::Counter,
        "Sockets disconnected because they stopped draining their buffer.",
    ),
    (
        DROPPED_EPHEMERAL,
        Kind::Counter,
        "Ephemeral deliveries dropped because a socket's buffer was full.",
    ),
    (
        DB_ERRORS,
        Kind::Counter,
        "Operations that failed because the database was unavailable.",
    ),
    (
        REDIS_ERRORS,
        Kind::Counter,
        "Redis operations that failed (broadcasts, durable bus, probes).",
    ),
    (
        HTTP_REFUSED,
        Kind::Counter,
        "TCP connections closed at once: HTTP_MAX_CONNECTIONS and the health reserve were full.",
    ),
    (
        HTTP_ACCEPT_ERRORS,
        Kind::Counter,
        "accept() failures for want of resources (descriptors, memory).",
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        "Always 1; the version label says which build runs.",
    ),
    (
        DATABASE_UP,
        Kind::Gauge,
        "1 when the database answered the last ping (every 5 s), else 0.",
    ),
    (
        REDIS_UP,
        Kind::Gauge,
        "1 when Redis answers and this node receives cluster traffic, or Redis is not configured; else 0.",
    ),
    (
        POOL_CONNECTIONS,
        Kind::Gauge,
        "Database pool connections by pool and state (in_use, idle), sampled every 5 s.",
    ),
    (POOL_MAX, Kind::Gauge, "Database pool size limit, by pool."),
    (
        WEBHOOK_ATTEMPTS,
        Kind::Counter,
        "Webhook delivery attempts by this node, by outcome (delivered, retry, dead).",
    ),
    (
        WEBHOOK_OUTBOX,
        Kind::Gauge,
        "Webhook outbox rows cluster-wide, by state (pending, dead), sampled every 15 s.",
    ),
    (
        WEBHOOK_DROPPED,
        Kind::Counter,
        "Webhook deliveries of ephemeral or lifecycle events dropped because the write queue was full.",
    ),
];

/// The label values known at startup. The caller names them (metrics sit
/// below every other module, so they cannot look the codes up themselves).
pub struct Labels<'a> {
    /// `type` of outgoing messages: the catalog's event types.
    pub event_types: Vec<&'a str>,
    /// `code` of refusals: every error code.
    pub refusal_codes: Vec<&'static str>,
    /// `reason` of authentication failures.
    pub auth_failure_reasons: Vec<&'static str>,
}

/// Describes every series and registers it (with each known label value)
/// at zero. Idempotent: several apps in one process (tests) share it.
pub fn register_all(labels: &Labels<'_>) {
    for (name, kind, help) in ALL {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, Unit::Seconds, help),
        }
    }
    for name in [
        CONNECTIONS_TOTAL,
        REPLAYED,
        CATCH_UPS,
        CONFLICTS,
        RATE_LIMITED,
        SLOW_CONSUMERS,
        DROPPED_EPHEMERAL,
        DB_ERRORS,
        REDIS_ERRORS,
        HTTP_REFUSED,
        HTTP_ACCEPT_ERRORS,
        WEBHOOK_DROPPED,
    ] {
        let _ = counter!(name);
    }
    for outcome in ["delivered", "retry", "dead"] {
        let _ = counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome);
    }
    for state in ["pending", "dead"] {
        let _ = gauge!(WEBHOOK_OUTBOX, "state" => state);
    }
    for reason in &labels.auth_failure_reasons {
        let _ = counter!(AUTH_FAILURES, "reason" => *reason);
    }
    for code in &labels.refusal_codes {
        let _ = counter!(REFUSED, "code" => *code);
    }
    for direction in ["in", "out"] {
        let _ = counter!(MESSAGES, "type" => "unknown", "direction" => direction);
    }
    for t in &labels.event_types {
        let _ = counter!(MESSAGES, "type" => t.to_string(), "direction" => "out");
    }
    // Registering creates the series at zero and never resets one that
    // already counts (a process that builds several apps, as tests do).
    let _ = gauge!(ACTIVE_CONNECTIONS);
    let _ = gauge!(QUEUED);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let _ = histogram!(LATENCY);
    let _ = histogram!(REPLAY_LAG);
}
