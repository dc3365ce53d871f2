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

/// A batch writes a new user's row in one step and updates a known one:
/// either way the user is online since the batch, through its first socket
/// in the batch (what `presence_made_by` asks after an unknown outcome),
/// and a user already online keeps the socket that took it online.
#[tokio::test]
async fn a_batch_records_the_socket_that_took_each_user_online_for_new_and_known_users() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        // u2 was online once and is offline now; u3 is online through s0.
        store
            .presence_join(&socket(&c, "u2", "s-old", "n1", &[]), 1_000)
            .await
            .unwrap();
        store
            .presence_leave(&user(&c, "u2"), "s-old", false, 2_000)
            .await
            .unwrap();
        let settled = store
            .presence_settle(&user(&c, "u2"), NEVER_STALE, 2_000 + GRACE, GRACE, BOUND)
            .await
            .unwrap();
        assert!(
            matches!(settled.user, Some(Change::Offline { .. })),
            "{backend}"
        );
        store
            .presence_join(&socket(&c, "u3", "s0", "n1", &[]), 9_000)
            .await
            .unwrap();

        let batch = [
            socket(&c, "u1", "s1", "n1", &[]),
            socket(&c, "u2", "s2", "n1", &[]),
            socket(&c, "u1", "s3", "n1", &[]),
            socket(&c, "u2", "s4", "n1", &[]),
            socket(&c, "u3", "s5", "n1", &[]),
        ];
        let online: Vec<bool> = store
            .presence_join_many(&batch, 10_000)
            .await
            .into_iter()
            .map(|r| is_online(&r.unwrap().user))
            .collect();
        assert_eq!(online, [true, true, false, false, false], "{backend}");

        let expected = [
            ("u1", "s1", Some(10_000)),
            ("u1", "s3", None),
            ("u2", "s2", Some(10_000)),
            ("u2", "s4", None),
            ("u2", "s-old", None),
            ("u3", "s0", Some(9_000)),
            ("u3", "s5", None),
        ];
        for (u, s, since) in expected {
            let made = store
                .presence_made_by(&user(&c, u), s, 10_000)
                .await
                .unwrap();
            assert_eq!(made.online_since, since, "{backend}: {u} through {s}");
        }
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![("u1".into(), 2), ("u2".into(), 2), ("u3".into(), 2)],
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

/// Builds one company's presence for [`a_settle_batch_decides_as_settling_one_by_one`]:
/// departures before and within the grace period, a reconnect, entity
/// rooms, a dead node's sockets (heartbeat 2 s) beside live ones (10 s on).
async fn settle_scene(store: &dyn Store, c: &str) -> Vec<UserKey> {
    let join = |u: &str, s: &str, node: &str, rooms: &[&str], at: i64| {
        let entry = socket(c, u, s, node, rooms);
        async move { store.presence_join(&entry, at).await.unwrap() }
    };
    let leave = |u: &str, s: &str, in_rooms: bool, at: i64| {
        let (key, s) = (user(c, u), s.to_string());
        async move { store.presence_leave(&key, &s, in_rooms, at).await.unwrap() }
    };
    join("u1", "s1", "live", &[], 10_000).await;
    leave("u1", "s1", false, 11_000).await;
    join("u2", "s2", "live", &[], 10_000).await;
    leave("u2", "s2", false, 11_000).await;
    join("u2", "s2b", "live", &[], 12_000).await;
    join("u3", "s3", "live", &[], 10_000).await;
    leave("u3", "s3", false, 19_500).await;
    join("u4", "s4", "live", &["order:7"], 10_000).await;
    leave("u4", "s4", true, 11_000).await;
    join("u5", "s5", "dead", &[], 2_000).await;
    join("u6", "s6", "dead", &[], 2_000).await;
    join("u6", "s6b", "live", &[], 10_000).await;
    join("u7", "s7", "dead", &["order:9"], 2_000).await;
    join("u8", "s8", "live", &[], 10_000).await;
    [
        "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "nobody", "u1",
    ]
    .iter()
    .map(|u| user(c, u))
    .collect()
}

