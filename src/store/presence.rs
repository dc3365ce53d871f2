//! The presence part of the storage interface (SPEC §7).
//!
//! Presence lives in the database so that every node counts every node's
//! sockets: one row per socket (owned by the node process serving it, kept
//! alive by that process's heartbeat), the entity rooms each socket is in,
//! one state row per user, and one state row per (user, entity room) while
//! the user is in the room. Their transitions (see
//! [`crate::domain::presence`]) run under the user row's lock, so
//! exactly one transaction, on one node, performs each online/offline and
//! joined/left transition. Lock order everywhere: user rows (sorted) before
//! socket rows; (user, room) rows are only written under their user's lock.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
use crate::domain::presence::Transitions;

/// A connected socket as presence records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEntry {
    pub company_id: String,
    pub user_id: String,
    pub role: String,
    pub socket_id: String,
    /// The node process serving the socket (see `Presence::node`).
    pub node_id: String,
    /// Entity rooms the socket is subscribed to (logical names).
    pub rooms: Vec<String>,
    /// When the socket connected, ms since the epoch.
    pub since: i64,
}

impl SocketEntry {
    /// The socket's user.
    pub fn user(&self) -> UserKey {
        UserKey {
            company_id: self.company_id.clone(),
            user_id: self.user_id.clone(),
        }
    }
}

/// One user of a company.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    pub company_id: String,
    pub user_id: String,
}

/// One line of `presence:list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresentUser {
    pub user_id: String,
    pub role: String,
    /// Sockets of the user (in the room, for an entity room).
    pub connections: i64,
    /// Online since (for an entity room: in the room since), ms since the epoch.
    pub since: i64,
}

