//! Delivery of events to rooms, with role filtering and the Redis fallback.
//!
//! Role filtering uses socket.io room operators, not a loop over sockets:
//! a delivery goes `to(room)` `except` the role rooms of roles that may not
//! receive the type, which every node applies to its own sockets.
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
use crate::domain::{Role, internal_room};

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

/// Hides the adapter type from code (HTTP handlers, timers) that only needs
/// to deliver.
#[async_trait]
pub trait Hub: Send + Sync + 'static {
    async fn deliver(&self, d: &Delivery);

    /// Emits `event` with the single argument `data` to a logical room of a
    /// company (e.g. `document:updated`), except the socket `exclude`. No
    /// role filtering: whoever may join the room may see what is sent there.
    /// The default drops it with an error (hubs that cannot reach sockets).
    async fn emit_room(
        &self,
        company: &str,
        room: &str,
        event: &str,
        data: &Value,
        exclude: Option<Sid>,
    ) {
        let _ = (company, data, exclude);
        tracing::error!(%room, %event, "this hub cannot emit to rooms");
    }
}

pub struct IoHub<A: Adapter> {
    io: SocketIo<A>,
}

impl<A: Adapter> IoHub<A> {
    pub fn new(io: SocketIo<A>) -> Self {
        Self { io }
    }

    fn operators(&self, d: &Delivery) -> BroadcastOperators<A> {
        let room = internal_room(&d.company, &d.room);
        let base = match d.exclude.and_then(|sid| self.io.get_socket(sid)) {
            Some(sender) => sender.to(room),
            None => self.io.to(room),
        };
        let excluded: Vec<String> = Role::ALL
            .into_iter()
            .filter(|r| !d.receive.contains(*r))
            .map(|r| internal_room(&d.company, &format!("role:{r}")))
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
        let args = (&d.payload, &d.meta);
        crate::metrics::messages_out(&d.event_type, 1);
        match self.operators(d).emit(&d.event_type, &args).await {
            Ok(()) => {}
            // Redis failed before anything was delivered: serve this node.
            Err(BroadcastError::Adapter(e)) => {
                crate::metrics::redis_error();
                tracing::warn!(error = %e, room = %d.room, "cluster broadcast failed; delivering on this node only");
                if let Err(e) = self.operators(d).local().emit(&d.event_type, &args).await {
                    count_drops(&e);
                }
            }
            Err(e) => count_drops(&e),
        }
    }

    async fn emit_room(
        &self,
        company: &str,
        room: &str,
        event: &str,
        data: &Value,
        exclude: Option<Sid>,
    ) {
        let target = internal_room(company, room);
        let operators = || match exclude.and_then(|sid| self.io.get_socket(sid)) {
            Some(sender) => sender.to(target.clone()),
            None => self.io.to(target.clone()),
        };
        if let Err(e) = operators().emit(event, data).await {
            tracing::warn!(error = %e, %room, "cluster broadcast failed; delivering on this node only");
            if let Err(e) = operators().local().emit(event, data).await {
                tracing::error!(error = %e, "local delivery failed");
            }
        }
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
