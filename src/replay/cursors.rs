//! Offline-queue cursors of connected sockets, saved while they are
//! connected: every few seconds each node writes, in one statement, the
//! cursors that moved since its last save, at the offset each client has
//! surely processed ([`Member::safe`]). A node killed at any moment then
//! leaves every device a stored cursor no further than what it processed:
//! a crash costs the events since the last save again (duplicates), never
//! a loss. (A socket's first cursor is stored before `session`, see
//! [`super::offline::replay_on_connect`]; leaving saves the last one.)

use std::sync::Arc;
use std::time::Duration;

use super::{DurableHub, Member};
use crate::domain::now_ms;
use crate::store::{Store, furthest_cursors};

/// How often connected sockets' cursors are saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Saves moved cursors every [`SAVE_EVERY`], forever.
pub async fn save_forever(hub: Arc<DurableHub>, store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = save_once(&hub.feeds.all_members(), store.as_ref()).await {
            tracing::warn!(error = %e, "could not save offline-queue cursors; will retry");
        }
    }
}

/// One batched write of the cursors of `members` that moved; returns how
/// many were written.
pub async fn save_once(
    members: &[Arc<Member>],
    store: &dyn Store,
) -> Result<usize, crate::store::StoreError> {
    // Two sockets of one device in one room: the further one counts.
    let mut movers = Vec::new();
    let mut moved = Vec::new();
    for member in members {
        if let Some((key, room, offset)) = member.cursor_to_save() {
            moved.push((key, room, offset));
            movers.push((member.clone(), offset));
        }
    }
    if moved.is_empty() {
        return Ok(0);
    }
    let rows = furthest_cursors(moved);
    store.save_cursor_batch(&rows, now_ms()).await?;
    for (member, offset) in movers {
        member.cursor_saved(offset);
    }
    Ok(rows.len())
}
