//! Presence store contract in entity rooms (`presence:joined` /
//! `presence:left`): the same cases on PostgreSQL and SQLite.

mod common;

use common::presence::{BOUND, GRACE, NEVER_STALE, socket, user};

use std::sync::Arc;

use switchyard::domain::presence::{Change, RoomChange, Transitions};
use switchyard::store::{SocketEntry, Store, UserKey};

fn rooms(list: &[&str]) -> Vec<String> {
    list.iter().map(|r| r.to_string()).collect()
}

fn joined(room: &str, at: i64) -> RoomChange {
    RoomChange {
        room: room.into(),
        change: Change::Online {
            role: "operator".into(),
            at,
        },
    }
}

fn left(room: &str, at: i64, duration: i64) -> RoomChange {
    RoomChange {
        room: room.into(),
        change: Change::Offline { at, duration },
    }
}

async fn listed(store: &dyn Store, company: &str, room: &str) -> Vec<(String, i64)> {
    store
        .presence_list(company, Some(room))
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.user_id, u.connections))
        .collect()
}

async fn settle(store: &dyn Store, u: &UserKey, now: i64) -> Transitions {
    store
        .presence_settle(u, NEVER_STALE, now, GRACE, BOUND)
        .await
        .unwrap()
}

#[tokio::test]
async fn first_socket_in_a_room_joins_it_last_one_leaves_after_grace() {
    for (backend, store) in common::stores().await {
        let store = store.as_ref();
        let c = common::unique("c");
        let u1 = user(&c, "u1");
        let first = store
            .presence_join(&socket(&c, "u1", "s1", "n1", &["machine:m1"]), 10_000)
            .await
            .unwrap();
        assert!(first.user.is_some(), "{backend}");
        assert_eq!(first.rooms, vec![joined("machine:m1", 10_000)], "{backend}");
        // A second tab in the room, on another node: nothing.
        let second = store
            .presence_join(&socket(&c, "u1", "s2", "n2", &["machine:m1"]), 11_000)
            .await
            .unwrap();
        assert!(second.is_empty(), "{backend}: {second:?}");
        // A third socket subscribes to another room later.
        let s3 = socket(&c, "u1", "s3", "n2", &[]);
        assert!(store.presence_join(&s3, 11_000).await.unwrap().is_empty());
        let sub = store
            .presence_rooms(&s3, &rooms(&["machine:m2", "machine:m1"]), &[], 11_500)
            .await
            .unwrap();
        assert_eq!(sub.rooms, vec![joined("machine:m2", 11_500)], "{backend}");
        assert_eq!(
            listed(store, &c, "machine:m1").await,
            vec![("u1".into(), 3)]
        );

        // Two of three sockets leave machine:m1: no settle needed.
        let s1 = socket(&c, "u1", "s1", "n1", &[]);
        let unsub = store
            .presence_rooms(&s1, &[], &rooms(&["machine:m1"]), 12_000)
            .await
            .unwrap();
        assert!(unsub.is_empty(), "{backend}: {unsub:?}");
        let unsub = store
            .presence_rooms(&s3, &[], &rooms(&["machine:m1"]), 12_500)
            .await
            .unwrap();
        assert!(unsub.is_empty(), "{backend}: {unsub:?}");
        // The last one in machine:m1 goes with its socket: settle, though
        // the user keeps two sockets.
        assert!(store.presence_leave(&u1, "s2", true, 13_000).await.unwrap());
        assert!(
            settle(store, &u1, 13_500).await.is_empty(),
            "{backend}: grace"
        );
        assert_eq!(
            listed(store, &c, "machine:m1").await,
            vec![("u1".into(), 0)]
        );
        let off = settle(store, &u1, 14_000).await;
        assert_eq!(
            off,
            Transitions {
                rooms: vec![left("machine:m1", 13_000, 3_000)],
                ..Transitions::default()
            },
            "{backend}"
        );
        assert!(
            listed(store, &c, "machine:m1").await.is_empty(),
            "{backend}"
        );
        assert_eq!(
            listed(store, &c, "machine:m2").await,
            vec![("u1".into(), 1)]
        );
        assert!(
            settle(store, &u1, 99_000).await.is_empty(),
            "{backend}: once"
        );
        // Coming back is a new presence:joined.
        let back = store
            .presence_rooms(&s1, &rooms(&["machine:m1"]), &[], 20_000)
            .await
            .unwrap();
        assert_eq!(back.rooms, vec![joined("machine:m1", 20_000)], "{backend}");
    }
}