/// The settle batch of a reconnect storm's grace timers: the same
/// transitions, counts and rows as settling each user alone, in order, on
/// the same state (built twice, in two companies).
#[tokio::test]
async fn a_settle_batch_decides_as_settling_one_by_one() {
    // Sockets with a heartbeat before 5 s are a dead node's.
    const STALE_BEFORE: i64 = 5_000;
    // A small bound, so the counts also stop at bound + 1 here.
    const UP_TO: i64 = 5;
    for (backend, store) in common::stores().await {
        let (alone, batched) = (common::unique("c"), common::unique("c"));
        let users = settle_scene(store.as_ref(), &alone).await;
        let mut one_by_one = Vec::new();
        for u in &users {
            let t = store
                .presence_settle(u, STALE_BEFORE, 20_000, GRACE, UP_TO)
                .await
                .unwrap();
            one_by_one.push(t);
        }
        let users = settle_scene(store.as_ref(), &batched).await;
        let in_batch: Vec<_> = store
            .presence_settle_many(&users, STALE_BEFORE, 20_000, GRACE, UP_TO)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(in_batch, one_by_one, "{backend}");

        // What both decided: u1 and u4 left for good, u5 and u7 with their
        // dead node; u2 came back, u3 is within the grace period, u6 and u8
        // are connected; nobody has no row, and u1's second entry changes
        // nothing.
        let offline: Vec<(&str, Option<i64>)> = users
            .iter()
            .zip(&in_batch)
            .filter(|(_, t)| matches!(t.user, Some(Change::Offline { .. })))
            .map(|(u, t)| (u.user_id.as_str(), t.company_online))
            .collect();
        assert_eq!(
            offline,
            [
                ("u1", Some(6)),
                ("u4", Some(6)),
                ("u5", Some(5)),
                ("u7", Some(4))
            ],
            "{backend}: one by one the company had 7, 6, 5 and 4 online"
        );
        let left_rooms: Vec<Vec<&str>> = in_batch
            .iter()
            .map(|t| t.rooms.iter().map(|r| r.room.as_str()).collect())
            .collect();
        assert_eq!(left_rooms[3], ["order:7"], "{backend}");
        assert_eq!(left_rooms[6], ["order:9"], "{backend}");
        assert_eq!(in_batch[8], Default::default(), "{backend}: nobody");
        assert_eq!(in_batch[9], Default::default(), "{backend}: u1 again");
        for c in [&alone, &batched] {
            assert_eq!(
                online_users(store.as_ref(), c).await,
                vec![
                    ("u2".into(), 1),
                    ("u3".into(), 0),
                    ("u6".into(), 1),
                    ("u8".into(), 1)
                ],
                "{backend}: u6's dead socket is gone"
            );
            for room in ["order:7", "order:9"] {
                let left = store.presence_list(c, Some(room)).await.unwrap();
                assert!(left.is_empty(), "{backend}: {room}: {left:?}");
            }
        }
    }
}

