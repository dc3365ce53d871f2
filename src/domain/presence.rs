//! The presence state machine of one user, free of I/O.
//!
//! The store runs these functions inside a transaction that holds the
//! user's row lock and writes back the state they return, so a transition
//! (and its event) happens in exactly one transaction on exactly one node.
//!
//! ```text
//!   offline ──first socket registered──▶ online
//!   online  ──no socket left for `grace` (or only dead nodes' sockets)──▶ offline
//! ```
//!
//! The same machine runs for each (user, entity room) pair, counting the
//! user's sockets in that room: online is "in the room" (`presence:joined`),
//! offline is "gone from it" (`presence:left`). The store keeps a row per
//! pair only while the user is in the room, under the same user row lock.

/// The stored state of one user (the `presence_users` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPresence {
    pub online: bool,
    /// When the user came online, ms since the epoch.
    pub since: i64,
    /// When a socket of the user last left; `None` since coming online.
    pub left_at: Option<i64>,
}

impl UserPresence {
    /// A user never seen before.
    pub const OFFLINE: Self = Self {
        online: false,
        since: 0,
        left_at: None,
    };
}

/// A transition to announce to the user's company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `user:online { userId, role, at }`.
    Online { role: String, at: i64 },
    /// `user:offline { userId, at, duration }`: `at` is when the last
    /// connection ended, `duration` how long the user was online (ms).
    Offline { at: i64, duration: i64 },
}

/// A transition of one user in one entity room: `Online` is announced as
/// `presence:joined { room, userId, role, at }`, `Offline` as
/// `presence:left { room, userId, at, duration }`, to that room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomChange {
    pub room: String,
    pub change: Change,
}

/// What one store operation changed for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transitions {
    /// `user:online` / `user:offline`, to the company.
    pub user: Option<Change>,
    /// With a `user:offline`: the company's online users counted by the
    /// same transaction after it, up to the limit asked for (one more means
    /// "above"). Departures of other transactions not committed yet still
    /// count, so when departures race this is never below the count right
    /// after this one in commit order (a count read after the commit would
    /// already miss the departures that committed since).
    pub company_online: Option<i64>,
    /// `presence:joined` / `presence:left`, each to its room.
    pub rooms: Vec<RoomChange>,
    /// A departure left the user, or one of its rooms, without sockets:
    /// the caller settles the user after the grace period.
    pub settle: bool,
}

impl Transitions {
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.rooms.is_empty() && !self.settle
    }
}

/// A socket of the user was registered at `now`.
pub fn join(current: UserPresence, role: &str, now: i64) -> (UserPresence, Option<Change>) {
    if current.online {
        return (current, None);
    }
    let next = UserPresence {
        online: true,
        since: now,
        left_at: None,
    };
    let change = Change::Online {
        role: role.to_string(),
        at: now,
    };
    (next, Some(change))
}

/// The user's first socket entered `room` at `now`: the store found no
/// state row for the pair (absent = not in the room) and inserted one,
/// in the room since `now` with no departure (what [`join`] makes of
/// [`UserPresence::OFFLINE`]).
pub fn entered(room: &str, role: &str, now: i64) -> RoomChange {
    RoomChange {
        room: room.to_string(),
        change: Change::Online {
            role: role.to_string(),
            at: now,
        },
    }
}

/// Sockets of the user on a node that stopped heartbeating were removed;
/// `last_heartbeat` is the latest sign of life among them, and counts as
/// the moment they left.
pub fn reap(current: UserPresence, last_heartbeat: i64) -> UserPresence {
    UserPresence {
        left_at: Some(
            current
                .left_at
                .map_or(last_heartbeat, |l| l.max(last_heartbeat)),
        ),
        ..current
    }
}

/// Settles one (user, entity room) state at `now`: `reaped` is the last
/// heartbeat of the user's dead-node sockets just removed from the room,
/// `sockets` how many live sockets of the user are still in it.
pub fn settle_room(
    stored: UserPresence,
    reaped: Option<i64>,
    sockets: i64,
    now: i64,
    grace_ms: i64,
) -> (UserPresence, Option<Change>) {
    let current = match reaped {
        Some(last) => reap(stored, last),
        None => stored,
    };
    settle(current, sockets, now, grace_ms)
}