#[tokio::test]
async fn a_return_within_grace_is_no_transition() {
    for (backend, store) in common::stores().await {
        let store = store.as_ref();
        let c = common::unique("c");
        let u1 = user(&c, "u1");
        let s1 = socket(&c, "u1", "s1", "a", &["order:1"]);
        store.presence_join(&s1, 10_000).await.unwrap();
        // Unsubscribe and subscribe again.
        let out = store
            .presence_rooms(&s1, &[], &rooms(&["order:1"]), 11_000)
            .await
            .unwrap();
        assert!(out.settle, "{backend}");
        let back = store
            .presence_rooms(&s1, &rooms(&["order:1"]), &[], 11_500)
            .await
            .unwrap();
        assert!(back.is_empty(), "{backend}: {back:?}");
        assert!(settle(store, &u1, 12_000).await.is_empty(), "{backend}");
        // The socket goes; another one (another node) comes back within grace.
        assert!(store.presence_leave(&u1, "s1", true, 12_500).await.unwrap());
        let again = store
            .presence_join(&socket(&c, "u1", "s2", "b", &["order:1"]), 13_000)
            .await
            .unwrap();
        assert!(again.is_empty(), "{backend}: {again:?}");
        assert!(settle(store, &u1, 14_000).await.is_empty(), "{backend}");
        // A later departure restarts the grace period.
        assert!(store.presence_leave(&u1, "s2", true, 15_000).await.unwrap());
        assert!(settle(store, &u1, 15_500).await.is_empty(), "{backend}");
        let off = settle(store, &u1, 16_000).await;
        assert_eq!(off.rooms, vec![left("order:1", 15_000, 5_000)], "{backend}");
        assert!(off.user.is_some(), "{backend}: and offline");
    }
}

/// Sixteen sockets of one user on four "nodes" entering and leaving one
/// room at once, by every path: exactly one joined and one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_room_transitions_happen_exactly_once() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let entries: Vec<SocketEntry> = (0..16)
            .map(|i| socket(&c, "u1", &format!("s{i}"), &format!("n{}", i % 4), &[]))
            .collect();
        let joins = entries.iter().enumerate().map(|(i, entry)| {
            let (store, entry) = (store.clone(), entry.clone());
            tokio::spawn(async move {
                let at = 10_000 + i as i64;
                if i % 2 == 0 {
                    let with_room = SocketEntry {
                        rooms: rooms(&["machine:m1"]),
                        ..entry
                    };
                    store.presence_join(&with_room, at).await.unwrap()
                } else {
                    store.presence_join(&entry, at).await.unwrap();
                    let room = rooms(&["machine:m1"]);
                    store.presence_rooms(&entry, &room, &[], at).await.unwrap()
                }
            })
        });
        let results = join_all(joins).await;
        assert_eq!(count(&results, is_joined), 1, "{backend}: {results:?}");
        assert_eq!(
            listed(store.as_ref(), &c, "machine:m1").await,
            vec![("u1".into(), 16)]
        );

        let leaves = entries.iter().enumerate().map(|(i, entry)| {
            let (store, entry) = (store.clone(), entry.clone());
            tokio::spawn(async move {
                let room = rooms(&["machine:m1"]);
                if i % 2 == 0 {
                    store
                        .presence_rooms(&entry, &[], &room, 20_000)
                        .await
                        .unwrap()
                } else {
                    let u = user(&entry.company_id, "u1");
                    store
                        .presence_leave(&u, &entry.socket_id, true, 20_000)
                        .await
                        .unwrap();
                    Transitions::default()
                }
            })
        });
        join_all(leaves).await;
        let settles = (0..16).map(|_| {
            let (store, u) = (store.clone(), user(&c, "u1"));
            tokio::spawn(async move { settle(store.as_ref(), &u, 30_000).await })
        });
        let results = join_all(settles).await;
        assert_eq!(count(&results, is_left), 1, "{backend}: {results:?}");
        assert!(listed(store.as_ref(), &c, "machine:m1").await.is_empty());
    }
}

async fn join_all(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<Transitions>>,
) -> Vec<Transitions> {
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

fn count(results: &[Transitions], pred: fn(&RoomChange) -> bool) -> usize {
    results
        .iter()
        .flat_map(|t| &t.rooms)
        .filter(|r| pred(r))
        .count()
}

fn is_joined(r: &RoomChange) -> bool {
    matches!(r.change, Change::Online { .. })
}

fn is_left(r: &RoomChange) -> bool {
    matches!(r.change, Change::Offline { .. })
}

/// A subscription racing the settle of an earlier departure: either the
/// settle sees it (nothing at all), or it ran first (left, then joined).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_racing_settle_never_leaves_a_member_out() {
    for (backend, store) in common::stores().await {
        for round in 0..10 {
            let c = common::unique("c");
            let u1 = user(&c, "u1");
            let s1 = socket(&c, "u1", "s1", "a", &["order:1"]);
            let s2 = socket(&c, "u1", "s2", "b", &[]);
            store.presence_join(&s1, 10_000).await.unwrap();
            store.presence_join(&s2, 10_000).await.unwrap();
            let room = rooms(&["order:1"]);
            store.presence_rooms(&s1, &[], &room, 11_000).await.unwrap();
            let (a, b) = (store.clone(), store.clone());
            let (sub, settled) = tokio::join!(
                tokio::spawn(
                    async move { a.presence_rooms(&s2, &room, &[], 20_000).await.unwrap() }
                ),
                tokio::spawn(async move { settle(b.as_ref(), &u1, 20_000).await }),
            );
            let (sub, settled) = (sub.unwrap(), settled.unwrap());
            match settled.rooms.as_slice() {
                [] => assert!(sub.rooms.is_empty(), "{backend} round {round}: {sub:?}"),
                [r] if is_left(r) => {
                    assert_eq!(
                        sub.rooms,
                        vec![joined("order:1", 20_000)],
                        "{backend} round {round}"
                    )
                }
                other => panic!("{backend}: {other:?}"),
            }
            assert_eq!(
                listed(store.as_ref(), &c, "order:1").await,
                vec![("u1".into(), 1)],
                "{backend}"
            );
        }
    }
}