/// A settle batch racing registrations of its users: each user that the
/// batch took offline is brought back by its registration, and none stays
/// offline with a socket (PostgreSQL: the batch locks its users first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settle_batch_racing_registrations_leaves_no_connected_user_offline() {
    const USERS: usize = 16;
    for (backend, store) in common::stores().await {
        for round in 0..5 {
            let c = common::unique("c");
            let users: Vec<UserKey> = (0..USERS).map(|u| user(&c, &format!("u{u}"))).collect();
            for u in &users {
                let s1 = format!("{}-1", u.user_id);
                store
                    .presence_join(&socket(&c, &u.user_id, &s1, "a", &[]), 10_000)
                    .await
                    .unwrap();
                store.presence_leave(u, &s1, false, 11_000).await.unwrap();
            }
            let joins = users.iter().map(|u| {
                let s2 = format!("{}-2", u.user_id);
                let (store, entry) = (store.clone(), socket(&c, &u.user_id, &s2, "b", &[]));
                tokio::spawn(async move { store.presence_join(&entry, 20_000).await.unwrap().user })
            });
            let settle = {
                let (store, users) = (store.clone(), users.clone());
                tokio::spawn(async move {
                    store
                        .presence_settle_many(&users, NEVER_STALE, 20_000, GRACE, BOUND)
                        .await
                })
            };
            let (joined, settled) = tokio::join!(futures::future::join_all(joins), settle);
            for (i, (joined, settled)) in joined.into_iter().zip(settled.unwrap()).enumerate() {
                let (joined, settled) = (joined.unwrap(), settled.unwrap().user);
                match settled {
                    None => assert_eq!(joined, None, "{backend} round {round} u{i}"),
                    Some(Change::Offline { .. }) => assert!(
                        matches!(joined, Some(Change::Online { .. })),
                        "{backend} round {round} u{i}: offline, then back"
                    ),
                    other => panic!("{backend}: {other:?}"),
                }
            }
            assert!(
                online_users(store.as_ref(), &c)
                    .await
                    .iter()
                    .all(|(_, n)| *n == 1),
                "{backend} round {round}: {:?}",
                online_users(store.as_ref(), &c).await
            );
            assert_eq!(
                online_users(store.as_ref(), &c).await.len(),
                USERS,
                "{backend}"
            );
        }
    }
}

/// Settle batches of several nodes over the same users, each in its own
/// order, half the users in an entity room: every user goes offline once
/// and leaves its room once, and no batch fails (PostgreSQL would abort
/// one of two transactions that deadlocked).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settle_batches_of_several_nodes_take_each_user_offline_once() {
    const USERS: usize = 12;
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let users: Vec<UserKey> = (0..USERS).map(|u| user(&c, &format!("u{u}"))).collect();
        for (i, u) in users.iter().enumerate() {
            let rooms: &[&str] = if i % 2 == 0 { &["order:1"] } else { &[] };
            let s = format!("{}-1", u.user_id);
            store
                .presence_join(&socket(&c, &u.user_id, &s, "a", rooms), 10_000)
                .await
                .unwrap();
            store
                .presence_leave(u, &s, !rooms.is_empty(), 11_000)
                .await
                .unwrap();
        }
        let batches = (0..4).map(|node| {
            let (store, mut batch) = (store.clone(), users.clone());
            batch.rotate_left(node * 5 % USERS);
            if node % 2 == 1 {
                batch.reverse();
            }
            tokio::spawn(async move {
                store
                    .presence_settle_many(&batch, NEVER_STALE, 20_000, GRACE, BOUND)
                    .await
                    .into_iter()
                    .zip(batch)
                    .map(|(t, u)| (u.user_id, t.unwrap()))
                    .collect::<Vec<_>>()
            })
        });
        let mut offline = std::collections::BTreeMap::<String, usize>::new();
        let mut left_room = std::collections::BTreeMap::<String, usize>::new();
        for done in futures::future::join_all(batches).await {
            for (u, t) in done.unwrap() {
                if matches!(t.user, Some(Change::Offline { .. })) {
                    *offline.entry(u.clone()).or_default() += 1;
                }
                *left_room.entry(u).or_default() += t.rooms.len();
            }
        }
        assert_eq!(offline.len(), USERS, "{backend}: {offline:?}");
        assert!(offline.values().all(|&n| n == 1), "{backend}: {offline:?}");
        let in_room: Vec<usize> = (0..USERS)
            .map(|i| left_room.get(&format!("u{i}")).copied().unwrap_or(0))
            .collect();
        let expected: Vec<usize> = (0..USERS).map(|i| usize::from(i % 2 == 0)).collect();
        assert_eq!(in_room, expected, "{backend}: one presence:left each");
        assert_eq!(online_users(store.as_ref(), &c).await, vec![], "{backend}");
    }
}
