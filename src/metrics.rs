//! Prometheus metrics (SPEC §10), named as the seeds named them.
//!
//! One recorder per process (the `metrics` facade is global); every
//! counter is recorded through the functions here so names and labels live
//! in one place. Labels are bounded: event types that are not routes or
//! catalog entries are recorded as `unknown` (a catalog that allows unknown
//! types would otherwise let clients create a time series per name).

use std::collections::BTreeSet;
use std::sync::{OnceLock, RwLock};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Event types that may be metric labels: the catalog entries (of every app
/// in this process, which is one outside tests).
static KNOWN_TYPES: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Registers the catalog's type names as label values.
pub fn register_event_types<'a>(names: impl Iterator<Item = &'a str>) {
    let mut known = KNOWN_TYPES.write().unwrap_or_else(|e| e.into_inner());
    known.extend(names.map(str::to_string));
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
                    Matcher::Full("websocket_message_latency_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
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
    counter!("websocket_connections_total").increment(1);
    gauge!("websocket_active_connections").increment(1.0);
}

pub fn connection_closed() {
    gauge!("websocket_active_connections").decrement(1.0);
}

pub fn auth_failure(reason: &'static str) {
    counter!("websocket_auth_failures_total", "reason" => reason).increment(1);
}

pub fn refused(code: &'static str) {
    counter!("websocket_refused_total", "code" => code).increment(1);
}

pub fn message(event_type: &str, direction: &'static str) {
    counter!("websocket_messages_total", "type" => event_type.to_string(), "direction" => direction).increment(1);
}

pub fn messages_out(event_type: &str, n: u64) {
    counter!("websocket_messages_total", "type" => type_label(event_type), "direction" => "out")
        .increment(n);
}

/// Publish-to-emit latency of one delivery.
pub fn latency(seconds: f64) {
    histogram!("websocket_message_latency_seconds").record(seconds);
}

pub fn replayed(n: u64) {
    counter!("websocket_replayed_messages_total").increment(n);
}

pub fn rate_limited() {
    counter!("websocket_rate_limited_total").increment(1);
}

pub fn slow_consumer_disconnect() {
    counter!("websocket_slow_consumer_disconnects_total").increment(1);
}

/// Ephemeral broadcasts a full socket buffer swallowed (counted, not silent).
pub fn dropped_ephemeral(n: u64) {
    counter!("websocket_dropped_ephemeral_total").increment(n);
}

/// A TCP connection closed at once: `HTTP_MAX_CONNECTIONS` and the reserve were full.
pub fn http_connection_refused() {
    counter!("http_connections_refused_total").increment(1);
}

/// `accept` failed for want of resources (descriptors, memory).
pub fn accept_error() {
    counter!("http_accept_errors_total").increment(1);
}

pub fn db_error() {
    counter!("websocket_db_errors_total").increment(1);
}

pub fn redis_error() {
    counter!("websocket_redis_errors_total").increment(1);
}

pub fn conflict() {
    counter!("websocket_conflicts_total").increment(1);
}

pub fn queued(n: f64) {
    gauge!("websocket_queued_messages").set(n);
}
