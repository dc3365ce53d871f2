//! Announcing presence transitions, after the transaction that made them
//! committed: `user:online` / `user:offline` to the company,
//! `presence:joined` / `presence:left` to the entity room.

use std::sync::Arc;

use serde_json::json;

use super::Presence;
use crate::domain::presence::{Change, RoomChange, Transitions};
use crate::domain::{RoomName, SessionId};
use crate::fanout::{Hub, Signal};
use crate::store::UserKey;

impl Presence {
    /// Announces what a store operation changed, after its commit: arrivals
    /// company first then rooms, departures rooms first then company; and
    /// schedules a settle when a departure asks for one. `exclude` is the
    /// socket that caused an arrival (it is not told about itself).
    pub(super) async fn publish(
        self: &Arc<Self>,
        user: &UserKey,
        changes: Transitions,
        exclude: Option<SessionId>,
    ) {
        let Transitions {
            user: change,
            company_online,
            rooms,
            settle,
        } = changes;
        let (before, after) = match change {
            Some(online @ Change::Online { .. }) => (Some(online), None),
            other => (None, other),
        };
        if let Some(change) = before {
            self.announce(user, change, company_online, exclude).await;
        }
        for room in rooms {
            self.announce_room(user, room, exclude).await;
        }
        if let Some(change) = after {
            self.announce(user, change, company_online, exclude).await;
        }
        if settle {
            self.settle_later(user.clone());
        }
    }

    /// `counted`: the company's online users counted with a departure
    /// ([`Transitions::company_online`]).
    async fn announce(
        self: &Arc<Self>,
        user: &UserKey,
        change: Change,
        counted: Option<i64>,
        exclude: Option<SessionId>,
    ) {
        let online = matches!(change, Change::Online { .. });
        let (event, data) = match change {
            Change::Online { role, at } => (
                "user:online",
                json!({ "userId": user.user_id, "role": role, "at": at }),
            ),
            Change::Offline { at, duration } => (
                "user:offline",
                json!({ "userId": user.user_id, "at": at, "duration": duration }),
            ),
        };
        tracing::debug!(company = %user.company_id, user = %user.user_id, event, "presence");
        // Transitions are decided once cluster-wide (by the store), so each
        // reaches the webhooks once.
        if let Some(hooks) = self.webhooks.get() {
            hooks.offer_lifecycle(&user.company_id, event, &data);
        }
        let signal = Signal {
            company: user.company_id.clone(),
            room: RoomName::company().as_str().to_string(),
            event,
            data,
            exclude,
        };
        // Per-user frame or batch: see `broadcast`.
        self.route_company(&user.company_id, online, counted, signal)
            .await;
    }

    /// `presence:joined { room, userId, role, at }` or
    /// `presence:left { room, userId, at, duration }` to the room.
    async fn announce_room(&self, user: &UserKey, room: RoomChange, exclude: Option<SessionId>) {
        let RoomChange { room, change } = room;
        let (event, data) = match change {
            Change::Online { role, at } => (
                "presence:joined",
                json!({ "room": room, "userId": user.user_id, "role": role, "at": at }),
            ),
            Change::Offline { at, duration } => (
                "presence:left",
                json!({ "room": room, "userId": user.user_id, "at": at, "duration": duration }),
            ),
        };
        tracing::debug!(company = %user.company_id, user = %user.user_id, room = %room, event, "presence");
        let signal = Signal {
            company: user.company_id.clone(),
            room,
            event,
            data,
            exclude,
        };
        self.fanout.emit(&signal).await;
    }
}
