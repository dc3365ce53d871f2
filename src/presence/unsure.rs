//! Registrations whose outcome is unknown. A socket's registration that
//! fails may still have committed: its connection ended during the COMMIT
//! (the database restarted, the backend was terminated), or its batch was
//! given up on while the COMMIT ran on. If it committed and took the user
//! online (or into entity rooms named in `auth.offsets`), nobody announced
//! `user:online` (or `presence:joined`), and the heartbeat's drift check
//! sees nothing wrong (the row is there).
//!
//! So a failed registration leaves its slot unsure, and the database is
//! asked whether that registration took the user online
//! (`presence_users.online_by`) and into entity rooms
//! (`presence_user_rooms.entered_by`, at the registration's time): by one
//! task for all unsure slots, once the database answers
//! ([`crate::store::outcome::once_answering`]), and by every heartbeat
//! before it repairs drift (the task may have given up). The answer is taken under `sync`, shared by the task and held
//! exclusively by the heartbeat, so one of them resolves each slot; a
//! heartbeat repairs drift only once every slot is resolved, so a socket
//! whose first registration did not commit is registered again (and its
//! transition announced) only after its slot said it owes nothing.
//!
//! A socket that leaves while unsure is kept for the answer: its user may
//! be online through it and stay online through sockets registered since.
//! One exception stays: when its user settles offline (or out of the
//! room) before the database answers, that `user:offline` goes out
//! without the `user:online` before it. A failed `subscribe`
//! ([`Presence::rooms_changed`]) is not asked about.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::{Presence, Slot};
use crate::domain::SessionId;
use crate::domain::presence::{self as transition, Change, Transitions};
use crate::store::{StoreError, UserKey, outcome};

/// A transition an unsure registration made that nobody announced, and
/// the socket it belongs to (not told of its own user's transition).
pub(super) type Owed = (SessionId, (UserKey, Transitions));

impl Presence {
    /// A registration of `slot` failed: it is resolved once the database
    /// answers (see the module docs), by the one resolver task, started
    /// here unless it runs.
    pub(super) fn registration_failed(self: &Arc<Self>, slot: &Slot, error: &StoreError) {
        slot.unsure.store(true, Ordering::Release);
        if self.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        let p = self.clone();
        // Opens the breaker on an outage: asked again once its probe (outside
        // the pool) finds the database answering.
        let error = error.not_known();
        self.tasks.spawn(async move {
            p.breaker.failed(&error).await;
            p.resolve_until_sure().await;
        });
    }

    /// Resolves every unsure slot, once the database answers, until none is
    /// left (a storm during an outage leaves thousands: one task, one pass
    /// each time the database answers). Gives up at shutdown or after
    /// [`outcome::once_answering`]'s limit; the heartbeat goes on asking.
    async fn resolve_until_sure(self: &Arc<Self>) {
        loop {
            let stop = self.tasks.child_token();
            let done = outcome::once_answering(&self.breaker, stop, || async {
                let (owed, all_sure) = {
                    let _shared = self.sync.read().await;
                    resolve_all(self).await
                };
                self.announce_owed(owed).await;
                match all_sure {
                    true => Ok(()),
                    false => Err(StoreError::Unavailable(
                        "a failed registration cannot be asked about yet".into(),
                    )),
                }
            })
            .await;
            self.resolving.store(false, Ordering::Release);
            if done.is_none() {
                return;
            }
            // A registration that failed after the pass and saw this task
            // running did not start another one.
            let unsure = !self.departed_unsure().is_empty()
                || self
                    .slots()
                    .values()
                    .any(|s| s.unsure.load(Ordering::Acquire));
            if !unsure || self.resolving.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }

    /// Announces what resolved slots owe.
    pub(super) async fn announce_owed(self: &Arc<Self>, owed: Vec<Owed>) {
        for (id, (user, changes)) in owed {
            self.publish(&user, changes, Some(id)).await;
        }
    }

    /// Sockets that left while their registration was unsure: still owed
    /// an answer (their user may be online through them, and stay online
    /// through its other sockets).
    pub(super) fn departed_unsure(&self) -> MutexGuard<'_, Vec<(SessionId, Arc<Slot>)>> {
        self.departed_unsure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Resolves the slots whose registration failed: what they owe, and
/// `false` when the database did not answer for one of them (the rest
/// stay unsure). The caller holds `sync`.
pub(super) async fn resolve_all(p: &Presence) -> (Vec<Owed>, bool) {
    let mut slots: Vec<(SessionId, Arc<Slot>)> = p
        .slots()
        .iter()
        .filter(|(_, s)| s.unsure.load(Ordering::Acquire))
        .map(|(id, s)| (*id, s.clone()))
        .collect();
    slots.extend(p.departed_unsure().iter().cloned());
    let mut owed = Vec::new();
    let mut all_sure = true;
    for (id, slot) in slots {
        match resolve(p, &slot).await {
            Ok(Some(change)) => owed.push((id, change)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "presence: cannot ask about a failed registration; will retry");
                all_sure = false;
                break;
            }
        }
    }
    p.departed_unsure()
        .retain(|(_, s)| s.unsure.load(Ordering::Acquire));
    (owed, all_sure)
}

/// The transitions an unsure registration of `slot` made and nobody
/// announced; the slot is sure afterwards. `None` when the slot was sure
/// (resolved already) or the registration changed nothing that still
/// holds. The caller holds `sync`.
async fn resolve(p: &Presence, slot: &Slot) -> Result<Option<(UserKey, Transitions)>, StoreError> {
    if !slot.unsure.load(Ordering::Acquire) {
        return Ok(None);
    }
    let entry = slot.entry().clone();
    let user = entry.user();
    let made = p
        .store
        .presence_made_by(&user, &entry.socket_id, slot.registered_at)
        .await?;
    slot.unsure.store(false, Ordering::Release);
    let changes = Transitions {
        user: made.online_since.map(|at| Change::Online {
            role: entry.role.clone(),
            at,
        }),
        rooms: made
            .rooms
            .iter()
            .map(|room| transition::entered(room, &entry.role, slot.registered_at))
            .collect(),
        ..Transitions::default()
    };
    Ok((!changes.is_empty()).then_some((user, changes)))
}
