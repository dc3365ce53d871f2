//! Gauges read on a timer rather than per request: whether the database and
//! Redis are up, database pool use, and the offline-queue backlog.
//!
//! Every [`EVERY`] the database gets one `SELECT 1` (bounded by
//! [`PING_TIMEOUT`]) and the pool figures are read (atomics in sqlx); Redis
//! health is the flag its own probe keeps (see `crate::cluster`). The backlog
//! query (one aggregate over the cursor table, see
//! `crate::store::OpsStore::offline_backlog`) runs every [`BACKLOG_EVERY`].
//! A first sample is taken before the node listens, so a fresh node
//! reports real values from its first scrape.

use std::time::Duration;

use metrics::gauge;

use std::sync::Arc;

use crate::cluster::RedisLink;
use crate::domain::now_ms;
use crate::metrics::series;
use crate::store::Store;

/// How often the cheap gauges are refreshed.
pub const EVERY: Duration = Duration::from_secs(5);
/// How often the offline-queue backlog is measured.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(15);
/// A database that does not answer `SELECT 1` within this is down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What the gauges read: storage, the Redis link, and the offline queue's TTL.
#[derive(Clone)]
pub struct Sources {
    pub store: Arc<dyn Store>,
    pub redis: Option<RedisLink>,
    pub queue_ttl_ms: i64,
}

/// Samples forever (the first sample is [`sample`] in `App::build`).
pub async fn run(state: Sources) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: `App::build` sampled already
    let per_backlog = (BACKLOG_EVERY.as_secs() / EVERY.as_secs()).max(1);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        sample(&state, n % per_backlog == 0).await;
    }
}

/// Refreshes the gauges once; with `backlog`, measures the backlog too.
pub async fn sample(state: &Sources, backlog: bool) {
    let db_up = matches!(
        tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    gauge!(series::DATABASE_UP).set(f64::from(u8::from(db_up)));
    let redis_up = state.redis.as_ref().is_none_or(|r| r.is_healthy());
    gauge!(series::REDIS_UP).set(f64::from(u8::from(redis_up)));
    for p in state.store.pool_use() {
        gauge!(series::POOL_CONNECTIONS, "pool" => p.pool, "state" => "in_use")
            .set(f64::from(p.in_use));
        gauge!(series::POOL_CONNECTIONS, "pool" => p.pool, "state" => "idle")
            .set(f64::from(p.idle));
        gauge!(series::POOL_MAX, "pool" => p.pool).set(f64::from(p.max));
    }
    if backlog && db_up {
        let seen_since = now_ms() - state.queue_ttl_ms;
        match state.store.offline_backlog(seen_since).await {
            Ok(n) => crate::metrics::queued(n as f64),
            Err(e) => tracing::debug!(error = %e, "offline backlog not measured"),
        }
    }
}
