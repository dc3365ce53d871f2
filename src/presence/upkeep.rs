//! Keeping presence true over time, on every node: the heartbeat of this
//! node's rows (with drift repair), the sweep that retires dead nodes'
//! sockets and settles users whose grace timer was lost, and the departure
//! of all of this node's sockets at shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Presence, millis, unsure};
use crate::domain::now_ms;
use crate::domain::presence::Transitions;
use crate::store::{SocketEntry, UserKey};

/// Users settled per sweep query; a sweep repeats up to [`SWEEP_ROUNDS`].
const SWEEP_BATCH: i64 = 500;
const SWEEP_ROUNDS: usize = 20;

/// Heartbeat and sweep, on every node, until shutdown.
pub(super) async fn maintain(p: Arc<Presence>) {
    let mut beat = tokio::time::interval(p.heartbeat_every());
    let mut sweep = tokio::time::interval(p.sweep_every());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !p.tasks.is_draining() {
        tokio::select! {
            _ = beat.tick() => heartbeat(&p).await,
            _ = sweep.tick() => sweep_once(&p).await,
        }
    }
}

impl Presence {
    /// Graceful shutdown: this node's sockets all leave at once. Clients that
    /// reconnect to another node within the grace period stay online.
    pub async fn leave_node(&self) {
        if !self.enabled {
            return;
        }
        let p = self;
        match p
            .store
            .presence_leave_node(&p.node, i64::MAX, now_ms())
            .await
        {
            Ok(users) => tracing::debug!(
                users = users.len(),
                "presence: sockets of this node left; other nodes settle their users"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "presence: cannot remove this node's sockets; other nodes drop them after WS_PRESENCE_TTL"
            ),
        }
    }
}

async fn heartbeat(p: &Arc<Presence>) {
    let (owed, (online, departed)) = {
        let _exclusive = p.sync.write().await;
        if p.tasks.is_draining() {
            return; // sockets are leaving; `leave_node` removes the rows
        }
        // Before the drift check: re-registering a socket whose failed
        // registration did not commit would announce its transition, and
        // the slot, still unsure, would announce it again.
        let (owed, all_sure) = unsure::resolve_all(p).await;
        (owed, beat_and_repair(p, all_sure).await)
    };
    p.announce_owed(owed).await;
    for (user, changes) in online {
        p.publish(&user, changes, None).await;
    }
    for user in departed {
        p.settle_later(user);
    }
}

/// Refreshes the heartbeat of this node's rows; when their number drifted
/// from its sockets (and `may_repair`), registers them again and removes
/// the rows no socket backs: the transitions that made, and the users to
/// settle.
async fn beat_and_repair(
    p: &Presence,
    may_repair: bool,
) -> (Vec<(UserKey, Transitions)>, Vec<UserKey>) {
    let now = now_ms();
    let rows = match p.store.presence_heartbeat(&p.node, now).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "presence heartbeat failed; will retry");
            return Default::default();
        }
    };
    if !may_repair {
        return Default::default();
    }
    let rooms_drifted = p.rooms_drifted.swap(false, Ordering::AcqRel);
    if rows == p.slots().len() as u64 && !rooms_drifted {
        return Default::default();
    }
    // Copied only to repair: a beat of a node with thousands of sockets
    // that has not drifted copies none of them.
    let entries: Vec<SocketEntry> = p.slots().values().map(|s| s.entry().clone()).collect();
    tracing::info!(
        rows,
        sockets = entries.len(),
        rooms_drifted,
        "presence rows of this node drifted from its sockets; registering them again"
    );
    register_again(p, &entries, now + 1).await
}

/// Registers `entries` with heartbeat `at`, then removes this node's rows
/// that were not (older heartbeat) as departures.
async fn register_again(
    p: &Presence,
    entries: &[SocketEntry],
    at: i64,
) -> (Vec<(UserKey, Transitions)>, Vec<UserKey>) {
    let mut online = Vec::new();
    for entry in entries {
        match p.store.presence_join(entry, at).await {
            Ok(changes) if changes.is_empty() => {}
            Ok(changes) => online.push((entry.user(), changes)),
            Err(e) => {
                tracing::warn!(error = %e, "presence: re-registration failed; will retry");
                // The rows' count may look right after a part of it.
                p.rooms_drifted.store(true, Ordering::Release);
                return (online, Vec::new());
            }
        }
    }
    match p.store.presence_leave_node(&p.node, at, at).await {
        Ok(departed) => (online, departed),
        Err(e) => {
            tracing::warn!(error = %e, "presence: cannot remove stale rows; will retry");
            (online, Vec::new())
        }
    }
}

async fn sweep_once(p: &Arc<Presence>) {
    for _ in 0..SWEEP_ROUNDS {
        let now = now_ms();
        let users = match p
            .store
            .presence_unsettled(now - millis(p.ttl), now - millis(p.grace), SWEEP_BATCH)
            .await
        {
            Ok(users) => users,
            Err(e) => {
                tracing::warn!(error = %e, "presence sweep failed; will retry");
                return;
            }
        };
        // Side by side, so they share the registrar's settle batches.
        futures::future::join_all(users.iter().map(|user| p.settle(user))).await;
        if (users.len() as i64) < SWEEP_BATCH {
            return;
        }
    }
}