#[tokio::test]
async fn dead_node_sockets_leave_their_rooms_after_the_ttl() {
    for (backend, store) in common::stores().await {
        let s = store.as_ref();
        let c = common::unique("c");
        let (dead, live) = (common::unique("dead"), common::unique("live"));
        s.presence_join(&socket(&c, "u1", "s1", &dead, &["order:1"]), 10_000)
            .await
            .unwrap();
        s.presence_join(&socket(&c, "u1", "s2", &live, &[]), 10_000)
            .await
            .unwrap();
        s.presence_join(&socket(&c, "u2", "s3", &dead, &["order:1"]), 10_000)
            .await
            .unwrap();
        s.presence_join(&socket(&c, "u2", "s4", &live, &["order:1"]), 10_000)
            .await
            .unwrap();
        s.presence_heartbeat(&dead, 20_000).await.unwrap();
        s.presence_heartbeat(&live, 50_000).await.unwrap();
        // u1 stays online (s2 lives) but leaves order:1 as of the dead
        // node's last heartbeat; u2 keeps a live socket in the room.
        let u1 = s
            .presence_settle(&user(&c, "u1"), 40_000, 50_000, GRACE, BOUND)
            .await
            .unwrap();
        assert_eq!(u1.user, None, "{backend}");
        assert_eq!(u1.rooms, vec![left("order:1", 20_000, 10_000)], "{backend}");
        let u2 = s
            .presence_settle(&user(&c, "u2"), 40_000, 50_000, GRACE, BOUND)
            .await
            .unwrap();
        assert!(u2.is_empty(), "{backend}: {u2:?}");
        assert_eq!(
            listed(s, &c, "order:1").await,
            vec![("u2".into(), 1)],
            "{backend}"
        );
    }
}

#[tokio::test]
async fn leaving_a_node_records_room_departures() {
    for (backend, store) in common::stores().await {
        let s = store.as_ref();
        let c = common::unique("c");
        let node = common::unique("n");
        s.presence_join(&socket(&c, "u1", "s1", &node, &["order:1"]), 10_000)
            .await
            .unwrap();
        s.presence_join(&socket(&c, "u1", "s2", "elsewhere", &["order:2"]), 10_000)
            .await
            .unwrap();
        let mut users = s
            .presence_leave_node(&node, i64::MAX, 12_000)
            .await
            .unwrap();
        users.sort();
        assert_eq!(users, vec![user(&c, "u1")], "{backend}");
        assert_eq!(
            listed(s, &c, "order:1").await,
            vec![("u1".into(), 0)],
            "{backend}"
        );
        assert!(
            settle(s, &user(&c, "u1"), 12_500).await.is_empty(),
            "{backend}"
        );
        let off = settle(s, &user(&c, "u1"), 13_000).await;
        assert_eq!(off.rooms, vec![left("order:1", 12_000, 2_000)], "{backend}");
        assert_eq!(off.user, None, "{backend}: still online through s2");
        assert_eq!(listed(s, &c, "order:2").await, vec![("u1".into(), 1)]);
    }
}

#[tokio::test]
async fn the_sweep_finds_rooms_whose_settle_timer_was_lost() {
    for (backend, store) in common::stores().await {
        let s: Arc<dyn Store> = store.clone();
        let c = common::unique("c");
        let s1 = socket(&c, "u1", "s1", "n", &["order:1"]);
        s.presence_join(&s1, 10_000).await.unwrap();
        s.presence_rooms(&s1, &[], &rooms(&["order:1"]), 11_000)
            .await
            .unwrap();
        let mine = |v: Vec<UserKey>| {
            v.into_iter()
                .filter(|u| u.company_id == c)
                .collect::<Vec<_>>()
        };
        // The user is online with a socket; only its room is unsettled.
        assert!(
            mine(s.presence_unsettled(0, 10_500, 1_000).await.unwrap()).is_empty(),
            "{backend}"
        );
        assert_eq!(
            mine(s.presence_unsettled(0, 11_000, 1_000).await.unwrap()),
            vec![user(&c, "u1")],
            "{backend}"
        );
        assert_eq!(
            settle(s.as_ref(), &user(&c, "u1"), 12_000)
                .await
                .rooms
                .len(),
            1
        );
        assert!(mine(s.presence_unsettled(0, 99_000, 1_000).await.unwrap()).is_empty());
    }
}