#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Registers a socket (or refreshes it: idempotent, rooms replaced) with
    /// heartbeat `now`. Returns `user: Online` when this made its user
    /// online, and a joined room change for each of the socket's rooms the
    /// user was not in. No extra statement when `socket.rooms` is empty.
    async fn presence_join(
        &self,
        socket: &SocketEntry,
        now: i64,
    ) -> Result<Transitions, StoreError>;

    /// Removes a socket and records that one of its user's sockets left at
    /// `now`, in the company and in each room the socket was in. `in_rooms`
    /// says whether the caller recorded entity rooms for the socket (when
    /// not, its room rows are not consulted). Returns `true` when the user
    /// has no socket left, or none in one of those rooms (the caller then
    /// settles the user after the grace period).
    async fn presence_leave(
        &self,
        user: &UserKey,
        socket_id: &str,
        in_rooms: bool,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// [`Self::presence_join`] for several new sockets without entity rooms
    /// (a registrar's batch): one answer per socket, in order; of a user's
    /// sockets, the first makes the user online. In one transaction where
    /// the store has more than one writer; one by one otherwise.
    async fn presence_join_many(
        &self,
        sockets: &[SocketEntry],
        now: i64,
    ) -> Vec<Result<Transitions, StoreError>> {
        let mut answers = Vec::with_capacity(sockets.len());
        for socket in sockets {
            answers.push(self.presence_join(socket, now).await);
        }
        answers
    }

    /// [`Self::presence_leave`] for several sockets recorded without entity
    /// rooms (`in_rooms` false): one answer per socket, in order; `true`
    /// for the departure that left its user without sockets (the user's
    /// last in the batch). In one transaction where the store has more
    /// than one writer; one by one otherwise.
    async fn presence_leave_many(
        &self,
        sockets: &[(UserKey, String)],
        now: i64,
    ) -> Vec<Result<bool, StoreError>> {
        let mut answers = Vec::with_capacity(sockets.len());
        for (user, socket_id) in sockets {
            answers.push(self.presence_leave(user, socket_id, false, now).await);
        }
        answers
    }

    /// Adds and removes entity-room subscriptions of a registered socket
    /// (`socket.rooms` is not read): joined room changes for rooms its user
    /// entered, `settle` when a room lost the user's last socket. Nothing
    /// happens for a socket that is not registered.
    async fn presence_rooms(
        &self,
        socket: &SocketEntry,
        joined: &[String],
        left: &[String],
        now: i64,
    ) -> Result<Transitions, StoreError>;

    /// Removes the user's sockets whose heartbeat is older than
    /// `stale_before` (their node died), then takes the user offline if it
    /// has no socket left and the last one left `grace_ms` ago or more, and
    /// out of each entity room by the same rule.
    /// A `user:offline` also counts the company's online users, up to
    /// `count_up_to` + 1 ([`Transitions::company_online`]).
    async fn presence_settle(
        &self,
        user: &UserKey,
        stale_before: i64,
        now: i64,
        grace_ms: i64,
        count_up_to: i64,
    ) -> Result<Transitions, StoreError>;

    /// [`Self::presence_settle`] for several users at the same moment: one
    /// answer per user, in order (a user named twice is settled once, its
    /// later entries answer no change). Each `user:offline`'s count is the
    /// one settling the users one by one, in order, would have given. In
    /// one transaction where the store has more than one writer; one by
    /// one otherwise.
    async fn presence_settle_many(
        &self,
        users: &[UserKey],
        stale_before: i64,
        now: i64,
        grace_ms: i64,
        count_up_to: i64,
    ) -> Vec<Result<Transitions, StoreError>> {
        let mut answers = Vec::with_capacity(users.len());
        for user in users {
            let answer = self
                .presence_settle(user, stale_before, now, grace_ms, count_up_to)
                .await;
            answers.push(answer);
        }
        answers
    }

    /// Refreshes the heartbeat of every row of `node_id` (one UPDATE);
    /// returns how many rows the node has.
    async fn presence_heartbeat(&self, node_id: &str, now: i64) -> Result<u64, StoreError>;

    /// Removes the rows of `node_id` whose heartbeat is older than `before`
    /// as departures at `now`; returns their users (to settle after the
    /// grace period). `before = i64::MAX` removes all of them (shutdown).
    async fn presence_leave_node(
        &self,
        node_id: &str,
        before: i64,
        now: i64,
    ) -> Result<Vec<UserKey>, StoreError>;

    /// Users that may need [`Self::presence_settle`]: those with sockets
    /// older than `stale_before`, and online users (or users in an entity
    /// room) without sockets (there) whose last socket left before
    /// `left_before`. At most `limit`.
    async fn presence_unsettled(
        &self,
        stale_before: i64,
        left_before: i64,
        limit: i64,
    ) -> Result<Vec<UserKey>, StoreError>;

    /// Online users of the company (`room` = `None`), or the users in the
    /// entity room `room`, ordered by user id. Both include users whose last
    /// socket left less than the grace period ago (`connections: 0`): a user
    /// is listed from its online/joined transition to its offline/left one.
    async fn presence_list(
        &self,
        company_id: &str,
        room: Option<&str>,
    ) -> Result<Vec<PresentUser>, StoreError>;

    /// How many users of the company are online (as `presence_list`
    /// counts them), for the broadcast rule.
    async fn presence_online_count(&self, company_id: &str) -> Result<i64, StoreError>;

    /// What a registration of `socket_id` made that is still so: whether
    /// the user is online through it (a registration of that socket took
    /// it online), and the entity rooms it took the user into at
    /// `rooms_at` where the user still is. Asked after a registration
    /// whose outcome is unknown: it may have committed, and then its
    /// `user:online` and `presence:joined` are still owed.
    async fn presence_made_by(
        &self,
        user: &UserKey,
        socket_id: &str,
        rooms_at: i64,
    ) -> Result<MadeBy, StoreError>;
}

/// See [`PresenceStore::presence_made_by`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MadeBy {
    /// Online since then, through that socket's registration.
    pub online_since: Option<i64>,
    /// Rooms entered then, sorted.
    pub rooms: Vec<String>,
}
