//! Presence store contract for batches (the registrar's
//! `presence_join_many` / `presence_leave_many`): the same transitions as
//! one socket at a time, on PostgreSQL and SQLite, also while batches race
//! single registrations and offline decisions.

mod common;

use common::presence::{BOUND, GRACE, NEVER_STALE, socket, user};

use switchyard::domain::presence::Change;
use switchyard::store::{SocketEntry, Store, UserKey};

async fn online_users(store: &dyn Store, company: &str) -> Vec<(String, i64)> {
    store
        .presence_list(company, None)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.user_id, u.connections))
        .collect()
}

fn is_online(change: &Option<Change>) -> bool {
    matches!(change, Some(Change::Online { .. }))
}

#[tokio::test]
async fn a_batch_makes_each_user_online_once_and_its_departures_settle_the_last() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        store
            .presence_join(&socket(&c, "u4", "s0", "n1", &[]), 9_000)
            .await
            .unwrap();
        let batch = [
            socket(&c, "u1", "s1", "n1", &[]),
            socket(&c, "u2", "s2", "n1", &[]),
            socket(&c, "u1", "s3", "n1", &[]),
            socket(&c, "u3", "s4", "n1", &["order:7"]),
            socket(&c, "u4", "s5", "n1", &[]),
        ];
        let joined: Vec<_> = store
            .presence_join_many(&batch, 10_000)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let online: Vec<bool> = joined.iter().map(|t| is_online(&t.user)).collect();
        assert_eq!(online, [true, true, false, true, false], "{backend}");
        assert_eq!(joined[3].rooms.len(), 1, "{backend}: u3 entered order:7");
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![
                ("u1".into(), 2),
                ("u2".into(), 1),
                ("u3".into(), 1),
                ("u4".into(), 2)
            ],
            "{backend}"
        );

        let gone = [
            (user(&c, "u1"), "s1".to_string()),
            (user(&c, "u2"), "s2".to_string()),
            (user(&c, "u1"), "s3".to_string()),
            (user(&c, "u4"), "s5".to_string()),
        ];
        let settle: Vec<bool> = store
            .presence_leave_many(&gone, 20_000)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(settle, [false, true, true, false], "{backend}");
        // Listed until the grace period has passed, with no sockets.
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![
                ("u1".into(), 0),
                ("u2".into(), 0),
                ("u3".into(), 1),
                ("u4".into(), 1)
            ],
            "{backend}"
        );
        for u in ["u1", "u2"] {
            let early = store
                .presence_settle(&user(&c, u), NEVER_STALE, 20_500, GRACE, BOUND)
                .await
                .unwrap();
            assert_eq!(early.user, None, "{backend}: {u} within the grace period");
            let settled = store
                .presence_settle(&user(&c, u), NEVER_STALE, 21_000, GRACE, BOUND)
                .await
                .unwrap();
            assert!(
                matches!(settled.user, Some(Change::Offline { .. })),
                "{backend}: {u} offline after the grace period"
            );
        }
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![("u3".into(), 1), ("u4".into(), 1)],
            "{backend}"
        );
    }
}

/// Batches of registrations on four "nodes", racing single registrations
/// of the same users, then batches of departures racing offline
/// decisions: exactly one online and one offline transition per user, and
/// no deadlock (PostgreSQL would abort one of the transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_racing_singles_and_settles_transition_exactly_once() {
    const USERS: usize = 12;
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let mut joins = Vec::new();
        for node in 0..4 {
            // Each node's batch holds every user, in a different order.
            let mut batch: Vec<SocketEntry> = (0..USERS)
                .map(|u| {
                    socket(
                        &c,
                        &format!("u{u}"),
                        &format!("b{node}-{u}"),
                        &format!("n{node}"),
                        &[],
                    )
                })
                .collect();
            batch.rotate_left(node * 3);
            let store = store.clone();
            joins.push(tokio::spawn(async move {
                store
                    .presence_join_many(&batch, 10_000)
                    .await
                    .into_iter()
                    .zip(batch)
                    .map(|(r, s)| (s.user_id, is_online(&r.unwrap().user)))
                    .collect::<Vec<_>>()
            }));
        }
        for u in 0..USERS {
            let store = store.clone();
            let entry = socket(&c, &format!("u{u}"), &format!("single-{u}"), "n1", &[]);
            joins.push(tokio::spawn(async move {
                let change = store.presence_join(&entry, 10_000).await.unwrap().user;
                vec![(entry.user_id, is_online(&change))]
            }));
        }
        let mut onlines = std::collections::BTreeMap::<String, usize>::new();
        for done in futures::future::join_all(joins).await {
            for (u, online) in done.unwrap() {
                *onlines.entry(u).or_default() += usize::from(online);
            }
        }
        assert_eq!(onlines.len(), USERS, "{backend}");
        assert!(
            onlines.values().all(|&n| n == 1),
            "{backend}: one online per user: {onlines:?}"
        );
        assert!(
            online_users(store.as_ref(), &c)
                .await
                .iter()
                .all(|(_, n)| *n == 5),
            "{backend}"
        );

        let mut tasks = Vec::new();
        for node in 0..4 {
            let gone: Vec<(UserKey, String)> = (0..USERS)
                .map(|u| (user(&c, &format!("u{u}")), format!("b{node}-{u}")))
                .collect();
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for r in store.presence_leave_many(&gone, 20_000).await {
                    r.unwrap();
                }
            }));
        }
        for u in 0..USERS {
            let store = store.clone();
            let key = user(&c, &format!("u{u}"));
            tasks.push(tokio::spawn(async move {
                store
                    .presence_leave(&key, &format!("single-{u}"), false, 20_000)
                    .await
                    .unwrap();
            }));
        }
        for done in futures::future::join_all(tasks).await {
            done.unwrap();
        }
        let settles = (0..USERS * 3).map(|i| {
            let store = store.clone();
            let key = user(&c, &format!("u{}", i % USERS));
            tokio::spawn(async move {
                let t = store
                    .presence_settle(&key, NEVER_STALE, 30_000, GRACE, BOUND)
                    .await
                    .unwrap();
                matches!(t.user, Some(Change::Offline { .. }))
            })
        });
        let offlines = futures::future::join_all(settles)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(true)))
            .count();
        assert_eq!(offlines, USERS, "{backend}: one offline per user");
        assert_eq!(online_users(store.as_ref(), &c).await, vec![], "{backend}");
    }
}
