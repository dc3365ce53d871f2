//! Delivery of events to rooms, with role filtering and the Redis fallback.
//!
//! Role filtering uses socket.io room operators, not a loop over sockets:
//! a delivery goes `to(room)` `except` the receive rooms
//! ([`crate::domain::receive_room`]) of roles that may not receive the type,
//! which every node applies to its own sockets. A delivery to a role room
//! `role:X` follows X's rules for everyone in it, admins included.
//!
//! With Redis down, socketioxide-redis fails the broadcast before delivering
//! locally; we then deliver to this node's sockets so a node keeps serving
//! its own clients (SPEC §9).

use async_trait::async_trait;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::operators::BroadcastOperators;
use socketioxide::{BroadcastError, SocketError, SocketIo, socket::Sid};

use crate::catalog::RoleSet;
use crate::domain::{Role, internal_room, receive_room, receiving_role};

/// One event for one room.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub company: String,
    pub room: String,
    pub event_type: String,
    pub payload: Value,
    pub meta: Value,
    pub receive: RoleSet,
    /// The publishing socket, which does not receive its own event.
    pub exclude: Option<Sid>,
}

/// A server signal with a single argument (presence, typing) for one room;
/// every role receives it.
#[derive(Debug, Clone)]
pub struct Signal {
    pub company: String,
    pub room: String,
    pub event: &'static str,
    pub data: Value,
    /// A socket that does not receive it (e.g. the one typing).
    pub exclude: Option<Sid>,
}

/// Hides the adapter type from code (HTTP handlers, timers) that only needs
/// to deliver.
#[async_trait]
pub trait Hub: Send + Sync + 'static {
    async fn deliver(&self, d: &Delivery);

    /// A single-argument signal (presence, typing, documents); every role
    /// that may be in the room gets it.
    async fn emit(&self, s: &Signal);
}

pub struct IoHub<A: Adapter> {
    io: SocketIo<A>,
}

impl<A: Adapter> IoHub<A> {
    pub fn new(io: SocketIo<A>) -> Self {
        Self { io }
    }

    fn to(&self, company: &str, room: &str, exclude: Option<Sid>) -> BroadcastOperators<A> {
        let room = internal_room(company, room);
        match exclude.and_then(|sid| self.io.get_socket(sid)) {
            Some(sender) => sender.to(room),
            None => self.io.to(room),
        }
    }

    fn operators(&self, d: &Delivery) -> BroadcastOperators<A> {
        let base = self.to(&d.company, &d.room, d.exclude);
        let excluded: Vec<String> = Role::ALL
            .into_iter()
            .filter(|r| !d.receive.contains(*r))
            .map(|r| receive_room(&d.company, r))
            .collect();
        if excluded.is_empty() {
            base
        } else {
            base.except(excluded)
        }
    }
}

#[async_trait]
impl<A: Adapter> Hub for IoHub<A> {
    async fn deliver(&self, d: &Delivery) {
        // In `role:X` everyone receives what X receives (see the module
        // docs); elsewhere admins receive everything.
        if !d.receive.contains(receiving_role(&d.room, Role::Admin)) {
            return;
        }
        crate::metrics::messages_out(&d.event_type, 1);
        send(
            || self.operators(d),
            &d.event_type,
            &(&d.payload, &d.meta),
            &d.room,
        )
        .await;
    }

    async fn emit(&self, s: &Signal) {
        send(
            || self.to(&s.company, &s.room, s.exclude),
            s.event,
            &s.data,
            &s.room,
        )
        .await;
    }
}

/// Emits through the cluster; if Redis fails before anything was
/// delivered, serves this node's sockets. Full socket buffers are counted.
async fn send<A: Adapter, T: serde::Serialize + ?Sized + Sync>(
    operators: impl Fn() -> BroadcastOperators<A>,
    event: &str,
    data: &T,
    room: &str,
) {
    match operators().emit(event, data).await {
        Ok(()) => {}
        Err(BroadcastError::Adapter(e)) => {
            crate::metrics::redis_error();
            tracing::warn!(error = %e, %room, "cluster broadcast failed; delivering on this node only");
            if let Err(e) = operators().local().emit(event, data).await {
                count_drops(&e);
            }
        }
        Err(e) => count_drops(&e),
    }
}

/// Sockets whose buffer was full lost this ephemeral event: counted, never
/// silent. (Durable events are never lost this way: see `crate::replay`.)
fn count_drops(e: &BroadcastError) {
    match e {
        BroadcastError::Socket(errors) => {
            let full = errors
                .iter()
                .filter(|e| matches!(e, SocketError::InternalChannelFull))
                .count();
            if full > 0 {
                crate::metrics::dropped_ephemeral(full as u64);
            }
        }
        other => tracing::error!(error = %other, "delivery failed"),
    }
}
