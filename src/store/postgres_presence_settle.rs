//! PostgreSQL: offline decisions ([`PresenceStore::presence_settle`] and
//! its batch), and the user-row statements every presence transaction
//! shares.
//!
//! A reconnect storm's departures each schedule a settle after the grace
//! period; made one by one, each took its own transaction of seven to nine
//! round trips (4,320 of them, 3.5 s of mostly lock-wait time, in one
//! 10,000-client storm). A batch locks its users in key order (as every
//! multi-user transaction here does), then takes the stale sockets and the
//! socket counts of all users without entity rooms in one statement, saves
//! the new states in one more and counts each company once: seven round
//! trips however many users it carries. Users in entity rooms run the
//! single user's steps inside the same transaction, since their rooms need
//! reaping before their stale sockets go.
//!
//! [`PresenceStore::presence_settle`]: super::presence::PresenceStore::presence_settle

use std::collections::{HashMap, HashSet};

use sqlx::{PgPool, Postgres, Transaction};

use super::StoreError;
use super::postgres_presence_rooms as rooms;
use super::presence::UserKey;
use crate::domain::presence::{self as transition, Change, RoomChange, Transitions, UserPresence};

type Tx<'a> = Transaction<'a, Postgres>;

/// When and by which rule a settle decides.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rule {
    /// Sockets whose heartbeat is older are removed (their node died).
    pub stale_before: i64,
    pub now: i64,
    pub grace_ms: i64,
    /// A `user:offline` counts the company's online users up to this + 1.
    pub count_up_to: i64,
}

pub(super) async fn lock_user(
    tx: &mut Tx<'_>,
    user: &UserKey,
) -> Result<Option<UserPresence>, StoreError> {
    let row: Option<(bool, i64, Option<i64>)> = sqlx::query_as(
        "SELECT online, since, left_at FROM presence_users
         WHERE company_id = $1 AND user_id = $2 FOR UPDATE",
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

/// The company's online users as this transaction sees them, counted up
/// to `up_to` + 1 (enough to tell "above `up_to`", at most that many index
/// entries read however large the company).
async fn count_online(tx: &mut Tx<'_>, company_id: &str, up_to: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM presence_users
         WHERE company_id = $1 AND online LIMIT $2) AS online",
    )
    .bind(company_id)
    .bind(up_to.saturating_add(1))
    .fetch_one(&mut **tx)
    .await?)
}

/// One locked user's settle (its rooms included), up to the new state:
/// the caller saves it.
async fn locked(
    tx: &mut Tx<'_>,
    user: &UserKey,
    stored: UserPresence,
    rule: Rule,
) -> Result<(UserPresence, Option<Change>, Vec<RoomChange>), StoreError> {
    let reaped_rooms = rooms::reap(tx, user, rule.stale_before).await?;
    let reaped: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM presence_sockets
         WHERE company_id = $1 AND user_id = $2 AND heartbeat_at < $3
         RETURNING heartbeat_at",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .bind(rule.stale_before)
    .fetch_all(&mut **tx)
    .await?;
    let left_rooms = rooms::settle(tx, user, &reaped_rooms, rule.now, rule.grace_ms).await?;
    let current = match reaped.into_iter().max() {
        Some(last) => transition::reap(stored, last),
        None => stored,
    };
    let sockets: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM presence_sockets WHERE company_id = $1 AND user_id = $2",
    )
    .bind(&user.company_id)
    .bind(&user.user_id)
    .fetch_one(&mut **tx)
    .await?;
    let (next, change) = transition::settle(current, sockets, rule.now, rule.grace_ms);
    Ok((next, change, left_rooms))
}

