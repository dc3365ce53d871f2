//! Registrations whose outcome is unknown. A socket's registration that
//! fails may still have committed: its connection ended during the COMMIT
//! (the database restarted, the backend was terminated), or its batch was
//! given up on while the COMMIT ran on. If it committed and took the user
//! online, nobody announced `user:online`, and the heartbeat's drift check
//! sees nothing wrong (the row is there).
//!
//! So a failed registration leaves its slot unsure, and the database is
//! asked whether that registration took the user online
//! (`presence_users.online_by`): by a task, once the database answers
//! ([`crate::store::outcome::once_answering`]), and by every heartbeat
//! before it repairs drift (the task may have given up). The answer is
//! taken under `sync`, shared by the task and held exclusively by the
//! heartbeat, so one of them resolves each slot, and a heartbeat that
//! re-registers a socket whose first registration did not commit has
//! resolved it first (announcing its own transition, not a second one).
//!
//! One exception stays: a socket that leaves before its slot is resolved
//! and whose user then settles offline has its `user:offline` announced
//! without the `user:online` before it (the slot went with the socket).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Presence, Slot};
use crate::domain::SessionId;
use crate::domain::presence::{Change, Transitions};
use crate::store::{StoreError, UserKey, outcome};

impl Presence {
    /// A registration of `slot` failed: resolves it once the database
    /// answers (see the module docs).
    pub(super) fn registration_failed(
        self: &Arc<Self>,
        id: SessionId,
        slot: Arc<Slot>,
        error: &StoreError,
    ) {
        slot.unsure.store(true, Ordering::Release);
        let p = self.clone();
        // Opens the breaker on an outage: asked again once its probe (outside
        // the pool) finds the database answering.
        let error = error.not_known();
        self.tasks.spawn(async move {
            p.breaker.failed(&error).await;
            let stop = p.tasks.child_token();
            let answer = outcome::once_answering(&p.breaker, stop, || async {
                let _shared = p.sync.read().await;
                resolve(&p, &slot).await
            })
            .await;
            if let Some(Some((user, changes))) = answer {
                p.publish(&user, changes, Some(id)).await;
            }
        });
    }
}

/// The transition an unsure registration of `slot` made and nobody
/// announced; the slot is sure afterwards. `None` when the slot was sure
/// (resolved already) or the registration did not take its user online.
/// The caller holds `sync`.
pub(super) async fn resolve(
    p: &Presence,
    slot: &Slot,
) -> Result<Option<(UserKey, Transitions)>, StoreError> {
    if !slot.unsure.load(Ordering::Acquire) {
        return Ok(None);
    }
    let entry = slot.entry().clone();
    let user = entry.user();
    let since = p.store.presence_online_by(&user, &entry.socket_id).await?;
    slot.unsure.store(false, Ordering::Release);
    Ok(since.map(|at| {
        let changes = Transitions {
            user: Some(Change::Online {
                role: entry.role,
                at,
            }),
            ..Transitions::default()
        };
        (user, changes)
    }))
}
