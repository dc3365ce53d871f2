//! Prometheus metrics (SPEC §10), named as the seeds named them.
//!
//! One recorder per process (the `metrics` facade is global); every
//! series is recorded through the functions here so names and labels live
//! in one place ([`series`], which also registers them all at startup).
//! Labels are bounded: event types that are not routes or catalog entries
//! are recorded as `unknown` (a catalog that allows unknown types would
//! otherwise let clients create a time series per name).
//!
//! - [`series`]: every name, its help text, registration at zero.
//! - The gauges read every few seconds (database/Redis up, pool use, the
//!   offline-queue backlog) are sampled by `crate::gauges`, never per request.
//! - [`http`]: the `/metrics` route, on the public port or on `METRICS_ADDR`.

pub mod http;
pub mod series;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Event types that may be metric labels: the catalog entries (of every app
/// in this process, which is one outside tests).
static KNOWN_TYPES: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Registers the catalog's type names as label values, and every series
/// at zero with the label values known at startup (see [`series`]).
pub fn register(labels: &series::Labels<'_>) {
    let mut known = KNOWN_TYPES.write().unwrap_or_else(|e| e.into_inner());
    known.extend(labels.event_types.iter().map(|n| n.to_string()));
    drop(known);
    series::register_all(labels);
}

/// The label of an event type: its name if the catalog has it, else `unknown`.
fn type_label(event_type: &str) -> String {
    let known = KNOWN_TYPES.read().unwrap_or_else(|e| e.into_inner());
    if known.contains(event_type) {
        event_type.to_string()
    } else {
        "unknown".to_string()
    }
}

/// Installs the recorder once; later calls (tests with several apps in one
/// process) share it.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(series::LATENCY.into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ],
                )
                .ok()?
                // From a reconnect within seconds to a device back after a day.
                .set_buckets_for_metric(
                    Matcher::Full(series::REPLAY_LAG.into()),
                    &[
                        0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
                    ],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref().map(PrometheusHandle::render))
        .unwrap_or_default()
}

pub fn connection_opened() {
    counter!(series::CONNECTIONS_TOTAL).increment(1);
    gauge!(series::ACTIVE_CONNECTIONS).increment(1.0);
}

pub fn connection_closed() {
    gauge!(series::ACTIVE_CONNECTIONS).decrement(1.0);
}

pub fn auth_failure(reason: &'static str) {
    counter!(series::AUTH_FAILURES, "reason" => reason).increment(1);
}

pub fn refused(code: &'static str) {
    counter!(series::REFUSED, "code" => code).increment(1);
}

pub fn message(event_type: &str, direction: &'static str) {
    counter!(series::MESSAGES, "type" => event_type.to_string(), "direction" => direction)
        .increment(1);
}

pub fn messages_out(event_type: &str, n: u64) {
    counter!(series::MESSAGES, "type" => type_label(event_type), "direction" => "out").increment(n);
}

/// Publish-to-emit latency of one delivery.
pub fn latency(seconds: f64) {
    histogram!(series::LATENCY).record(seconds);
}

pub fn replayed(n: u64) {
    counter!(series::REPLAYED).increment(n);
}

pub fn catch_up_started() {
    counter!(series::CATCH_UPS).increment(1);
}

pub fn rate_limited() {
    counter!(series::RATE_LIMITED).increment(1);
}

pub fn slow_consumer_disconnect() {
    counter!(series::SLOW_CONSUMERS).increment(1);
}

/// Ephemeral broadcasts a full socket buffer swallowed (counted, not silent).
pub fn dropped_ephemeral(n: u64) {
    counter!(series::DROPPED_EPHEMERAL).increment(n);
}

/// A TCP connection closed at once: `HTTP_MAX_CONNECTIONS` and the reserve were full.
pub fn http_connection_refused() {
    counter!(series::HTTP_REFUSED).increment(1);
}

/// `accept` failed for want of resources (descriptors, memory).
pub fn accept_error() {
    counter!(series::HTTP_ACCEPT_ERRORS).increment(1);
}

pub fn db_error() {
    counter!(series::DB_ERRORS).increment(1);
}

pub fn redis_error() {
    counter!(series::REDIS_ERRORS).increment(1);
}

pub fn conflict() {
    counter!(series::CONFLICTS).increment(1);
}

/// The age of a durable event (created at `created_at_ms`) delivered by
/// replay or catch-up rather than live: how far behind its reader was.
pub fn replay_lag(age_ms: i64) {
    histogram!(series::REPLAY_LAG).record(age_ms.max(0) as f64 / 1000.0);
    let ms = age_ms.max(0) as u64;
    LAG_COUNT.fetch_add(1, Ordering::Relaxed);
    LAG_SUM_MS.fetch_add(ms, Ordering::Relaxed);
    LAG_MAX_MS.fetch_max(ms, Ordering::Relaxed);
}

// The histogram cannot be read back; the admin API's stats read these.
static LAG_COUNT: AtomicU64 = AtomicU64::new(0);
static LAG_SUM_MS: AtomicU64 = AtomicU64::new(0);
static LAG_MAX_MS: AtomicU64 = AtomicU64::new(0);

/// Replay lag since start: `(events, sum of lags in ms, largest lag in ms)`.
pub fn replay_lag_summary() -> (u64, u64, u64) {
    (
        LAG_COUNT.load(Ordering::Relaxed),
        LAG_SUM_MS.load(Ordering::Relaxed),
        LAG_MAX_MS.load(Ordering::Relaxed),
    )
}

/// The offline-queue backlog (see [`series::QUEUED`]).
pub fn queued(n: f64) {
    gauge!(series::QUEUED).set(n);
}

/// One webhook delivery attempt and how it ended.
pub fn webhook_attempt(outcome: &'static str) {
    counter!(series::WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

/// The webhook outbox, cluster-wide (see [`series::WEBHOOK_OUTBOX`]).
pub fn webhook_outbox(pending: f64, dead: f64) {
    gauge!(series::WEBHOOK_OUTBOX, "state" => "pending").set(pending);
    gauge!(series::WEBHOOK_OUTBOX, "state" => "dead").set(dead);
}

/// A webhook delivery of an ephemeral or lifecycle event dropped (queue full).
pub fn webhook_dropped() {
    counter!(series::WEBHOOK_DROPPED).increment(1);
}
