//! PostgreSQL: registering and removing many sockets in one transaction
//! (the batches of [`crate::presence`]'s registrar), for sockets without
//! entity rooms. The rules are the single socket's ([`super::postgres_presence`]);
//! only the statements are shared: four round trips per batch however
//! many sockets it carries. Users are locked in one order (sorted, as
//! every multi-user transaction here locks them), so batches on several
//! nodes, and the single-socket transactions, cannot deadlock.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgPool;

use super::StoreError;
use super::presence::{SocketEntry, UserKey};
use crate::domain::presence::{self as transition, Transitions, UserPresence};

/// Registers `sockets` (none with entity rooms): one answer per socket, in
/// order. Of a user's sockets, the first makes the user online.
pub(super) async fn join(
    pool: &PgPool,
    sockets: &[SocketEntry],
    now: i64,
) -> Result<Vec<Transitions>, StoreError> {
    if sockets.is_empty() {
        return Ok(Vec::new());
    }
    let first = first_rows(sockets, now);
    let mut tx = pool.begin().await?;
    // Creates the new users' rows and locks every row, in key order (the
    // insert takes its rows in the order of the sorted select). A user
    // never seen before is inserted as the batch leaves it, so a first
    // connect writes its user's row once, not once here and once below
    // (in a storm of new devices, half the row versions and index entries).
    let rows: Vec<(String, String, bool, i64, Option<i64>, bool)> = sqlx::query_as(
        "INSERT INTO presence_users AS u (company_id, user_id, role, online, since, left_at, online_by)
         SELECT c, usr, r, o, s, l, b
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::int8[], $6::int8[], $7::text[])
              AS t(c, usr, r, o, s, l, b)
         ORDER BY c, usr
         ON CONFLICT (company_id, user_id) DO UPDATE SET role = EXCLUDED.role
         RETURNING u.company_id, u.user_id, u.online, u.since, u.left_at,
                   u.xmax = 0 -- no locker: this statement inserted the row",
    )
    .bind(first.iter().map(|f| f.user.company_id.as_str()).collect::<Vec<_>>())
    .bind(first.iter().map(|f| f.user.user_id.as_str()).collect::<Vec<_>>())
    .bind(first.iter().map(|f| f.role).collect::<Vec<_>>())
    .bind(first.iter().map(|f| f.state.online).collect::<Vec<_>>())
    .bind(first.iter().map(|f| f.state.since).collect::<Vec<_>>())
    .bind(first.iter().map(|f| f.state.left_at).collect::<Vec<_>>())
    .bind(first.iter().map(|f| f.by).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    // Per user: the state its transitions have reached (from where they
    // start: offline for a row the insert created) and the state its row
    // holds now.
    let mut states: HashMap<UserKey, (UserPresence, UserPresence)> = rows
        .into_iter()
        .map(|(company_id, user_id, online, since, left_at, inserted)| {
            let stored = UserPresence {
                online,
                since,
                left_at,
            };
            let start = if inserted {
                UserPresence::OFFLINE
            } else {
                stored
            };
            let user = UserKey {
                company_id,
                user_id,
            };
            (user, (start, stored))
        })
        .collect();
    let mut answers = Vec::with_capacity(sockets.len());
    for s in sockets {
        let state = states.get_mut(&s.user()).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "no presence row came back for user `{}`",
                s.user_id
            ))
        })?;
        let (next, change) = transition::join(state.0, &s.role, now);
        state.0 = next;
        answers.push(Transitions {
            user: change,
            ..Transitions::default()
        });
    }
    let changed: Vec<(&UserKey, &UserPresence)> = states
        .iter()
        .filter(|(_, (next, stored))| next != stored)
        .map(|(user, (next, _))| (user, next))
        .collect();
    // The socket whose registration took each of them online.
    let by: HashMap<UserKey, &str> = sockets
        .iter()
        .zip(&answers)
        .filter(|(_, t)| t.user.is_some())
        .map(|(s, _)| (s.user(), s.socket_id.as_str()))
        .collect();
    let socket_rows = sqlx::query(if changed.is_empty() {
        INSERT_SOCKETS
    } else {
        INSERT_SOCKETS_AND_UPDATE_USERS
    })
    .bind(
        sockets
            .iter()
            .map(|s| s.company_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        sockets
            .iter()
            .map(|s| s.socket_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        sockets
            .iter()
            .map(|s| s.user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(sockets.iter().map(|s| s.role.as_str()).collect::<Vec<_>>())
    .bind(
        sockets
            .iter()
            .map(|s| s.node_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(sockets.iter().map(|s| s.since).collect::<Vec<_>>())
    .bind(now);
    let statement = if changed.is_empty() {
        socket_rows
    } else {
        socket_rows
            .bind(
                changed
                    .iter()
                    .map(|(u, _)| u.company_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                changed
                    .iter()
                    .map(|(u, _)| u.user_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(changed.iter().map(|(_, p)| p.online).collect::<Vec<_>>())
            .bind(changed.iter().map(|(_, p)| p.since).collect::<Vec<_>>())
            .bind(changed.iter().map(|(_, p)| p.left_at).collect::<Vec<_>>())
            .bind(
                changed
                    .iter()
                    .map(|(u, _)| by.get(*u).copied())
                    .collect::<Vec<_>>(),
            )
    };
    statement.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(answers)
}

/// The sockets' rows of a registration batch (`$1`–`$7`); a macro so that
/// both statements below are literals built from one text.
macro_rules! insert_sockets {
    () => {
        "INSERT INTO presence_sockets
             (company_id, socket_id, user_id, role, node_id, since, heartbeat_at)
         SELECT c, s, usr, r, n, since, $7
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[])
              AS t(c, s, usr, r, n, since)
         ON CONFLICT (company_id, socket_id)
         DO UPDATE SET node_id = EXCLUDED.node_id, heartbeat_at = EXCLUDED.heartbeat_at"
    };
}

/// A batch whose users' rows are already as it leaves them.
const INSERT_SOCKETS: &str = insert_sockets!();

/// The sockets' rows and the users' new states, in one statement.
const INSERT_SOCKETS_AND_UPDATE_USERS: &str = concat!(
    "WITH sockets AS (",
    insert_sockets!(),
    ")
     UPDATE presence_users AS u
     SET online = t.online, since = t.since, left_at = t.left_at,
         online_by = COALESCE(t.by, u.online_by)
     FROM unnest($8::text[], $9::text[], $10::bool[], $11::int8[], $12::int8[], $13::text[])
          AS t(c, usr, online, since, left_at, by)
     WHERE u.company_id = t.c AND u.user_id = t.usr"
);

/// One user's row as a batch would insert it: its last socket's role (as
/// registering the sockets one by one would leave it) and the state its
/// sockets take it to from [`UserPresence::OFFLINE`], with the socket that
/// took it online.
struct FirstRow<'a> {
    user: UserKey,
    role: &'a str,
    state: UserPresence,
    by: Option<&'a str>,
}

/// One [`FirstRow`] per user of `sockets`, in key order (the upsert may
/// touch a row only once, and takes the locks in this order).
fn first_rows(sockets: &[SocketEntry], now: i64) -> Vec<FirstRow<'_>> {
    let mut rows: BTreeMap<UserKey, FirstRow<'_>> = BTreeMap::new();
    for s in sockets {
        let row = rows.entry(s.user()).or_insert_with(|| FirstRow {
            user: s.user(),
            role: &s.role,
            state: UserPresence::OFFLINE,
            by: None,
        });
        row.role = &s.role;
        let (next, change) = transition::join(row.state, &s.role, now);
        row.state = next;
        if change.is_some() {
            row.by = Some(&s.socket_id);
        }
    }
    rows.into_values().collect()
}

/// Removes `sockets` (none recorded with entity rooms) as departures at
/// `now`: one answer per socket, in order, `true` for the socket whose
/// departure left its user without sockets (the last of the user's in the
/// batch).
pub(super) async fn leave(
    pool: &PgPool,
    sockets: &[(UserKey, String)],
    now: i64,
) -> Result<Vec<bool>, StoreError> {
    if sockets.is_empty() {
        return Ok(Vec::new());
    }
    let mut users: Vec<&UserKey> = sockets.iter().map(|(u, _)| u).collect();
    users.sort();
    users.dedup();
    let (companies, ids): (Vec<&str>, Vec<&str>) = users
        .iter()
        .map(|u| (u.company_id.as_str(), u.user_id.as_str()))
        .unzip();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT 1 FROM presence_users
         WHERE (company_id, user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY company_id, user_id FOR UPDATE",
    )
    .bind(&companies)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    // Under the locks: the departures' time, the sockets gone, and each
    // user's sockets counted without them (the statement's snapshot still
    // holds the deleted rows: hence the subtraction).
    let left: Vec<(String, String, i64)> = sqlx::query_as(
        "WITH stamped AS (
             UPDATE presence_users SET left_at = $5
             WHERE (company_id, user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ), gone AS (
             DELETE FROM presence_sockets
             WHERE (company_id, socket_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
             RETURNING company_id, user_id
         )
         SELECT t.c, t.usr,
                (SELECT count(*) FROM presence_sockets s
                 WHERE s.company_id = t.c AND s.user_id = t.usr)
              - coalesce(g.n, 0)
         FROM unnest($1::text[], $2::text[]) AS t(c, usr)
         LEFT JOIN (SELECT company_id, user_id, count(*) AS n FROM gone GROUP BY 1, 2) g
                ON g.company_id = t.c AND g.user_id = t.usr",
    )
    .bind(&companies)
    .bind(&ids)
    .bind(
        sockets
            .iter()
            .map(|(u, _)| u.company_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(sockets.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>())
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let none_left: HashMap<UserKey, bool> = left
        .into_iter()
        .map(|(company_id, user_id, n)| {
            let user = UserKey {
                company_id,
                user_id,
            };
            (user, n <= 0)
        })
        .collect();
    Ok(last_of_each_user(sockets, &none_left))
}

/// `true` for the last socket of each user the batch left without sockets.
fn last_of_each_user(
    sockets: &[(UserKey, String)],
    none_left: &HashMap<UserKey, bool>,
) -> Vec<bool> {
    let mut seen = std::collections::HashSet::new();
    let mut answers: Vec<bool> = sockets
        .iter()
        .rev()
        .map(|(user, _)| seen.insert(user) && none_left.get(user).copied().unwrap_or(false))
        .collect();
    answers.reverse();
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserKey {
        UserKey {
            company_id: "c".into(),
            user_id: id.into(),
        }
    }

    #[test]
    fn only_the_last_departure_of_a_user_left_without_sockets_settles() {
        let sockets = [
            (user("a"), "s1".to_string()),
            (user("b"), "s2".to_string()),
            (user("a"), "s3".to_string()),
            (user("c"), "s4".to_string()),
        ];
        let none_left = HashMap::from([(user("a"), true), (user("b"), false), (user("c"), true)]);
        assert_eq!(
            last_of_each_user(&sockets, &none_left),
            vec![false, false, true, true]
        );
    }
}
