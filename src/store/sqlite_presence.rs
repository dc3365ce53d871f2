//! SQLite implementation of [`PresenceStore`].
//!
//! Writes go through the single writer connection, so every transaction
//! here is serialised with every other: the user-state transitions need no
//! row locks. Lists of rooms travel as JSON arrays (`json_each`).

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::presence::{MadeBy, PresenceStore, PresentUser, SocketEntry, UserKey};
use super::sqlite_presence_reads as reads;
use super::sqlite_presence_rooms::{self as rooms, json_list};
use super::{SqliteStore, StoreError};
use crate::domain::presence::{self as transition, Change, Transitions, UserPresence};

type Tx<'a> = Transaction<'a, Sqlite>;

async fn load_user(tx: &mut Tx<'_>, user: &UserKey) -> Result<Option<UserPresence>, StoreError> {
    let row: Option<(bool, i64, Option<i64>)> = sqlx::query_as(
        "SELECT online, since, left_at FROM presence_users WHERE company_id = ? AND user_id = ?",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(online, since, left_at)| UserPresence {
        online,
        since,
        left_at,
    }))
}

async fn save_user(
    tx: &mut Tx<'_>,
    user: &UserKey,
    state: UserPresence,
    role: Option<&str>,
    online_by: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE presence_users SET online = ?, since = ?, left_at = ?, role = COALESCE(?, role),
             online_by = COALESCE(?, online_by)
         WHERE company_id = ? AND user_id = ?",
    )
    .bind(state.online)
    .bind(state.since)
    .bind(state.left_at)
    .bind(role)
    .bind(online_by)
    .bind(&user.company_id)
    .bind(&user.user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The company's online users as this transaction sees them, counted up
/// to `up_to` + 1 (enough to tell "above `up_to`", at most that many index
/// entries read however large the company).
async fn count_online(tx: &mut Tx<'_>, company_id: &str, up_to: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM presence_users
         WHERE company_id = ? AND online LIMIT ?) AS online",
    )
    .bind(company_id)
    .bind(up_to.saturating_add(1))
    .fetch_one(&mut **tx)
    .await?)
}

async fn count_sockets(tx: &mut Tx<'_>, user: &UserKey) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM presence_sockets WHERE company_id = ? AND user_id = ?",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .fetch_one(&mut **tx)
    .await?)
}

/// Subscribes a registered socket to rooms (nothing if its row is missing);
/// returns the rooms it was not in yet.
async fn insert_rooms(
    tx: &mut Tx<'_>,
    company_id: &str,
    socket_id: &str,
    rooms: &[String],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO presence_rooms (company_id, room, socket_id, joined_at)
         SELECT ?1, value, ?2, ?4 FROM json_each(?3)
         WHERE EXISTS (SELECT 1 FROM presence_sockets WHERE company_id = ?1 AND socket_id = ?2)
         ON CONFLICT DO NOTHING RETURNING room",
    )
    .bind(company_id)
    .bind(socket_id)
    .bind(json_list(rooms))
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}

