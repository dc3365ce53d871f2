//! This node's sockets in presence: registering one (`user:online`,
//! `presence:joined`), its entity-room changes, and its departure (a
//! settle after the grace period). See the module docs of [`super`] for
//! the ordering rules these follow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Presence, Slot, entity_rooms};
use crate::domain::{RoomName, SessionId, now_ms};
use crate::session::Session;
use crate::store::SocketEntry;

impl Presence {
    /// Registers a socket; announces `user:online` to the company (except to
    /// this socket) when it is its user's first socket anywhere.
    pub async fn join(self: &Arc<Self>, session: &Session, rooms: &[RoomName]) {
        if !self.enabled {
            return;
        }
        let p = self;
        let socket_id = session.id.to_string();
        let identity = session.identity();
        let entry = SocketEntry {
            company_id: identity.company_id,
            user_id: identity.user_id,
            role: identity.role.to_string(),
            socket_id: socket_id.clone(),
            node_id: p.node.clone(),
            rooms: entity_rooms(rooms),
            since: session.connected_at,
        };
        let shared = p.sync.read().await;
        if p.tasks.is_draining() {
            // The node is leaving and `leave_node` removes its rows: a row
            // written after it would keep the user online with no
            // heartbeat behind it until another node reaps it.
            return;
        }
        let registered_at = now_ms();
        let (slot, op) = {
            let mut slots = p.slots();
            // Checked under the lock `leave` takes first: a socket that is
            // already gone is never registered.
            if session.is_closing() {
                return;
            }
            let slot = Arc::new(Slot {
                entry: Mutex::new(entry.clone()),
                op: Arc::new(tokio::sync::Mutex::new(false)),
                unsure: AtomicBool::new(false),
                registered_at,
            });
            let Ok(op) = slot.op.clone().try_lock_owned() else {
                return; // a fresh mutex is always free
            };
            slots.insert(session.id, slot.clone());
            (slot, op)
        };
        let result = p.registrar.join(&entry, registered_at).await;
        if let Err(e) = &result {
            // Marked before `sync` is released: the next heartbeat resolves
            // it before it repairs any drift.
            p.registration_failed(&slot, e);
        }
        drop((op, shared));
        match result {
            Ok(changes) => p.publish(&entry.user(), changes, Some(session.id)).await,
            Err(e) => tracing::warn!(
                error = %e,
                "presence: cannot register a socket; asking whether it took, and the heartbeat retries"
            ),
        }
    }

    /// Unregisters a socket; settles its user after the grace period when it
    /// was the user's last socket. Ends what the socket was typing.
    pub async fn leave(self: &Arc<Self>, id: SessionId) {
        if !self.enabled {
            return;
        }
        self.socket_gone(id).await;
        let p = self;
        // Shared before the slot goes: the heartbeat never sees a socket gone
        // from this node whose row is still being deleted (no false drift).
        let _shared = p.sync.read().await;
        let Some(slot) = p.slots().remove(&id) else {
            return;
        };
        if slot.unsure.load(Ordering::Acquire) {
            p.departed_unsure().push((id, slot.clone()));
        }
        if p.tasks.is_draining() {
            return; // `leave_node` removes all of this node's rows at once
        }
        let mut left = slot.op.lock().await;
        *left = true;
        // Read under `op`: a room change that got there first is in the entry.
        let (user, in_rooms) = {
            let entry = slot.entry();
            (entry.user(), !entry.rooms.is_empty())
        };
        let result = p.registrar.leave(&user, id.as_str(), in_rooms).await;
        match result {
            Ok(true) => p.settle_later(user),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "presence: cannot unregister a socket; the heartbeat will remove it")
            }
        }
    }

    /// Records entity-room subscriptions of a registered socket; announces
    /// `presence:joined` (except to this socket) for rooms its user entered,
    /// and settles the user later when it left a room's last socket.
    pub async fn rooms_changed(
        self: &Arc<Self>,
        id: SessionId,
        joined: &[RoomName],
        left: &[RoomName],
    ) {
        if !self.enabled {
            return;
        }
        let (joined, left) = (entity_rooms(joined), entity_rooms(left));
        if joined.is_empty() && left.is_empty() {
            return;
        }
        let p = self;
        let Some(slot) = p.slots().get(&id).cloned() else {
            return;
        };
        let entry = {
            let mut entry = slot.entry();
            entry.rooms.retain(|r| !left.contains(r));
            for room in &joined {
                if !entry.rooms.contains(room) {
                    entry.rooms.push(room.clone());
                }
            }
            entry.clone()
        };
        let shared = p.sync.read().await;
        let gone = slot.op.lock().await;
        if *gone {
            return;
        }
        // Later than the registration's time, so the rooms this enters are
        // never taken for the registration's own ([`super::unsure`]).
        let now = now_ms().max(slot.registered_at + 1);
        let result = p.store.presence_rooms(&entry, &joined, &left, now).await;
        drop((gone, shared));
        match result {
            Ok(changes) => p.publish(&entry.user(), changes, Some(id)).await,
            Err(e) => {
                p.rooms_drifted.store(true, Ordering::Release);
                tracing::warn!(error = %e, "presence: cannot record room subscriptions; the heartbeat registers the socket again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Identity, Role};
    use crate::fanout::Fanout;
    use crate::limits::TokenBucket;
    use crate::session::{Opening, Rates};
    use crate::store::Store;
    use crate::tasks::Tasks;
    use crate::throttle::users::UserRates;

    fn session(user: &str, tasks: &Tasks) -> Arc<Session> {
        let identity = Identity {
            user_id: user.into(),
            company_id: "c".into(),
            role: Role::Operator,
            permissions: Vec::new(),
            expires_at: i64::MAX,
        };
        let opening = Opening {
            id: SessionId::new(),
            transport: "socketio",
            identity,
            device_id: None,
            connected_at: now_ms(),
            ip: None,
            rates: Rates {
                session: TokenBucket::new(20.0, 40.0),
                user: UserRates::new(20.0, 40.0).bucket("c", user),
            },
        };
        Session::new(opening, tasks.child_token()).0
    }

    #[tokio::test]
    async fn a_socket_registering_while_the_node_drains_writes_no_row() {
        let store = crate::store::scratch_sqlite().await;
        let tasks = Tasks::new();
        let settings = super::super::Settings {
            enabled: true,
            node_id: "n".into(),
            grace: Duration::from_secs(5),
            ttl: Duration::from_secs(60),
            broadcast_max: 500,
        };
        let presence = Presence::new(settings, store.clone(), Fanout::new(), tasks.clone());
        let connections = |store: Arc<dyn Store>| async move {
            let listed = store.presence_list("c", None).await.expect("list");
            listed.iter().map(|u| u.connections).sum::<i64>()
        };
        presence.join(&session("u1", &tasks), &[]).await;
        assert_eq!(connections(store.clone()).await, 1);

        tasks.begin_draining();
        presence.join(&session("u2", &tasks), &[]).await;
        assert_eq!(
            connections(store.clone()).await,
            1,
            "no row for a socket registering after shutdown began"
        );
    }
}
