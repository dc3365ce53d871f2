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
use socketioxide::{SocketIo, socket::Sid};

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
        if let Err(e) = self.operators(d).emit(&d.event_type, &args).await {
            tracing::warn!(error = %e, room = %d.room, "cluster broadcast failed; delivering on this node only");
            if let Err(e) = self.operators(d).local().emit(&d.event_type, &args).await {
                tracing::error!(error = %e, "local delivery failed");
            }
        }
    }

    async fn emit(&self, s: &Signal) {
        let to = || self.to(&s.company, &s.room, s.exclude);
        if let Err(e) = to().emit(s.event, &s.data).await {
            tracing::warn!(error = %e, room = %s.room, "cluster broadcast failed; signalling this node only");
            if let Err(e) = to().local().emit(s.event, &s.data).await {
                tracing::error!(error = %e, "local signal failed");
            }
        }
    }
}
