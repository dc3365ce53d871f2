//! Announcing commands: `command_status` for each transition, the `command`
//! event for the target room, and the timeout sweep.

use super::{Commands, SWEEP_BATCH, SWEEP_INTERVAL, view};
use crate::catalog::RoleSet;
use crate::catalog::commands::STATUS_EVENT;
use crate::domain::{RoomName, Targets, now_ms};
use crate::error::AppResult;
use crate::events::Draft;
use crate::fanout::Delivery;
use crate::store::commands::StoredCommand;

impl Commands {
    /// Publishes the command's current status as `command_status` (durable)
    /// to `command:{id}` and the sender's user room. The transition is
    /// already stored: a failure here is logged, and the status stays
    /// readable through the HTTP API.
    pub(super) async fn announce(&self, c: &StoredCommand) {
        if let Err(e) = self.try_announce(c).await {
            tracing::warn!(error = %e, command = %c.id, status = %c.status, "command_status not published");
        }
    }

    async fn try_announce(&self, c: &StoredCommand) -> AppResult<()> {
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
                payload: view::status(c),
                priority: None,
                source: "commands".into(),
                publisher: None,
                // One status event per transition, whoever retries.
                idempotency_key: Some(format!("cmd:{}:{}", c.id, c.status)),
            },
        )?;
        let appended = self
            .publisher
            .persist(std::slice::from_ref(&prepared))
            .await?
            .pop()
            .flatten();
        self.publisher
            .dispatch(&prepared, appended.as_ref(), None)
            .await;
        Ok(())
    }

    pub(super) async fn sweep_forever(&self) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.store.expire_commands(now_ms(), SWEEP_BATCH).await {
                Ok(expired) => {
                    for c in expired {
                        self.announce(&c).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "command timeout sweep failed; retrying");
                }
            }
        }
    }
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