fn key(company_id: String, user_id: String) -> UserKey {
    UserKey {
        company_id,
        user_id,
    }
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn presence_join(&self, s: &SocketEntry, now: i64) -> Result<Transitions, StoreError> {
        let user = key(s.company_id.clone(), s.user_id.clone());
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO presence_users (company_id, user_id, role, online, since)
             VALUES (?, ?, ?, FALSE, 0) ON CONFLICT DO NOTHING",
        )
        .bind(&s.company_id)
        .bind(&s.user_id)
        .bind(&s.role)
        .execute(&mut *tx)
        .await?;
        let current = load_user(&mut tx, &user)
            .await?
            .unwrap_or(UserPresence::OFFLINE);
        sqlx::query(
            "INSERT INTO presence_sockets (company_id, socket_id, user_id, role, node_id, since, heartbeat_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (company_id, socket_id)
             DO UPDATE SET node_id = excluded.node_id, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&s.company_id)
        .bind(&s.socket_id)
        .bind(&s.user_id)
        .bind(&s.role)
        .bind(&s.node_id)
        .bind(s.since)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A re-registration replaces the room set: rooms dropped from it are departures.
        let dropped: Vec<String> = sqlx::query_scalar(
            "DELETE FROM presence_rooms WHERE company_id = ? AND socket_id = ?
             AND room NOT IN (SELECT value FROM json_each(?)) RETURNING room",
        )
        .bind(&s.company_id)
        .bind(&s.socket_id)
        .bind(json_list(&s.rooms))
        .fetch_all(&mut *tx)
        .await?;
        rooms::depart(&mut tx, &user, &dropped, now).await?;
        insert_rooms(&mut tx, &s.company_id, &s.socket_id, &s.rooms, now).await?;
        let entered = rooms::enter(&mut tx, &user, &s.role, &s.socket_id, &s.rooms, now).await?;
        let settle = rooms::emptied(&mut tx, &user, &dropped).await?;
        let (next, change) = transition::join(current, &s.role, now);
        let by = change.is_some().then_some(s.socket_id.as_str());
        save_user(&mut tx, &user, next, Some(&s.role), by).await?;
        tx.commit().await?;
        Ok(Transitions {
            user: change,
            company_online: None,
            rooms: entered,
            settle,
        })
    }

    async fn presence_leave(
        &self,
        user: &UserKey,
        socket_id: &str,
        in_rooms: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE presence_users SET left_at = ? WHERE company_id = ? AND user_id = ?")
            .bind(now)
            .bind(&user.company_id)
            .bind(&user.user_id)
            .execute(&mut *tx)
            .await?;
        let departed = match in_rooms {
            true => rooms::depart_socket(&mut tx, user, socket_id, now).await?,
            false => Vec::new(),
        };
        sqlx::query("DELETE FROM presence_sockets WHERE company_id = ? AND socket_id = ?")
            .bind(&user.company_id)
            .bind(socket_id)
            .execute(&mut *tx)
            .await?;
        let settle = count_sockets(&mut tx, user).await? == 0
            || rooms::emptied(&mut tx, user, &departed).await?;
        tx.commit().await?;
        Ok(settle)
    }

    async fn presence_rooms(
        &self,
        s: &SocketEntry,
        joined: &[String],
        left: &[String],
        now: i64,
    ) -> Result<Transitions, StoreError> {
        let user = key(s.company_id.clone(), s.user_id.clone());
        let mut tx = self.writer.begin().await?;
        if load_user(&mut tx, &user).await?.is_none() {
            return Ok(Transitions::default()); // never registered
        }
        let mut departed = Vec::new();
        if !left.is_empty() {
            departed = sqlx::query_scalar(
                "DELETE FROM presence_rooms WHERE company_id = ? AND socket_id = ?
                 AND room IN (SELECT value FROM json_each(?)) RETURNING room",
            )
            .bind(&s.company_id)
            .bind(&s.socket_id)
            .bind(json_list(left))
            .fetch_all(&mut *tx)
            .await?;
            rooms::depart(&mut tx, &user, &departed, now).await?;
        }
        let added = insert_rooms(&mut tx, &s.company_id, &s.socket_id, joined, now).await?;
        let entered = rooms::enter(&mut tx, &user, &s.role, &s.socket_id, &added, now).await?;
        let settle = rooms::emptied(&mut tx, &user, &departed).await?;
        tx.commit().await?;
        Ok(Transitions {
            rooms: entered,
            settle,
            ..Transitions::default()
        })
    }

    async fn presence_settle(
        &self,
        user: &UserKey,
        stale_before: i64,
        now: i64,
        grace_ms: i64,
        count_up_to: i64,
    ) -> Result<Transitions, StoreError> {
        let mut tx = self.writer.begin().await?;
        let Some(stored) = load_user(&mut tx, user).await? else {
            return Ok(Transitions::default());
        };
        let reaped_rooms = rooms::reap(&mut tx, user, stale_before).await?;
        let reaped: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM presence_sockets
             WHERE company_id = ? AND user_id = ? AND heartbeat_at < ?
             RETURNING heartbeat_at",
        )
        .bind(&user.company_id)
        .bind(&user.user_id)
        .bind(stale_before)
        .fetch_all(&mut *tx)
        .await?;
        let left_rooms = rooms::settle(&mut tx, user, &reaped_rooms, now, grace_ms).await?;
        let current = match reaped.into_iter().max() {
            Some(last) => transition::reap(stored, last),
            None => stored,
        };
        let sockets = count_sockets(&mut tx, user).await?;
        let (next, change) = transition::settle(current, sockets, now, grace_ms);
        if next != stored {
            save_user(&mut tx, user, next, None, None).await?;
        }
        let company_online = match change {
            Some(Change::Offline { .. }) => {
                Some(count_online(&mut tx, &user.company_id, count_up_to).await?)
            }
            _ => None,
        };
        tx.commit().await?;
        Ok(Transitions {
            user: change,
            company_online,
            rooms: left_rooms,
            settle: false,
        })
    }

    async fn presence_heartbeat(&self, node_id: &str, now: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("UPDATE presence_sockets SET heartbeat_at = ? WHERE node_id = ?")
                .bind(now)
                .bind(node_id)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    async fn presence_leave_node(
        &self,
        node_id: &str,
        before: i64,
        now: i64,
    ) -> Result<Vec<UserKey>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let users: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT company_id, user_id FROM presence_sockets
             WHERE node_id = ? AND heartbeat_at < ? ORDER BY company_id, user_id",
        )
        .bind(node_id)
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE presence_users SET left_at = ?1
             WHERE EXISTS (SELECT 1 FROM presence_sockets s
                           WHERE s.node_id = ?2 AND s.heartbeat_at < ?3
                             AND s.company_id = presence_users.company_id
                             AND s.user_id = presence_users.user_id)",
        )
        .bind(now)
        .bind(node_id)
        .bind(before)
        .execute(&mut *tx)
        .await?;
        rooms::depart_node(&mut tx, node_id, before, now).await?;
        sqlx::query("DELETE FROM presence_sockets WHERE node_id = ? AND heartbeat_at < ?")
            .bind(node_id)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(users.into_iter().map(|(c, u)| key(c, u)).collect())
    }

    async fn presence_unsettled(
        &self,
        stale_before: i64,
        left_before: i64,
        limit: i64,
    ) -> Result<Vec<UserKey>, StoreError> {
        reads::unsettled(&self.reader, stale_before, left_before, limit).await
    }

    async fn presence_list(
        &self,
        company_id: &str,
        room: Option<&str>,
    ) -> Result<Vec<PresentUser>, StoreError> {
        reads::list(&self.reader, company_id, room).await
    }

    async fn presence_online_count(&self, company_id: &str) -> Result<i64, StoreError> {
        reads::online_count(&self.reader, company_id).await
    }

    async fn presence_made_by(
        &self,
        user: &UserKey,
        socket_id: &str,
        rooms_at: i64,
    ) -> Result<MadeBy, StoreError> {
        reads::made_by(&self.reader, user, socket_id, rooms_at).await
    }
}
