//! Announcing commands: `command_status` for each transition, the `command`
//! event for the target room, and the sweep that times commands out and
//! announces what a node that died (or lost the log) left unannounced.

use super::{Commands, SWEEP_BATCH, SWEEP_INTERVAL, view};
use crate::catalog::RoleSet;
use crate::catalog::commands::STATUS_EVENT;
use crate::domain::command::Status;
use crate::domain::{RoomName, Targets, now_ms};
use crate::error::AppResult;
use crate::events::Draft;
use crate::fanout::Delivery;
use crate::store::commands::{ANNOUNCE_GRACE_MS, StoredCommand};

impl Commands {
    /// Publishes `command_status` (durable) to `command:{id}` and the
    /// sender's user room for every status `c` reached that is not
    /// announced yet, in order, then records that. The transition is
    /// already stored: if publishing fails, or this node dies first,
    /// `announce_due` stays set and a sweep on some node announces it.
    pub(super) async fn announce(&self, c: &StoredCommand) {
        self.announce_missing(c, Recovery::No).await;
    }

    async fn announce_missing(&self, c: &StoredCommand, recovery: Recovery) {
        for status in c.unannounced() {
            if let Err(e) = self.publish_status(c, status, recovery).await {
                tracing::warn!(error = %e, command = %c.id, %status,
                    "command_status not published; the announce sweep retries");
                return;
            }
        }
        if let Err(e) = self
            .store
            .mark_announced(&c.company_id, &c.id, c.status.rank())
            .await
        {
            // The sweep publishes again; the idempotency keys make it a no-op.
            tracing::debug!(error = %e, command = %c.id, "announced status not recorded");
        }
    }

    async fn publish_status(
        &self,
        c: &StoredCommand,
        status: Status,
        recovery: Recovery,
    ) -> AppResult<()> {
        // `spec`, not `client_spec`: the server's own type.
        let spec = self.publisher.spec(STATUS_EVENT)?;
        let mut rooms = Targets::one(RoomName::parse(&format!("command:{}", c.id))?);
        if let Some(user) = &c.sender {
            rooms.push(RoomName::user(user));
        }
        let prepared = self.publisher.prepare(
            spec,
            Draft {
                company: &c.company_id,
                event_type: STATUS_EVENT,
                rooms,
                payload: view::status(c, status),
                priority: None,
                source: "commands".into(),
                publisher: None,
                // One status event per transition, whoever retries.
                idempotency_key: Some(format!("cmd:{}:{}", c.id, status)),
            },
        )?;
        let appended = self
            .publisher
            .persist(std::slice::from_ref(&prepared), None)
            .await?
            .pop()
            .flatten();
        if let (Recovery::Yes, Some(a)) = (recovery, &appended)
            && a.duplicate
        {
            // A node that died between append and broadcast: the log has the
            // event but other nodes may never have heard of it. Members
            // already past its offset ignore the repeat.
            self.publisher.announce(&prepared, a);
        }
        self.publisher.dispatch(&prepared, None).await;
        Ok(())
    }

    pub(super) async fn sweep_forever(&self) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            match self.store.expire_commands(now, SWEEP_BATCH).await {
                Ok(expired) => {
                    for c in expired {
                        self.announce(&c).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "command timeout sweep failed; retrying");
                }
            }
            let retry_at = now.saturating_add(ANNOUNCE_GRACE_MS);
            match self
                .store
                .claim_unannounced(now, retry_at, SWEEP_BATCH)
                .await
            {
                Ok(due) => {
                    for c in due {
                        self.announce_missing(&c, Recovery::Yes).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "command announce sweep failed; retrying");
                }
            }
        }
    }
}

/// Whether an announcement finishes what another node (or an earlier
/// attempt) may have half done.
#[derive(Clone, Copy)]
enum Recovery {
    No,
    Yes,
}

/// The `command` event for the target room.
pub(super) fn delivery(c: &StoredCommand) -> Delivery {
    Delivery {
        company: c.company_id.clone(),
        room: c.target.clone(),
        event_type: "command".into(),
        payload: view::delivery(c),
        meta: view::delivery_meta(c),
        receive: RoleSet::ALL,
        exclude: None,
    }
}
