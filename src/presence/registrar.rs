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
//!
//! While the node shuts down, departures that would go alone are skipped:
//! `leave_node` removes every row of this node in one statement. Without
//! that, the departures still queued when the batches stopped went one
//! transaction each against rows already gone (1,482–5,441 of them after
//! a 10,000-client run).

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
    /// Says when the node shuts down.
    tasks: Tasks,
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
            tasks: tasks.clone(),
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
        if self.tasks.is_draining() {
            // `leave_node` removes the row; the user is settled by another
            // node's sweep.
            return Ok(false);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(id: &str) -> SocketEntry {
        SocketEntry {
            company_id: "c".into(),
            user_id: "u".into(),
            role: "operator".into(),
            socket_id: id.into(),
            node_id: "n".into(),
            rooms: Vec::new(),
            since: 1_000,
        }
    }

    async fn connections(store: &dyn Store) -> i64 {
        let listed = store.presence_list("c", None).await.expect("list");
        listed.iter().map(|u| u.connections).sum()
    }

    #[tokio::test]
    async fn a_departure_after_the_batches_stopped_writes_nothing_alone() {
        let store = crate::store::scratch_sqlite().await;
        let tasks = Tasks::new();
        let rule = SettleRule {
            ttl_ms: 60_000,
            grace_ms: 5_000,
            count_up_to: 500,
        };
        let registrar = Registrar::new(store.clone(), &tasks, rule);
        registrar.join(&socket("s1"), 1_000).await.expect("joins");
        assert_eq!(connections(store.as_ref()).await, 1);

        // Shutdown: draining, then the batches stop. A departure still on
        // its way writes nothing (the node's rows go all at once, in
        // `leave_node`) and asks for no settle.
        tasks.begin_draining();
        tasks.shutdown(Duration::from_secs(1)).await;
        let user = socket("s1").user();
        let left = registrar.leave(&user, "s1", false).await.expect("answered");
        assert!(!left, "no settle from a node that is leaving");
        assert_eq!(connections(store.as_ref()).await, 1, "left to leave_node");
    }
}
