//! The broadcast rule for company-wide presence: what a connect storm
//! costs.
//!
//! Sending each `user:online` / `user:offline` to every socket of the
//! company costs N frames per transition, N² for N users coming back at
//! once (10,000 tablets after a Wi-Fi blip: 100 million frames). So:
//!
//! - while the company has at most `WS_PRESENCE_BROADCAST_MAX` users online
//!   (default 500, the size of a Pusher presence channel), every transition
//!   is sent to the company room as before;
//! - above it, a transition is not sent to the company; it is queued and
//!   sent within 250 ms, with the others of that time, as one
//!   `presence:batch { online: [...], offline: [...] }` frame (entries: the
//!   bodies of `user:online` / `user:offline`) to the sessions that asked
//!   for batches (`presence:list { batches: true }`). Each node sends its own
//!   batches, at most one per company every 250 ms.
//!
//! Every transition is still decided exactly once (see the module above)
//! and announced exactly once, in one of the two forms, so a session that
//! asked for batches and applies both forms in `at` order has the exact
//! set. `presence:list` and entity-room presence (`presence:joined` /
//! `presence:left`) are not affected.
//!
//! The count deciding the form:
//!
//! - a departure is counted by the transaction that made it, after its
//!   change and before its commit, up to the bound + 1 (cheap however large
//!   the company). Departures racing it that have not committed yet still
//!   count, so when many users leave at once (on any nodes) only the one
//!   that brings the company back to the bound can go out per user;
//! - an arrival: this node's count (the database's, at most [`REFRESH`]
//!   old, plus the transitions this node announced since). When it says
//!   "per-user frame", the database's count is read again after the arrival
//!   committed: it holds every node's committed arrivals, so when many
//!   users arrive at once (on any nodes) none goes out per user above the
//!   bound (without it, `presence-storm-cluster.test.js` saw 4 of 16
//!   arrivals over two nodes sent per user above a bound of 5: each node
//!   counted from its own stale count).
//!
//! The exception: where arrivals and departures race each other at the
//! bound, a per-user frame can go out above it, by at most the number of
//! transitions of the other kind that committed in a short window (an
//! arrival's read misses the departures committed between its commit and
//! the read; a departure's count misses the arrivals committed between the
//! count and its commit). Making every transition exact would serialise the
//! company's transitions on one row through their commits; measured, that
//! nearly halved `connect-presence` (bench/README.md). The other way, a
//! stale count may batch an arrival just below the bound (for at most
//! [`REFRESH`]); no transition is lost either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Presence;
use crate::domain::RoomName;
use crate::fanout::{Hub, Signal};

/// How old the database's count may be before it is read again.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long transitions are gathered into one `presence:batch`.
pub const BATCH_EVERY: Duration = Duration::from_millis(250);

/// How a company-wide transition is announced.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `user:online` / `user:offline` to the company room.
    Each,
    /// Into the next `presence:batch`.
    Batch,
}

/// The rule: per-user frames while at most `max` users are online.
pub fn route(online: i64, max: i64) -> Route {
    if online <= max {
        Route::Each
    } else {
        Route::Batch
    }
}

struct Count {
    online: i64,
    read_at: Instant,
    reading: bool,
}

#[derive(Default)]
struct Pending {
    online: Vec<Value>,
    offline: Vec<Value>,
}

