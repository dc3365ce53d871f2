//! socket.io's [`Hub`]: deliveries to rooms through socketioxide's room
//! operators, so the adapter (local or Redis) reaches every node's sockets.
//!
//! Role filtering uses room operators, not a loop over sockets: a delivery
//! goes `to(room)` `except` the receive rooms
//! ([`crate::domain::receive_room`]) of roles that may not receive the type,
//! which every node applies to its own sockets. (The rule that a role room
//! `role:X` follows X's rules is applied before, in [`crate::fanout`].)
//!
//! With Redis down, socketioxide-redis fails the broadcast before delivering
//! locally; we then deliver to this node's sockets so a node keeps serving
//! its own clients (SPEC §9).

use std::str::FromStr;

use async_trait::async_trait;
use socketioxide::adapter::Adapter;
use socketioxide::operators::BroadcastOperators;
use socketioxide::{BroadcastError, SocketError, SocketIo, socket::Sid};

use crate::domain::{Role, SessionId, internal_room, receive_room};
use crate::fanout::{Delivery, Hub, Signal};

pub struct IoHub<A: Adapter> {
    io: SocketIo<A>,
}

impl<A: Adapter> IoHub<A> {
    pub fn new(io: SocketIo<A>) -> Self {
        Self { io }
    }

    fn to(&self, company: &str, room: &str, exclude: Option<SessionId>) -> BroadcastOperators<A> {
        let room = internal_room(company, room);
        let sender = exclude
            .and_then(|id| Sid::from_str(id.as_str()).ok())
            .and_then(|sid| self.io.get_socket(sid));
        match sender {
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
