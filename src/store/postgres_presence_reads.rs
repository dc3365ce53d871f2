//! PostgreSQL: the read-only presence queries, `presence:list` and the
//! sweep's candidates (no locks: they only choose whom to settle, and the
//! settle decides under the user's row lock).

use sqlx::PgPool;

use super::StoreError;
use super::presence::{MadeBy, PresentUser, UserKey};

pub(super) async fn unsettled(
    pool: &PgPool,
    stale_before: i64,
    left_by: i64,
    limit: i64,
) -> Result<Vec<UserKey>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT company_id, user_id FROM presence_sockets WHERE heartbeat_at < $1
         UNION
         SELECT u.company_id, u.user_id FROM presence_users u
         WHERE u.online AND (u.left_at IS NULL OR u.left_at <= $2)
           AND NOT EXISTS (SELECT 1 FROM presence_sockets s
                           WHERE s.company_id = u.company_id AND s.user_id = u.user_id)
         UNION
         SELECT ur.company_id, ur.user_id FROM presence_user_rooms ur
         WHERE (ur.left_at IS NULL OR ur.left_at <= $2)
           AND NOT EXISTS (SELECT 1 FROM presence_sockets s
                           JOIN presence_rooms r
                             ON r.company_id = s.company_id AND r.socket_id = s.socket_id
                           WHERE s.company_id = ur.company_id AND s.user_id = ur.user_id
                             AND r.room = ur.room)
         LIMIT $3",
    )
    .bind(stale_before)
    .bind(left_by)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(c, u)| UserKey {
            company_id: c,
            user_id: u,
        })
        .collect())
}

/// Served by the partial index `presence_users_online`.
pub(super) async fn online_count(pool: &PgPool, company_id: &str) -> Result<i64, StoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM presence_users WHERE company_id = $1 AND online")
            .bind(company_id)
            .fetch_one(pool)
            .await?;
    Ok(n)
}

pub(super) async fn made_by(
    pool: &PgPool,
    user: &UserKey,
    socket_id: &str,
    rooms_at: i64,
) -> Result<MadeBy, StoreError> {
    let online_since = sqlx::query_scalar(
        "SELECT since FROM presence_users
         WHERE company_id = $1 AND user_id = $2 AND online AND online_by = $3",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(socket_id)
    .fetch_optional(pool)
    .await?;
    let rooms = sqlx::query_scalar(
        "SELECT room FROM presence_user_rooms
         WHERE company_id = $1 AND user_id = $2 AND entered_by = $3 AND since = $4
         ORDER BY room",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(socket_id)
    .bind(rooms_at)
    .fetch_all(pool)
    .await?;
    Ok(MadeBy {
        online_since,
        rooms,
    })
}

pub(super) async fn list(
    pool: &PgPool,
    company_id: &str,
    room: Option<&str>,
) -> Result<Vec<PresentUser>, StoreError> {
    let rows: Vec<(String, String, i64, i64)> = match room {
        None => {
            sqlx::query_as(
                "SELECT u.user_id, u.role,
                        (SELECT count(*) FROM presence_sockets s
                         WHERE s.company_id = u.company_id AND s.user_id = u.user_id),
                        u.since
                 FROM presence_users u WHERE u.company_id = $1 AND u.online
                 ORDER BY u.user_id",
            )
            .bind(company_id)
            .fetch_all(pool)
            .await?
        }
        Some(room) => {
            sqlx::query_as(
                "SELECT ur.user_id, u.role, COALESCE(c.n, 0), ur.since
                 FROM presence_user_rooms ur
                 JOIN presence_users u ON u.company_id = ur.company_id AND u.user_id = ur.user_id
                 LEFT JOIN (SELECT s.user_id, count(*) AS n FROM presence_rooms r
                            JOIN presence_sockets s
                              ON s.company_id = r.company_id AND s.socket_id = r.socket_id
                            WHERE r.company_id = $1 AND r.room = $2
                            GROUP BY s.user_id) c ON c.user_id = ur.user_id
                 WHERE ur.company_id = $1 AND ur.room = $2
                 ORDER BY ur.user_id",
            )
            .bind(company_id)
            .bind(room)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(user_id, role, connections, since)| PresentUser {
            user_id,
            role,
            connections,
            since,
        })
        .collect())
}