/// Saves users' new states (online, since, left_at) in one statement.
async fn save(tx: &mut Tx<'_>, users: &[(&UserKey, UserPresence)]) -> Result<(), StoreError> {
    if users.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE presence_users AS u SET online = t.online, since = t.since, left_at = t.left_at
         FROM unnest($1::text[], $2::text[], $3::bool[], $4::int8[], $5::int8[])
              AS t(c, usr, online, since, left_at)
         WHERE u.company_id = t.c AND u.user_id = t.usr",
    )
    .bind(
        users
            .iter()
            .map(|(u, _)| u.company_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        users
            .iter()
            .map(|(u, _)| u.user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(users.iter().map(|(_, p)| p.online).collect::<Vec<_>>())
    .bind(users.iter().map(|(_, p)| p.since).collect::<Vec<_>>())
    .bind(users.iter().map(|(_, p)| p.left_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// [`PresenceStore::presence_settle`](super::presence::PresenceStore::presence_settle).
pub(super) async fn one(
    pool: &PgPool,
    user: &UserKey,
    rule: Rule,
) -> Result<Transitions, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(stored) = lock_user(&mut tx, user).await? else {
        return Ok(Transitions::default());
    };
    let (next, change, rooms) = locked(&mut tx, user, stored, rule).await?;
    if next != stored {
        save(&mut tx, &[(user, next)]).await?;
    }
    let company_online = match change {
        Some(Change::Offline { .. }) => {
            Some(count_online(&mut tx, &user.company_id, rule.count_up_to).await?)
        }
        _ => None,
    };
    tx.commit().await?;
    Ok(Transitions {
        user: change,
        company_online,
        rooms,
        settle: false,
    })
}

/// Settles `users` in one transaction: one answer per user, in order (a
/// user named twice is settled once; its later entries answer no change).
pub(super) async fn many(
    pool: &PgPool,
    users: &[UserKey],
    rule: Rule,
) -> Result<Vec<Transitions>, StoreError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&UserKey> = users.iter().collect();
    sorted.sort();
    sorted.dedup();
    let (companies, ids) = columns(&sorted);
    let mut tx = pool.begin().await?;
    let rows: Vec<(String, String, bool, i64, Option<i64>)> = sqlx::query_as(
        "SELECT company_id, user_id, online, since, left_at FROM presence_users
         WHERE (company_id, user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY company_id, user_id FOR UPDATE",
    )
    .bind(&companies)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let stored: HashMap<UserKey, UserPresence> = rows
        .into_iter()
        .map(|(company_id, user_id, online, since, left_at)| {
            let user = UserKey {
                company_id,
                user_id,
            };
            let state = UserPresence {
                online,
                since,
                left_at,
            };
            (user, state)
        })
        .collect();
    let held: Vec<&UserKey> = sorted
        .iter()
        .copied()
        .filter(|u| stored.contains_key(*u))
        .collect();
    // Read after the locks, so a room entered by a transaction that held
    // one of them is seen.
    let (companies, ids) = columns(&held);
    let in_rooms: HashSet<UserKey> = sqlx::query_as(
        "SELECT t.c, t.usr FROM unnest($1::text[], $2::text[]) AS t(c, usr)
         WHERE EXISTS (SELECT 1 FROM presence_user_rooms r
                       WHERE r.company_id = t.c AND r.user_id = t.usr)
            OR EXISTS (SELECT 1 FROM presence_sockets s
                       JOIN presence_rooms r ON r.company_id = s.company_id
                                            AND r.socket_id = s.socket_id
                       WHERE s.company_id = t.c AND s.user_id = t.usr)",
    )
    .bind(&companies)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(company_id, user_id): (String, String)| UserKey {
        company_id,
        user_id,
    })
    .collect();
    let mut decided: HashMap<&UserKey, (UserPresence, Option<Change>, Vec<RoomChange>)> =
        HashMap::with_capacity(held.len());
    for user in held.iter().copied().filter(|u| in_rooms.contains(*u)) {
        let outcome = locked(&mut tx, user, stored[user], rule).await?;
        decided.insert(user, outcome);
    }
    let plain: Vec<&UserKey> = held
        .iter()
        .copied()
        .filter(|u| !in_rooms.contains(*u))
        .collect();
    let counted = stale_and_counts(&mut tx, &plain, rule.stale_before).await?;
    for user in plain {
        let Some(&(sockets, last)) = counted.get(user) else {
            return Err(StoreError::Corrupt(format!(
                "no socket count came back for user `{}`",
                user.user_id
            )));
        };
        let current = match last {
            Some(last) => transition::reap(stored[user], last),
            None => stored[user],
        };
        let (next, change) = transition::settle(current, sockets, rule.now, rule.grace_ms);
        decided.insert(user, (next, change, Vec::new()));
    }
    let changed: Vec<(&UserKey, UserPresence)> = held
        .iter()
        .filter_map(|u| {
            let (next, _, _) = decided.get(*u)?;
            (*next != stored[*u]).then_some((*u, *next))
        })
        .collect();
    save(&mut tx, &changed).await?;
    let offline: Vec<&UserKey> = held
        .iter()
        .copied()
        .filter(|u| matches!(decided.get(u), Some((_, Some(Change::Offline { .. }), _))))
        .collect();
    let counts = online_counts(&mut tx, &offline, rule.count_up_to).await?;
    tx.commit().await?;

    let mut left_in_company: HashMap<&str, i64> = HashMap::new();
    for u in &offline {
        *left_in_company.entry(u.company_id.as_str()).or_default() += 1;
    }
    let mut answered: HashSet<&UserKey> = HashSet::new();
    let mut answers = Vec::with_capacity(users.len());
    for user in users {
        let first = answered.insert(user);
        let Some((_, change, rooms)) = decided.get(user).filter(|_| first) else {
            answers.push(Transitions::default());
            continue;
        };
        let company_online = match change {
            Some(Change::Offline { .. }) => {
                let company = user.company_id.as_str();
                let still_online = left_in_company.get_mut(company).map_or(0, |n| {
                    *n -= 1;
                    *n
                });
                let counted = counts.get(company).copied().unwrap_or(0);
                Some(in_turn(counted, still_online, rule.count_up_to))
            }
            _ => None,
        };
        answers.push(Transitions {
            user: change.clone(),
            company_online,
            rooms: rooms.clone(),
            settle: false,
        });
    }
    Ok(answers)
}

/// The count one user's `user:offline` gets in a batch: what settling the
/// batch's users one by one would have counted for it. `counted` is the
/// company's count after the whole batch; `still_online` how many of the
/// batch's later departures of that company were then still online.
/// Counts stop at `up_to` + 1 ("above"), as [`count_online`] does.
fn in_turn(counted: i64, still_online: i64, up_to: i64) -> i64 {
    counted
        .saturating_add(still_online)
        .min(up_to.saturating_add(1))
}

fn columns<'a>(users: &[&'a UserKey]) -> (Vec<&'a str>, Vec<&'a str>) {
    users
        .iter()
        .map(|u| (u.company_id.as_str(), u.user_id.as_str()))
        .unzip()
}

/// Removes the stale sockets of `users` (locked, none in entity rooms) and
/// counts each one's remaining sockets: per user, the sockets left and the
/// last heartbeat of the removed ones.
async fn stale_and_counts(
    tx: &mut Tx<'_>,
    users: &[&UserKey],
    stale_before: i64,
) -> Result<HashMap<UserKey, (i64, Option<i64>)>, StoreError> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let (companies, ids) = columns(users);
    // The statement's snapshot still holds the deleted rows: hence the
    // subtraction (as in the departure batch).
    let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM presence_sockets s
             USING unnest($1::text[], $2::text[]) AS t(c, usr)
             WHERE s.company_id = t.c AND s.user_id = t.usr AND s.heartbeat_at < $3
             RETURNING s.company_id, s.user_id, s.heartbeat_at
         )
         SELECT t.c, t.usr,
                (SELECT count(*) FROM presence_sockets s
                 WHERE s.company_id = t.c AND s.user_id = t.usr)
              - coalesce(g.n, 0),
                g.last
         FROM unnest($1::text[], $2::text[]) AS t(c, usr)
         LEFT JOIN (SELECT company_id, user_id, count(*) AS n, max(heartbeat_at) AS last
                    FROM gone GROUP BY 1, 2) g
                ON g.company_id = t.c AND g.user_id = t.usr",
    )
    .bind(&companies)
    .bind(&ids)
    .bind(stale_before)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(company_id, user_id, sockets, last)| {
            let user = UserKey {
                company_id,
                user_id,
            };
            (user, (sockets, last))
        })
        .collect())
}

/// Each company's online users after the batch's changes, counted up to
/// `up_to` + 1, in one statement.
async fn online_counts(
    tx: &mut Tx<'_>,
    users: &[&UserKey],
    up_to: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    let mut companies: Vec<&str> = users.iter().map(|u| u.company_id.as_str()).collect();
    companies.sort_unstable();
    companies.dedup();
    if companies.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c, (SELECT count(*) FROM (SELECT 1 FROM presence_users
                    WHERE company_id = c AND online LIMIT $2) AS online)
         FROM unnest($1::text[]) AS c",
    )
    .bind(&companies)
    .bind(up_to.saturating_add(1))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::in_turn;

    #[test]
    fn each_departure_in_a_batch_is_counted_as_if_settled_alone() {
        // Three of a company leave in one batch, which then counts 499
        // online with a bound of 500: one by one they would have counted
        // 501, 500 and 499.
        let counts: Vec<i64> = [2, 1, 0].iter().map(|&s| in_turn(499, s, 500)).collect();
        assert_eq!(counts, [501, 500, 499]);
        // Above the bound the count stops at bound + 1, as the query does.
        assert_eq!(in_turn(501, 2, 500), 501);
    }
}
