//! PostgreSQL implementation of [`PresenceStore`].
//!
//! Every transaction that can change a user's state first locks the user's
//! row (`SELECT … FOR UPDATE`, or an UPDATE of it) and only then touches
//! socket rows. Under READ COMMITTED each later statement sees what other
//! transactions committed before the lock was granted, so a registration
//! on one node and an offline decision on another are serialised: the
//! decision either sees the new socket or runs before it and the
//! registration then brings the user back online.

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::postgres_presence_many as many;
use super::postgres_presence_reads as reads;
use super::postgres_presence_rooms as rooms;
use super::postgres_presence_settle::{self as settle, lock_user};
use super::presence::{MadeBy, PresenceStore, PresentUser, SocketEntry, UserKey};
use super::{PgStore, StoreError};
use crate::domain::presence::{self as transition, Transitions, UserPresence};

type Tx<'a> = Transaction<'a, Postgres>;

fn key(company_id: &str, user_id: &str) -> UserKey {
    UserKey {
        company_id: company_id.to_string(),
        user_id: user_id.to_string(),
    }
}

#[async_trait]
impl PresenceStore for PgStore {
    async fn presence_join(&self, s: &SocketEntry, now: i64) -> Result<Transitions, StoreError> {
        let user = key(&s.company_id, &s.user_id);
        // Four round trips (BEGIN, two statements, COMMIT) where a connect
        // used to take seven: in a connect storm each one is a wait on the
        // database and a turn of its backend.
        let mut tx = self.pool.begin().await?;
        // Creates the user's row if it is new and locks it either way (an
        // upsert that updates takes the row lock, as SELECT … FOR UPDATE
        // would, and returns the latest committed state).
        let (online, since, left_at): (bool, i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO presence_users AS u (company_id, user_id, role, online, since)
             VALUES ($1, $2, $3, FALSE, 0)
             ON CONFLICT (company_id, user_id) DO UPDATE SET role = EXCLUDED.role
             RETURNING u.online, u.since, u.left_at",
        )
        .bind(&s.company_id)
        .bind(&s.user_id)
        .bind(&s.role)
        .fetch_one(&mut *tx)
        .await?;
        let current = UserPresence {
            online,
            since,
            left_at,
        };
        let (next, change) = transition::join(current, &s.role, now);
        // The socket's row, the user's new state (under the lock taken
        // above), and the rooms a re-registration dropped from the socket's
        // set (departures), in one statement.
        let dropped: Vec<String> = sqlx::query_scalar(
            "WITH socket AS (
                 INSERT INTO presence_sockets
                     (company_id, socket_id, user_id, role, node_id, since, heartbeat_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (company_id, socket_id)
                 DO UPDATE SET node_id = EXCLUDED.node_id, heartbeat_at = EXCLUDED.heartbeat_at
             ), saved AS (
                 UPDATE presence_users SET online = $9, since = $10, left_at = $11,
                     online_by = CASE WHEN $13 THEN $2 ELSE online_by END
                 WHERE company_id = $1 AND user_id = $3 AND $12
             )
             DELETE FROM presence_rooms WHERE company_id = $1 AND socket_id = $2 AND room <> ALL($8)
             RETURNING room",
        )
        .bind(&s.company_id)
        .bind(&s.socket_id)
        .bind(&s.user_id)
        .bind(&s.role)
        .bind(&s.node_id)
        .bind(s.since)
        .bind(now)
        .bind(&s.rooms)
        .bind(next.online)
        .bind(next.since)
        .bind(next.left_at)
        .bind(next != current)
        .bind(change.is_some())
        .fetch_all(&mut *tx)
        .await?;
        rooms::depart(&mut tx, &user, &dropped, now).await?;
        insert_rooms(&mut tx, &s.company_id, &s.socket_id, &s.rooms, now).await?;
        let entered = rooms::enter(&mut tx, &user, &s.role, &s.socket_id, &s.rooms, now).await?;
        let settle = rooms::emptied(&mut tx, &user, &dropped).await?;
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
        let mut tx = self.pool.begin().await?;
        // The UPDATE takes the user's row lock before the socket row goes.
        sqlx::query(
            "UPDATE presence_users SET left_at = $3 WHERE company_id = $1 AND user_id = $2",
        )
        .bind(&user.company_id)
        .bind(&user.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let departed = match in_rooms {
            true => rooms::depart_socket(&mut tx, user, socket_id, now).await?,
            false => Vec::new(),
        };
        // The socket goes, and the user's sockets are counted without it,
        // in one statement (its snapshot, taken under the lock, still holds
        // the deleted row: hence the subtraction).
        let left: i64 = sqlx::query_scalar(
            "WITH gone AS (
                 DELETE FROM presence_sockets WHERE company_id = $1 AND socket_id = $3
                 RETURNING user_id
             )
             SELECT (SELECT count(*) FROM presence_sockets WHERE company_id = $1 AND user_id = $2)
                  - (SELECT count(*) FROM gone WHERE user_id = $2)",
        )
        .bind(&user.company_id)
        .bind(&user.user_id)
        .bind(socket_id)
        .fetch_one(&mut *tx)
        .await?;
        let settle = left == 0 || rooms::emptied(&mut tx, user, &departed).await?;
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
        let user = key(&s.company_id, &s.user_id);
        let mut tx = self.pool.begin().await?;
        if lock_user(&mut tx, &user).await?.is_none() {
            return Ok(Transitions::default()); // never registered
        }
        let mut departed = Vec::new();
        if !left.is_empty() {
            departed = sqlx::query_scalar(
                "DELETE FROM presence_rooms WHERE company_id = $1 AND socket_id = $2 AND room = ANY($3)
                 RETURNING room",
            )
            .bind(&s.company_id)
            .bind(&s.socket_id)
            .bind(left)
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
        let rule = settle::Rule {
            stale_before,
            now,
            grace_ms,
            count_up_to,
        };
        settle::one(&self.pool, user, rule).await
    }

    async fn presence_settle_many(
        &self,
        users: &[UserKey],
        stale_before: i64,
        now: i64,
        grace_ms: i64,
        count_up_to: i64,
    ) -> Vec<Result<Transitions, StoreError>> {
        let rule = settle::Rule {
            stale_before,
            now,
            grace_ms,
            count_up_to,
        };
        match settle::many(&self.pool, users, rule).await {
            Ok(done) => done.into_iter().map(Ok).collect(),
            Err(e) => users.iter().map(|_| Err(e.not_known())).collect(),
        }
    }

    async fn presence_join_many(
        &self,
        sockets: &[SocketEntry],
        now: i64,
    ) -> Vec<Result<Transitions, StoreError>> {
        // A socket with rooms (not what registrars send) takes its own
        // transaction, after the batch.
        let (plain, with_rooms): (Vec<_>, Vec<_>) =
            (0..sockets.len()).partition(|&i| sockets[i].rooms.is_empty());
        let batch: Vec<SocketEntry> = plain.iter().map(|&i| sockets[i].clone()).collect();
        let mut answers: Vec<Option<Result<Transitions, StoreError>>> =
            (0..sockets.len()).map(|_| None).collect();
        match many::join(&self.pool, &batch, now).await {
            Ok(done) => {
                for (i, t) in plain.iter().zip(done) {
                    answers[*i] = Some(Ok(t));
                }
            }
            Err(e) => {
                for i in &plain {
                    answers[*i] = Some(Err(e.not_known()));
                }
            }
        }
        for i in with_rooms {
            answers[i] = Some(self.presence_join(&sockets[i], now).await);
        }
        answers.into_iter().flatten().collect()
    }

    async fn presence_leave_many(
        &self,
        sockets: &[(UserKey, String)],
        now: i64,
    ) -> Vec<Result<bool, StoreError>> {
        match many::leave(&self.pool, sockets, now).await {
            Ok(done) => done.into_iter().map(Ok).collect(),
            Err(e) => sockets.iter().map(|_| Err(e.not_known())).collect(),
        }
    }

    async fn presence_heartbeat(&self, node_id: &str, now: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("UPDATE presence_sockets SET heartbeat_at = $2 WHERE node_id = $1")
                .bind(node_id)
                .bind(now)
                .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // Users locked in one order, so two nodes leaving at once cannot deadlock.
        let users: Vec<(String, String)> = sqlx::query_as(
            "SELECT u.company_id, u.user_id FROM presence_users u
             WHERE EXISTS (SELECT 1 FROM presence_sockets s
                           WHERE s.node_id = $1 AND s.heartbeat_at < $2
                             AND s.company_id = u.company_id AND s.user_id = u.user_id)
             ORDER BY u.company_id, u.user_id FOR UPDATE",
        )
        .bind(node_id)
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        let (companies, ids): (Vec<String>, Vec<String>) = users.into_iter().unzip();
        sqlx::query(
            "UPDATE presence_users SET left_at = $3
             WHERE (company_id, user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .bind(&companies)
        .bind(&ids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        rooms::depart_node(&mut tx, node_id, before, now).await?;
        sqlx::query("DELETE FROM presence_sockets WHERE node_id = $1 AND heartbeat_at < $2")
            .bind(node_id)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(companies
            .into_iter()
            .zip(ids)
            .map(|(company_id, user_id)| UserKey {
                company_id,
                user_id,
            })
            .collect())
    }

    async fn presence_unsettled(
        &self,
        stale_before: i64,
        left_before: i64,
        limit: i64,
    ) -> Result<Vec<UserKey>, StoreError> {
        reads::unsettled(&self.pool, stale_before, left_before, limit).await
    }

    async fn presence_list(
        &self,
        company_id: &str,
        room: Option<&str>,
    ) -> Result<Vec<PresentUser>, StoreError> {
        reads::list(&self.pool, company_id, room).await
    }

    async fn presence_online_count(&self, company_id: &str) -> Result<i64, StoreError> {
        reads::online_count(&self.pool, company_id).await
    }

    async fn presence_made_by(
        &self,
        user: &UserKey,
        socket_id: &str,
        rooms_at: i64,
    ) -> Result<MadeBy, StoreError> {
        reads::made_by(&self.pool, user, socket_id, rooms_at).await
    }
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
         SELECT $1, r, $2, $4 FROM unnest($3::text[]) AS r
         WHERE EXISTS (SELECT 1 FROM presence_sockets WHERE company_id = $1 AND socket_id = $2)
         ON CONFLICT DO NOTHING RETURNING room",
    )
    .bind(company_id)
    .bind(socket_id)
    .bind(rooms)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}
