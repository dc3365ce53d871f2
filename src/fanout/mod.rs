//! Ephemeral delivery to rooms: what is delivered ([`Delivery`], a domain
//! event; [`Signal`], a one-body server message such as presence and
//! typing) and the [`Fanout`] that hands it to every transport's [`Hub`].
//!
//! Durable events do not go this way (they need a position per session:
//! see `replay`). Each transport registers one hub, which delivers to its
//! own connections across the cluster (socket.io's through the adapter).
//! A hub applies the receive rule: a delivery reaches, in its room, the
//! sessions whose role may receive the type, where a role room `role:X`
//! follows X's rules for everyone in it ([`crate::domain::receiving_role`]).

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::Value;

use crate::catalog::RoleSet;
use crate::domain::{Role, SessionId, receiving_role};

/// One event for one room.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub company: String,
    pub room: String,
    pub event_type: String,
    pub payload: Value,
    pub meta: Value,
    pub receive: RoleSet,
    /// The publishing session, which does not receive its own event.
    pub exclude: Option<SessionId>,
}

/// A server message with one body (presence, typing, documents) for one
/// room; every role receives it.
#[derive(Debug, Clone)]
pub struct Signal {
    pub company: String,
    pub room: String,
    pub event: &'static str,
    pub data: Value,
    /// A session that does not receive it (e.g. the one typing).
    pub exclude: Option<SessionId>,
}

/// One transport's delivery to its connections, on every node.
#[async_trait]
pub trait Hub: Send + Sync + 'static {
    async fn deliver(&self, d: &Delivery);
    async fn emit(&self, s: &Signal);
}

/// Every transport's hub. Built empty with the services; a transport
/// registers its hub once it exists (socket.io's after the engine is built).
#[derive(Default)]
pub struct Fanout {
    // std RwLock: read for a clone of the list, never held across an await.
    hubs: RwLock<Vec<Arc<dyn Hub>>>,
}

impl Fanout {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn register(&self, hub: Arc<dyn Hub>) {
        self.hubs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hub);
    }

    fn hubs(&self) -> Vec<Arc<dyn Hub>> {
        self.hubs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Hub for Fanout {
    async fn deliver(&self, d: &Delivery) {
        // In `role:X` everyone receives what X receives; elsewhere admins
        // receive everything, so a type admins may not receive there goes
        // to nobody.
        if !d.receive.contains(receiving_role(&d.room, Role::Admin)) {
            return;
        }
        crate::metrics::messages_out(&d.event_type, 1);
        for hub in self.hubs() {
            hub.deliver(d).await;
        }
    }

    async fn emit(&self, s: &Signal) {
        for hub in self.hubs() {
            hub.emit(s).await;
        }
    }
}