/// Decides whether the user goes offline at `now`, given how many live
/// sockets it still has. The user goes offline only when it has none and
/// the last one left at least `grace_ms` ago, so a reconnect within the
/// grace period (on any node) is no offline/online flap.
pub fn settle(
    current: UserPresence,
    sockets: i64,
    now: i64,
    grace_ms: i64,
) -> (UserPresence, Option<Change>) {
    if !current.online || sockets > 0 {
        return (current, None);
    }
    // Online without sockets and no recorded departure cannot come from the
    // normal paths; start the grace period now rather than never.
    let Some(left_at) = current.left_at else {
        let next = UserPresence {
            left_at: Some(now),
            ..current
        };
        return (next, None);
    };
    if now - left_at < grace_ms {
        return (current, None);
    }
    let at = left_at.max(current.since);
    let next = UserPresence {
        online: false,
        ..current
    };
    let change = Change::Offline {
        at,
        duration: at - current.since,
    };
    (next, Some(change))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 5_000;

    fn online(since: i64, left_at: Option<i64>) -> UserPresence {
        UserPresence {
            online: true,
            since,
            left_at,
        }
    }

    #[test]
    fn first_socket_brings_the_user_online_once() {
        let (state, change) = join(UserPresence::OFFLINE, "operator", 100);
        assert_eq!(state, online(100, None));
        assert_eq!(
            change,
            Some(Change::Online {
                role: "operator".into(),
                at: 100
            })
        );
        // A second socket (another tab, another node) changes nothing.
        let (again, change) = join(state, "operator", 200);
        assert_eq!(again, state);
        assert_eq!(change, None);
    }

    #[test]
    fn offline_only_without_sockets_and_after_the_grace_period() {
        let state = online(1_000, Some(10_000));
        // Still has a socket: stays online whatever the time.
        assert_eq!(settle(state, 1, 99_000, GRACE), (state, None));
        // No socket, but within the grace period.
        assert_eq!(settle(state, 0, 14_999, GRACE), (state, None));
        // Grace passed: offline, `at` = when the last socket left.
        let (next, change) = settle(state, 0, 15_000, GRACE);
        assert!(!next.online);
        assert_eq!(
            change,
            Some(Change::Offline {
                at: 10_000,
                duration: 9_000
            })
        );
        // Settling an offline user again emits nothing.
        assert_eq!(settle(next, 0, 20_000, GRACE), (next, None));
    }

    #[test]
    fn a_reconnect_within_grace_is_no_flap() {
        // Left at 10 s, came back at 12 s (join on an online user: no event),
        // then the grace timer of the first departure fires at 15 s.
        let state = online(1_000, Some(10_000));
        let (state, change) = join(state, "operator", 12_000);
        assert_eq!(change, None);
        assert_eq!(settle(state, 1, 15_000, GRACE).1, None);
    }

    #[test]
    fn a_later_departure_restarts_the_grace_period() {
        // Two tabs: one left at 10 s, the other at 13 s; the first timer
        // (15 s) must not take the user offline, the second (18 s) does.
        let state = online(1_000, Some(13_000));
        assert_eq!(settle(state, 0, 15_000, GRACE).1, None);
        assert!(settle(state, 0, 18_000, GRACE).1.is_some());
    }

    #[test]
    fn dead_node_sockets_count_as_gone_since_their_last_heartbeat() {
        let state = reap(online(1_000, None), 50_000);
        assert_eq!(state.left_at, Some(50_000));
        // A later recorded departure is kept.
        assert_eq!(
            reap(online(1_000, Some(60_000)), 50_000).left_at,
            Some(60_000)
        );
        let (_, change) = settle(state, 0, 400_000, GRACE);
        assert_eq!(
            change,
            Some(Change::Offline {
                at: 50_000,
                duration: 49_000
            })
        );
    }

    #[test]
    fn online_without_a_departure_starts_the_grace_period() {
        let (state, change) = settle(online(1_000, None), 0, 9_000, GRACE);
        assert_eq!(change, None);
        assert_eq!(state.left_at, Some(9_000));
        assert!(settle(state, 0, 14_000, GRACE).1.is_some());
    }

    #[test]
    fn duration_is_never_negative() {
        // Clock skew between nodes: a departure stamped before `since`.
        let (_, change) = settle(online(10_000, Some(9_000)), 0, 20_000, GRACE);
        assert_eq!(
            change,
            Some(Change::Offline {
                at: 10_000,
                duration: 0
            })
        );
    }
}