/// Per-company counts and queued batches of this node.
pub(super) struct Broadcast {
    /// `WS_PRESENCE_BROADCAST_MAX`, as the counts are kept.
    max: i64,
    // std Mutexes: never held across an await.
    counts: Mutex<HashMap<String, Count>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Broadcast {
    /// The bound, as the store counts it ([`crate::store::PresenceStore::presence_settle`]).
    pub(super) fn bound(&self) -> i64 {
        self.max
    }

    pub(super) fn new(max: usize) -> Self {
        Self {
            max: i64::try_from(max).unwrap_or(i64::MAX),
            counts: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<String, Count>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Presence {
    /// Routes a company-wide transition (`online`: arrival or departure;
    /// `counted`: a departure's count from its transaction) whose frame is
    /// `signal`: sends it to the company room, or queues it for the next
    /// batch.
    pub(super) async fn route_company(
        self: &Arc<Self>,
        company: &str,
        online: bool,
        counted: Option<i64>,
        signal: Signal,
    ) {
        let count = match counted {
            Some(counted) => {
                // Counted already: only this node's estimate moves, no read.
                if let Some(c) = self.broadcast.counts().get_mut(company) {
                    c.online += if online { 1 } else { -1 };
                }
                counted
            }
            None => self.arrival_count(company).await,
        };
        match route(count, self.broadcast.max) {
            Route::Each => self.fanout.emit(&signal).await,
            Route::Batch => self.queue_batch(company, online, signal.data),
        }
    }

    /// The count that decides an arrival's form.
    async fn arrival_count(&self, company: &str) -> i64 {
        let (estimate, fresh) = self.company_count(company, 1).await;
        match estimate {
            // A per-user frame goes to the whole company: decide it on the
            // database's count read after this arrival committed, which
            // holds every node's committed arrivals, never on this node's
            // estimate (other nodes' arrivals of the last second are
            // missing from it, and a storm is mostly them). Cheap: it is
            // read only below the bound.
            estimate if !fresh && route(estimate, self.broadcast.max) == Route::Each => {
                self.read_count(company).await.unwrap_or(estimate)
            }
            estimate => estimate,
        }
    }

    /// This node's count of the company's online users after a transition
    /// (`delta`) it is announcing, and whether it was just read; read from
    /// the database when older than [`REFRESH`] (one reader at a time; the
    /// others use the last count).
    async fn company_count(&self, company: &str, delta: i64) -> (i64, bool) {
        {
            let mut counts = self.broadcast.counts();
            match counts.get_mut(company) {
                Some(c) if c.reading || c.read_at.elapsed() < REFRESH => {
                    c.online += delta;
                    return (c.online, false);
                }
                Some(c) => c.reading = true,
                None => {
                    counts.insert(
                        company.to_string(),
                        Count {
                            online: 0,
                            read_at: Instant::now(),
                            reading: true,
                        },
                    );
                }
            }
        }
        // Read after the transition committed: the count includes it.
        let read = self.store.presence_online_count(company).await;
        let mut counts = self.broadcast.counts();
        let c = counts.entry(company.to_string()).or_insert(Count {
            online: 0,
            read_at: Instant::now(),
            reading: false,
        });
        c.reading = false;
        match read {
            Ok(n) => {
                c.online = n;
                c.read_at = Instant::now();
                (n, true)
            }
            Err(e) => {
                tracing::debug!(error = %e, "presence: count failed; using the last one");
                c.online += delta;
                (c.online, false)
            }
        }
    }

    /// The database's count now (it includes every committed transition of
    /// every node), kept as this node's count; `None` when it cannot be read.
    async fn read_count(&self, company: &str) -> Option<i64> {
        match self.store.presence_online_count(company).await {
            Ok(n) => {
                if let Some(c) = self.broadcast.counts().get_mut(company) {
                    c.online = n;
                    c.read_at = Instant::now();
                }
                Some(n)
            }
            Err(e) => {
                tracing::debug!(error = %e, "presence: count failed; using this node's");
                None
            }
        }
    }

    fn queue_batch(self: &Arc<Self>, company: &str, online: bool, data: Value) {
        let first = {
            let mut pending = self.broadcast.pending();
            let first = !pending.contains_key(company);
            let batch = pending.entry(company.to_string()).or_default();
            if online {
                batch.online.push(data);
            } else {
                batch.offline.push(data);
            }
            first
        };
        if first {
            let this = self.clone();
            let company = company.to_string();
            self.tasks.spawn(async move {
                tokio::time::sleep(BATCH_EVERY).await;
                this.flush_batch(&company).await;
            });
        }
    }

    async fn flush_batch(&self, company: &str) {
        let Some(batch) = self.broadcast.pending().remove(company) else {
            return;
        };
        let signal = Signal {
            company: company.to_string(),
            room: RoomName::presence_batches().as_str().to_string(),
            event: "presence:batch",
            data: json!({ "online": batch.online, "offline": batch.offline }),
            exclude: None,
        };
        self.fanout.emit(&signal).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_frames_up_to_the_bound_then_batches() {
        assert_eq!(route(1, 500), Route::Each);
        assert_eq!(route(500, 500), Route::Each);
        assert_eq!(route(501, 500), Route::Batch);
        assert_eq!(route(0, 0), Route::Each);
        assert_eq!(route(1, 0), Route::Batch);
    }
}
