//! This node's socket registrations and departures, and its offline
//! decisions, in batches: the ones that arrive while a batch is in the
//! database go into the next one ([`crate::store::group`]), one
//! transaction each ([`crate::store::PresenceStore::presence_join_many`],
//! [`crate::store::PresenceStore::presence_leave_many`],
//! [`crate::store::PresenceStore::presence_settle_many`]: a reconnect
//! storm's grace timers end together).
//!
//! Only sockets without entity rooms are batched (every socket that
//! connects without `auth.offsets` for entity rooms, and leaves without
//! having subscribed to one); the others take their own transaction, as
//! their room transitions need. Joins and departures are separate queues:
//! a socket's departure waits for its registration to finish anyway (the
//! slot's `op` lock), and a reconnect storm's departures do not wait
//! behind its registrations, nor the other way round.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::now_ms;
use crate::domain::presence::Transitions;
use crate::store::group::Group;
use crate::store::{SocketEntry, Store, StoreError, UserKey};
use crate::tasks::Tasks;

/// Most sockets one batch carries.
const MAX_BATCH: usize = 512;

/// A batch that takes longer is given up ([`Group`]): its sockets' writes
/// fail, and the heartbeat's drift check registers or removes them again.
const BATCH_LIMIT: Duration = Duration::from_secs(5);

/// What an offline decision is measured against ([`Registrar::settle`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct SettleRule {
    /// `WS_PRESENCE_TTL`: sockets without a heartbeat for longer are removed.
    pub ttl_ms: i64,
    /// `WS_PRESENCE_GRACE_MS`.
    pub grace_ms: i64,
    /// A `user:offline` counts the company's online users up to this + 1.
    pub count_up_to: i64,
}

impl SettleRule {
    async fn settle_many(
        self,
        store: &dyn Store,
        users: &[UserKey],
    ) -> Vec<Result<Transitions, StoreError>> {
        let now = now_ms();
        store
            .presence_settle_many(
                users,
                now - self.ttl_ms,
                now,
                self.grace_ms,
                self.count_up_to,
            )
            .await
    }
}

pub(super) struct Registrar {
    store: Arc<dyn Store>,
    joins: Group<SocketEntry, Transitions>,
    leaves: Group<(UserKey, String), bool>,
    settles: Group<UserKey, Transitions>,
    rule: SettleRule,
}

impl Registrar {
    pub(super) fn new(store: Arc<dyn Store>, tasks: &Tasks, rule: SettleRule) -> Self {
        let joins = {
            let store = store.clone();
            Group::start(
                tasks,
                MAX_BATCH,
                BATCH_LIMIT,
                move |sockets: Vec<SocketEntry>| {
                    let store = store.clone();
                    async move { store.presence_join_many(&sockets, now_ms()).await }
                },
            )
        };
        let leaves = {
            let store = store.clone();
            Group::start(
                tasks,
                MAX_BATCH,
                BATCH_LIMIT,
                move |sockets: Vec<(UserKey, String)>| {
                    let store = store.clone();
                    async move { store.presence_leave_many(&sockets, now_ms()).await }
                },
            )
        };
        let settles = {
            let store = store.clone();
            Group::start(tasks, MAX_BATCH, BATCH_LIMIT, move |users: Vec<UserKey>| {
                let store = store.clone();
                async move { rule.settle_many(store.as_ref(), &users).await }
            })
        };
        Self {
            store,
            joins,
            leaves,
            settles,
            rule,
        }
    }

    /// [`crate::store::PresenceStore::presence_join`], in the next batch
    /// when the socket has no entity rooms (at the batch's time), else on
    /// its own at `at`.
    pub(super) async fn join(
        &self,
        entry: &SocketEntry,
        at: i64,
    ) -> Result<Transitions, StoreError> {
        if entry.rooms.is_empty() {
            if let Some(answer) = self.joins.call(entry.clone()).await {
                return answer;
            }
        }
        self.store.presence_join(entry, at).await
    }

    /// [`crate::store::PresenceStore::presence_leave`], in the next batch
    /// when the socket was recorded without entity rooms.
    pub(super) async fn leave(
        &self,
        user: &UserKey,
        socket_id: &str,
        in_rooms: bool,
    ) -> Result<bool, StoreError> {
        if !in_rooms {
            let item = (user.clone(), socket_id.to_string());
            if let Some(answer) = self.leaves.call(item).await {
                return answer;
            }
        }
        self.store
            .presence_leave(user, socket_id, in_rooms, now_ms())
            .await
    }

    /// [`crate::store::PresenceStore::presence_settle`], in the next batch
    /// (at the batch's time); on its own once the batches have stopped.
    pub(super) async fn settle(&self, user: &UserKey) -> Result<Transitions, StoreError> {
        if let Some(answer) = self.settles.call(user.clone()).await {
            return answer;
        }
        let mut answers = self
            .rule
            .settle_many(self.store.as_ref(), std::slice::from_ref(user))
            .await;
        answers.pop().unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "the settle gave no answer".to_string(),
            ))
        })
    }
}
