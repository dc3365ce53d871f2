//! SQLite: the (user, entity room) part of presence, run inside the
//! transactions of [`super::sqlite_presence`] (one writer: serialised with
//! every other write). Same statements as `postgres_presence_rooms.rs`,
//! with lists as JSON arrays (`json_each`).

use std::collections::HashMap;

use sqlx::{Sqlite, Transaction};

use super::StoreError;
use super::presence::UserKey;
use crate::domain::presence::{self as transition, RoomChange, UserPresence};

type Tx<'a> = Transaction<'a, Sqlite>;

pub(super) fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::Value::from(items).to_string()
}

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
         SELECT ?1, ?2, value, ?4, ?5 FROM json_each(?3) WHERE true
         ON CONFLICT DO NOTHING RETURNING room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(json_list(rooms))
    .bind(now)
    .bind(socket_id)
    .fetch_all(&mut **tx)
    .await?;
    entered.sort();
    entered.dedup();
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
        "UPDATE presence_user_rooms SET left_at = ?4
         WHERE company_id = ?1 AND user_id = ?2 AND room IN (SELECT value FROM json_each(?3))",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(json_list(rooms))
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
        "UPDATE presence_user_rooms SET left_at = ?4
         WHERE company_id = ?1 AND user_id = ?2
           AND room IN (SELECT room FROM presence_rooms WHERE company_id = ?1 AND socket_id = ?3)
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
         WHERE s.company_id = ?1 AND s.user_id = ?2 AND r.room IN (SELECT value FROM json_each(?3))
         GROUP BY r.room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(json_list(rooms))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The last heartbeat, per room, of the user's sockets older than
/// `stale_before` (read before the sockets go and cascade their rooms away).
pub(super) async fn reap(
    tx: &mut Tx<'_>,
    user: &UserKey,
    stale_before: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.room, max(s.heartbeat_at) FROM presence_sockets s
         JOIN presence_rooms r ON r.company_id = s.company_id AND r.socket_id = s.socket_id
         WHERE s.company_id = ? AND s.user_id = ? AND s.heartbeat_at < ?
         GROUP BY r.room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(stale_before)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Settles every room the user is in: the ones without a socket of the
/// user for the grace period are left (rows deleted, changes returned).
/// Runs after the stale sockets were deleted.
pub(super) async fn settle(
    tx: &mut Tx<'_>,
    user: &UserKey,
    reaped: &HashMap<String, i64>,
    now: i64,
    grace_ms: i64,
) -> Result<Vec<RoomChange>, StoreError> {
    let states: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT room, since, left_at FROM presence_user_rooms
         WHERE company_id = ? AND user_id = ? ORDER BY room",
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
             WHERE company_id = ?1 AND user_id = ?2 AND room IN (SELECT value FROM json_each(?3))",
        )
        .bind(&user.company_id)
        .bind(&user.user_id)
        .bind(json_list(&gone))
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
        "UPDATE presence_user_rooms SET left_at = ?
         WHERE company_id = ? AND user_id = ? AND room = ?",
    )
    .bind(left_at)
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(room)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records, for the rooms of `node_id`'s sockets older than `before`, that
/// their users' sockets left at `now` (the sockets are about to go).
pub(super) async fn depart_node(
    tx: &mut Tx<'_>,
    node_id: &str,
    before: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE presence_user_rooms SET left_at = ?3
         WHERE EXISTS (SELECT 1 FROM presence_sockets s
                       JOIN presence_rooms r
                         ON r.company_id = s.company_id AND r.socket_id = s.socket_id
                       WHERE s.node_id = ?1 AND s.heartbeat_at < ?2
                         AND s.company_id = presence_user_rooms.company_id
                         AND s.user_id = presence_user_rooms.user_id
                         AND r.room = presence_user_rooms.room)",
    )
    .bind(node_id)
    .bind(before)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
