//! PostgreSQL: the (user, entity room) part of presence, run inside the
//! transactions of [`super::postgres_presence`] after they locked the
//! user's `presence_users` row. Every write to `presence_user_rooms`
//! happens under that lock, so each joined/left transition is made by
//! exactly one transaction, as for the user's own online/offline state.
//!
//! A user's sockets in a room are counted from its few socket rows
//! (`presence_sockets_user`) joined to their room rows, never by scanning
//! the members of a possibly large room.

use std::collections::HashMap;

use sqlx::{Postgres, Transaction};

use super::StoreError;
use super::presence::UserKey;
use crate::domain::presence::{self as transition, RoomChange, UserPresence};

type Tx<'a> = Transaction<'a, Postgres>;

/// Inserts the state rows of the `rooms` the user was not in: the user's
/// first socket (`socket_id`) entered them at `now`. Returns their joined
/// changes.
pub(super) async fn enter(
    tx: &mut Tx<'_>,
    user: &UserKey,
    role: &str,
    socket_id: &str,
    rooms: &[String],
    now: i64,
) -> Result<Vec<RoomChange>, StoreError> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let mut entered: Vec<String> = sqlx::query_scalar(
        "INSERT INTO presence_user_rooms (company_id, user_id, room, since, entered_by)
         SELECT $1, $2, r, $4, $5 FROM unnest($3::text[]) AS r
         ON CONFLICT DO NOTHING RETURNING room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(rooms)
    .bind(now)
    .bind(socket_id)
    .fetch_all(&mut **tx)
    .await?;
    entered.sort();
    Ok(entered
        .iter()
        .map(|room| transition::entered(room, role, now))
        .collect())
}

/// Records that a socket of the user left `rooms` at `now`.
pub(super) async fn depart(
    tx: &mut Tx<'_>,
    user: &UserKey,
    rooms: &[String],
    now: i64,
) -> Result<(), StoreError> {
    if rooms.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE presence_user_rooms SET left_at = $4
         WHERE company_id = $1 AND user_id = $2 AND room = ANY($3)",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(rooms)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records that the socket (still registered, about to go) left each of
/// its rooms at `now`; returns those rooms.
pub(super) async fn depart_socket(
    tx: &mut Tx<'_>,
    user: &UserKey,
    socket_id: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE presence_user_rooms SET left_at = $4
         WHERE company_id = $1 AND user_id = $2
           AND room IN (SELECT room FROM presence_rooms WHERE company_id = $1 AND socket_id = $3)
         RETURNING room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(socket_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}

/// Whether one of `rooms` has no socket of the user left in it.
pub(super) async fn emptied(
    tx: &mut Tx<'_>,
    user: &UserKey,
    rooms: &[String],
) -> Result<bool, StoreError> {
    if rooms.is_empty() {
        return Ok(false);
    }
    let held = held(tx, user, rooms).await?;
    Ok(rooms.iter().any(|r| !held.contains_key(r)))
}

/// How many live sockets of the user are in each of `rooms` (absent: none).
async fn held(
    tx: &mut Tx<'_>,
    user: &UserKey,
    rooms: &[String],
) -> Result<HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.room, count(*) FROM presence_sockets s
         JOIN presence_rooms r ON r.company_id = s.company_id AND r.socket_id = s.socket_id
         WHERE s.company_id = $1 AND s.user_id = $2 AND r.room = ANY($3)
         GROUP BY r.room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(rooms)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Removes the room rows of the user's sockets older than `stale_before`
/// (before the sockets go, which would cascade them away unrecorded);
/// returns the last heartbeat of those sockets per room.
pub(super) async fn reap(
    tx: &mut Tx<'_>,
    user: &UserKey,
    stale_before: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "DELETE FROM presence_rooms r USING presence_sockets s
         WHERE s.company_id = r.company_id AND s.socket_id = r.socket_id
           AND s.company_id = $1 AND s.user_id = $2 AND s.heartbeat_at < $3
         RETURNING r.room, s.heartbeat_at",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(stale_before)
    .fetch_all(&mut **tx)
    .await?;
    let mut last = HashMap::new();
    for (room, heartbeat) in rows {
        let at = last.entry(room).or_insert(heartbeat);
        *at = heartbeat.max(*at);
    }
    Ok(last)
}

/// Settles every room the user is in: the ones without a socket of the
/// user for the grace period are left (rows deleted, changes returned).
pub(super) async fn settle(
    tx: &mut Tx<'_>,
    user: &UserKey,
    reaped: &HashMap<String, i64>,
    now: i64,
    grace_ms: i64,
) -> Result<Vec<RoomChange>, StoreError> {
    let states: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT room, since, left_at FROM presence_user_rooms
         WHERE company_id = $1 AND user_id = $2 ORDER BY room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .fetch_all(&mut **tx)
    .await?;
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let rooms: Vec<String> = states.iter().map(|s| s.0.clone()).collect();
    let held = held(tx, user, &rooms).await?;
    let mut changes = Vec::new();
    for (room, since, left_at) in states {
        let stored = UserPresence {
            online: true,
            since,
            left_at,
        };
        let sockets = held.get(&room).copied().unwrap_or(0);
        let reaped = reaped.get(&room).copied();
        match transition::settle_room(stored, reaped, sockets, now, grace_ms) {
            (_, Some(change)) => changes.push(RoomChange { room, change }),
            (next, None) if next != stored => {
                set_left_at(tx, user, &room, next.left_at).await?;
            }
            (_, None) => {}
        }
    }
    let gone: Vec<&str> = changes.iter().map(|c| c.room.as_str()).collect();
    if !gone.is_empty() {
        sqlx::query(
            "DELETE FROM presence_user_rooms
             WHERE company_id = $1 AND user_id = $2 AND room = ANY($3)",
        )
        .bind(&user.company_id)
        .bind(&user.user_id)
        .bind(&gone)
        .execute(&mut **tx)
        .await?;
    }
    Ok(changes)
}

async fn set_left_at(
    tx: &mut Tx<'_>,
    user: &UserKey,
    room: &str,
    left_at: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE presence_user_rooms SET left_at = $4
         WHERE company_id = $1 AND user_id = $2 AND room = $3",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(room)
    .bind(left_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records, for the rooms of `node_id`'s sockets older than `before`, that
/// their users' sockets left at `now` (the sockets are about to go). The
/// caller holds the row locks of those users.
pub(super) async fn depart_node(
    tx: &mut Tx<'_>,
    node_id: &str,
    before: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE presence_user_rooms ur SET left_at = $3
         FROM presence_sockets s
         JOIN presence_rooms r ON r.company_id = s.company_id AND r.socket_id = s.socket_id
         WHERE s.node_id = $1 AND s.heartbeat_at < $2
           AND ur.company_id = s.company_id AND ur.user_id = s.user_id AND ur.room = r.room",
    )
    .bind(node_id)
    .bind(before)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
