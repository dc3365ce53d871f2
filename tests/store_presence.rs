//! Presence store contract: the same cases on PostgreSQL and SQLite.

mod common;

use common::presence::{BOUND, GRACE, NEVER_STALE, socket, user};

use switchyard::domain::presence::Change;
use switchyard::store::{Store, UserKey};

/// The company's online users; also checks that the broadcast rule's
/// count agrees with the list.
async fn online_users(store: &dyn Store, company: &str) -> Vec<(String, i64)> {
    let users: Vec<(String, i64)> = store
        .presence_list(company, None)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.user_id, u.connections))
        .collect();
    assert_eq!(
        store.presence_online_count(company).await.unwrap(),
        users.len() as i64,
        "presence_online_count counts what presence_list lists"
    );
    users
}

#[tokio::test]
async fn first_socket_online_last_socket_offline_after_grace() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let u1 = user(&c, "u1");
        let first = store
            .presence_join(&socket(&c, "u1", "s1", "n1", &[]), 10_000)
            .await
            .unwrap()
            .user;
        assert_eq!(
            first,
            Some(Change::Online {
                role: "operator".into(),
                at: 10_000
            }),
            "{backend}"
        );
        // A second tab, here on another node: no second online.
        let second = store
            .presence_join(&socket(&c, "u1", "s2", "n2", &[]), 11_000)
            .await
            .unwrap()
            .user;
        assert_eq!(second, None, "{backend}");
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![("u1".into(), 2)]
        );
        let listed = store.presence_list(&c, None).await.unwrap();
        assert_eq!(
            (listed[0].role.as_str(), listed[0].since),
            ("operator", 10_000)
        );

        assert!(
            !store.presence_leave(&u1, "s1", true, 12_000).await.unwrap(),
            "{backend}: s2 remains"
        );
        assert!(
            store.presence_leave(&u1, "s2", true, 13_000).await.unwrap(),
            "{backend}: last one"
        );
        // Within the grace period nothing happens and the user stays listed.
        let early = store
            .presence_settle(&u1, NEVER_STALE, 13_500, GRACE, BOUND)
            .await
            .unwrap()
            .user;
        assert_eq!(early, None, "{backend}");
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![("u1".into(), 0)]
        );
        let late = store
            .presence_settle(&u1, NEVER_STALE, 14_000, GRACE, BOUND)
            .await
            .unwrap()
            .user;
        assert_eq!(
            late,
            Some(Change::Offline {
                at: 13_000,
                duration: 3_000
            }),
            "{backend}"
        );
        assert!(
            online_users(store.as_ref(), &c).await.is_empty(),
            "{backend}"
        );
        // Settling again, or an unknown user, emits nothing.
        assert_eq!(
            store
                .presence_settle(&u1, NEVER_STALE, 99_000, GRACE, BOUND)
                .await
                .unwrap()
                .user,
            None
        );
        assert_eq!(
            store
                .presence_settle(&user(&c, "nobody"), NEVER_STALE, 99_000, GRACE, BOUND)
                .await
                .unwrap()
                .user,
            None
        );
        // Coming back is a new online.
        let back = store
            .presence_join(&socket(&c, "u1", "s3", "n1", &[]), 20_000)
            .await
            .unwrap()
            .user;
        assert!(
            matches!(back, Some(Change::Online { at: 20_000, .. })),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn reconnect_within_grace_is_no_transition() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let u1 = user(&c, "u1");
        store
            .presence_join(&socket(&c, "u1", "s1", "a", &[]), 10_000)
            .await
            .unwrap();
        assert!(store.presence_leave(&u1, "s1", true, 11_000).await.unwrap());
        let again = store
            .presence_join(&socket(&c, "u1", "s2", "b", &[]), 11_500)
            .await
            .unwrap()
            .user;
        assert_eq!(again, None, "{backend}: still online, no second online");
        // The first departure's timer fires: the user has a socket again.
        assert_eq!(
            store
                .presence_settle(&u1, NEVER_STALE, 12_000, GRACE, BOUND)
                .await
                .unwrap()
                .user,
            None
        );
        // A second departure restarts the grace period.
        assert!(store.presence_leave(&u1, "s2", true, 12_500).await.unwrap());
        assert_eq!(
            store
                .presence_settle(&u1, NEVER_STALE, 13_000, GRACE, BOUND)
                .await
                .unwrap()
                .user,
            None
        );
        let off = store
            .presence_settle(&u1, NEVER_STALE, 13_500, GRACE, BOUND)
            .await
            .unwrap()
            .user;
        assert_eq!(
            off,
            Some(Change::Offline {
                at: 12_500,
                duration: 2_500
            }),
            "{backend}"
        );
    }
}

/// Sockets of one user registering and settling on many "nodes" at once:
/// exactly one online and exactly one offline transition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_happen_exactly_once() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let joins = (0..16).map(|i| {
            let store = store.clone();
            let entry = socket(&c, "u1", &format!("s{i}"), &format!("n{}", i % 4), &[]);
            tokio::spawn(async move { store.presence_join(&entry, 10_000 + i).await.unwrap().user })
        });
        let onlines = futures::future::join_all(joins)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Some(Change::Online { .. }))))
            .count();
        assert_eq!(onlines, 1, "{backend}");
        for i in 0..16 {
            store
                .presence_leave(&user(&c, "u1"), &format!("s{i}"), true, 20_000)
                .await
                .unwrap();
        }
        let settles = (0..16).map(|_| {
            let store = store.clone();
            let u = user(&c, "u1");
            tokio::spawn(async move {
                store
                    .presence_settle(&u, NEVER_STALE, 30_000, GRACE, BOUND)
                    .await
                    .unwrap()
                    .user
            })
        });
        let offlines = futures::future::join_all(settles)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Some(Change::Offline { .. }))))
            .count();
        assert_eq!(offlines, 1, "{backend}");
    }
}

/// Many users of one company going offline at once: each departure is
/// counted by its own transaction with the departures not committed yet
/// still online, so in commit order the j-th departure's count is at least
/// the true count after it: sorted, the counts dominate final..final+N-1,
/// and at most one is at the final count. (A count read after each commit
/// sees the departures that committed since and falls below that.) The
/// count stops at the bound + 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_departures_are_counted_at_or_above_their_commit_order_count() {
    const STAY: i64 = 3;
    const LEAVE: i64 = 24;
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        for i in 0..STAY + LEAVE {
            let entry = socket(&c, &format!("u{i}"), &format!("s{i}"), "n1", &[]);
            store.presence_join(&entry, 10_000).await.unwrap();
        }
        for i in STAY..STAY + LEAVE {
            let u = user(&c, &format!("u{i}"));
            store
                .presence_leave(&u, &format!("s{i}"), true, 11_000)
                .await
                .unwrap();
        }
        let settles = (STAY..STAY + LEAVE).map(|i| {
            let store = store.clone();
            let u = user(&c, &format!("u{i}"));
            tokio::spawn(async move {
                store
                    .presence_settle(&u, NEVER_STALE, 20_000, GRACE, BOUND)
                    .await
                    .unwrap()
            })
        });
        let mut counts: Vec<i64> = futures::future::join_all(settles)
            .await
            .into_iter()
            .map(|t| {
                let t = t.unwrap();
                assert!(matches!(t.user, Some(Change::Offline { .. })), "{backend}");
                t.company_online.expect("a departure is counted")
            })
            .collect();
        counts.sort_unstable();
        for (j, count) in counts.iter().enumerate() {
            assert!(
                (STAY + j as i64..STAY + LEAVE).contains(count),
                "{backend}: departure #{j} counted {count}: {counts:?}"
            );
        }
        // The count stops at the bound + 1, however many are online.
        let entry = socket(&c, "late", "s-late", "n1", &[]);
        store.presence_join(&entry, 30_000).await.unwrap();
        store
            .presence_leave(&user(&c, "late"), "s-late", true, 30_000)
            .await
            .unwrap();
        let capped = store
            .presence_settle(&user(&c, "late"), NEVER_STALE, 40_000, GRACE, 1)
            .await
            .unwrap();
        assert_eq!(
            capped.company_online,
            Some(2),
            "{backend}: {STAY} online, bound 1"
        );
        // Only departures are counted.
        let arrival = store
            .presence_join(&socket(&c, "again", "s-again", "n1", &[]), 50_000)
            .await
            .unwrap();
        assert_eq!(arrival.company_online, None, "{backend}");
    }
}

/// A registration racing an offline decision: whatever the interleaving,
/// the transitions alternate and the final state matches the sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_racing_settle_never_leaves_a_connected_user_offline() {
    for (backend, store) in common::stores().await {
        for round in 0..10 {
            let c = common::unique("c");
            let u1 = user(&c, "u1");
            store
                .presence_join(&socket(&c, "u1", "s1", "a", &[]), 10_000)
                .await
                .unwrap();
            store.presence_leave(&u1, "s1", true, 11_000).await.unwrap();
            let (s2, settle) = (store.clone(), store.clone());
            let entry = socket(&c, "u1", "s2", "b", &[]);
            let u = u1.clone();
            let (joined, settled) = tokio::join!(
                tokio::spawn(async move { s2.presence_join(&entry, 20_000).await.unwrap().user }),
                tokio::spawn(async move {
                    settle
                        .presence_settle(&u, NEVER_STALE, 20_000, GRACE, BOUND)
                        .await
                        .unwrap()
                        .user
                }),
            );
            let (joined, settled) = (joined.unwrap(), settled.unwrap());
            // Either the settle saw the new socket (no transition at all) or
            // it ran first: offline, then the join brought the user back.
            match settled {
                None => assert_eq!(joined, None, "{backend} round {round}"),
                Some(Change::Offline { .. }) => {
                    assert!(
                        matches!(joined, Some(Change::Online { .. })),
                        "{backend} round {round}"
                    )
                }
                other => panic!("{backend}: {other:?}"),
            }
            assert_eq!(
                online_users(store.as_ref(), &c).await,
                vec![("u1".into(), 1)],
                "{backend}"
            );
        }
    }
}

#[tokio::test]
async fn dead_node_rows_are_reaped_after_the_ttl_and_live_ones_are_not() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let dead = common::unique("dead");
        let live = common::unique("live");
        store
            .presence_join(&socket(&c, "u1", "s1", &dead, &["order:1"]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u2", "s2", &dead, &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u2", "s3", &live, &[]), 10_000)
            .await
            .unwrap();
        assert_eq!(
            store.presence_heartbeat(&live, 50_000).await.unwrap(),
            1,
            "{backend}"
        );
        // The sweep (stale before 40 s) finds both users of the dead node.
        let mut unsettled: Vec<UserKey> = store
            .presence_unsettled(40_000, 0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.company_id == c)
            .collect();
        unsettled.sort();
        assert_eq!(unsettled, vec![user(&c, "u1"), user(&c, "u2")], "{backend}");
        // u1 only had the dead node's socket: offline since its last heartbeat.
        let off = store
            .presence_settle(&user(&c, "u1"), 40_000, 50_000, GRACE, BOUND)
            .await
            .unwrap()
            .user;
        assert_eq!(
            off,
            Some(Change::Offline {
                at: 10_000,
                duration: 0
            }),
            "{backend}"
        );
        // u2 keeps its live socket: reaped, but stays online.
        assert_eq!(
            store
                .presence_settle(&user(&c, "u2"), 40_000, 50_000, GRACE, BOUND)
                .await
                .unwrap()
                .user,
            None
        );
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![("u2".into(), 1)],
            "{backend}"
        );
        assert!(
            store
                .presence_list(&c, Some("order:1"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .presence_unsettled(40_000, 0, 1_000)
                .await
                .unwrap()
                .iter()
                .all(|u| u.company_id != c),
            "{backend}: nothing left to settle"
        );
    }
}

#[tokio::test]
async fn a_lost_grace_timer_is_found_by_the_sweep() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        store
            .presence_join(&socket(&c, "u1", "s1", "n", &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_leave(&user(&c, "u1"), "s1", true, 11_000)
            .await
            .unwrap();
        let mine = |v: Vec<UserKey>| {
            v.into_iter()
                .filter(|u| u.company_id == c)
                .collect::<Vec<_>>()
        };
        // Left at 11 s: not yet due at a cutoff of 10.5 s, due at 11 s.
        assert!(
            mine(store.presence_unsettled(0, 10_500, 1_000).await.unwrap()).is_empty(),
            "{backend}"
        );
        assert_eq!(
            mine(store.presence_unsettled(0, 11_000, 1_000).await.unwrap()),
            vec![user(&c, "u1")]
        );
    }
}

#[tokio::test]
async fn leaving_a_node_removes_its_rows_as_departures() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let node = common::unique("n");
        store
            .presence_join(&socket(&c, "u1", "s1", &node, &["order:1"]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u2", "s2", &node, &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u2", "s3", "elsewhere", &[]), 10_000)
            .await
            .unwrap();
        let mut users = store
            .presence_leave_node(&node, i64::MAX, 12_000)
            .await
            .unwrap();
        users.sort();
        assert_eq!(users, vec![user(&c, "u1"), user(&c, "u2")], "{backend}");
        assert_eq!(store.presence_heartbeat(&node, 13_000).await.unwrap(), 0);
        // Still online during the grace period (a reconnect elsewhere is no flap).
        assert_eq!(
            online_users(store.as_ref(), &c).await,
            vec![("u1".into(), 0), ("u2".into(), 1)],
            "{backend}"
        );
        let off = store
            .presence_settle(&user(&c, "u1"), NEVER_STALE, 13_000, GRACE, BOUND)
            .await
            .unwrap()
            .user;
        assert_eq!(
            off,
            Some(Change::Offline {
                at: 12_000,
                duration: 2_000
            }),
            "{backend}"
        );
        assert_eq!(
            store
                .presence_settle(&user(&c, "u2"), NEVER_STALE, 13_000, GRACE, BOUND)
                .await
                .unwrap()
                .user,
            None
        );
        // Only rows older than `before` go: a re-registration keeps the fresh ones.
        store
            .presence_join(&socket(&c, "u3", "s4", &node, &[]), 20_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u4", "s5", &node, &[]), 20_002)
            .await
            .unwrap();
        let users = store
            .presence_leave_node(&node, 20_001, 20_001)
            .await
            .unwrap();
        assert_eq!(users, vec![user(&c, "u3")], "{backend}");
        assert_eq!(store.presence_heartbeat(&node, 21_000).await.unwrap(), 1);
    }
}

async fn room_list(store: &dyn Store, company: &str, room: &str) -> Vec<(String, i64, i64)> {
    store
        .presence_list(company, Some(room))
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.user_id, u.connections, u.since))
        .collect()
}

#[tokio::test]
async fn entity_room_lists_follow_subscriptions_per_company() {
    for (backend, store) in common::stores().await {
        let (c, other) = (common::unique("c"), common::unique("c"));
        let s = |user: &str, sid: &str, rooms: &[&str]| socket(&c, user, sid, "n", rooms);
        let rooms = |list: &[&str]| list.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        store
            .presence_join(&s("u1", "s1", &["order:1"]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&s("u1", "s2", &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&s("u2", "s3", &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&other, "u9", "s1", "n", &["order:1"]), 10_000)
            .await
            .unwrap();
        store
            .presence_rooms(&s("u1", "s2", &[]), &rooms(&["order:1"]), &[], 11_000)
            .await
            .unwrap();
        store
            .presence_rooms(
                &s("u2", "s3", &[]),
                &rooms(&["order:1", "machine:m1"]),
                &[],
                12_000,
            )
            .await
            .unwrap();
        assert_eq!(
            room_list(store.as_ref(), &c, "order:1").await,
            vec![("u1".into(), 2, 10_000), ("u2".into(), 1, 12_000)],
            "{backend}"
        );
        store
            .presence_rooms(&s("u2", "s3", &[]), &[], &rooms(&["order:1"]), 13_000)
            .await
            .unwrap();
        store
            .presence_leave(&user(&c, "u1"), "s1", true, 14_000)
            .await
            .unwrap();
        // Gone from the room, listed without connections until settled.
        assert_eq!(
            room_list(store.as_ref(), &c, "order:1").await,
            vec![("u1".into(), 1, 10_000), ("u2".into(), 0, 12_000)],
            "{backend}"
        );
        store
            .presence_settle(&user(&c, "u2"), NEVER_STALE, 14_000, GRACE, BOUND)
            .await
            .unwrap();
        assert_eq!(
            room_list(store.as_ref(), &c, "order:1").await,
            vec![("u1".into(), 1, 10_000)],
            "{backend}"
        );
        assert_eq!(room_list(store.as_ref(), &c, "machine:m1").await.len(), 1);
        // A re-registration replaces the room set; the dropped room is a departure.
        let moved = store
            .presence_join(&s("u2", "s3", &["alarms"]), 15_000)
            .await
            .unwrap();
        assert!(moved.settle, "{backend}: machine:m1 lost u2's last socket");
        assert_eq!(
            room_list(store.as_ref(), &c, "machine:m1").await,
            vec![("u2".into(), 0, 12_000)],
            "{backend}"
        );
        let settled = store
            .presence_settle(&user(&c, "u2"), NEVER_STALE, 16_000, GRACE, BOUND)
            .await
            .unwrap();
        assert_eq!(settled.rooms.len(), 1, "{backend}: {settled:?}");
        assert!(room_list(store.as_ref(), &c, "machine:m1").await.is_empty());
        assert_eq!(room_list(store.as_ref(), &c, "alarms").await.len(), 1);
        // Rooms of a socket that is not registered are ignored.
        let ghost = store
            .presence_rooms(&s("u3", "ghost", &[]), &rooms(&["order:1"]), &[], 16_000)
            .await
            .unwrap();
        assert!(ghost.is_empty(), "{backend}");
        let ghost = store
            .presence_rooms(&s("u1", "ghost", &[]), &rooms(&["order:1"]), &[], 16_000)
            .await
            .unwrap();
        assert!(ghost.is_empty(), "{backend}");
        assert_eq!(room_list(store.as_ref(), &c, "order:1").await.len(), 1);
        // The other company's room is its own.
        let theirs = room_list(store.as_ref(), &other, "order:1").await;
        assert_eq!(theirs, vec![("u9".into(), 1, 10_000)], "{backend}");
    }
}

#[tokio::test]
async fn heartbeat_counts_and_refreshes_only_its_node() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let (a, b) = (common::unique("a"), common::unique("b"));
        store
            .presence_join(&socket(&c, "u1", "s1", &a, &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u2", "s2", &a, &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u3", "s3", &b, &[]), 10_000)
            .await
            .unwrap();
        assert_eq!(
            store.presence_heartbeat(&a, 60_000).await.unwrap(),
            2,
            "{backend}"
        );
        let stale: Vec<UserKey> = store
            .presence_unsettled(50_000, 0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.company_id == c)
            .collect();
        assert_eq!(stale, vec![user(&c, "u3")], "{backend}");
    }
}

/// The database says what a registration made (asked after one whose
/// outcome is unknown): the user online through its first socket's,
/// single or in a batch, not a later socket's, not one from before the
/// user's last offline; and the entity rooms each socket took the user
/// into, at the time it did.
#[tokio::test]
async fn the_registration_that_took_a_user_online_is_known() {
    for (backend, store) in common::stores().await {
        let c = common::unique("c");
        let u1 = user(&c, "u1");
        store
            .presence_join(&socket(&c, "u1", "s1", "n1", &[]), 10_000)
            .await
            .unwrap();
        store
            .presence_join(&socket(&c, "u1", "s2", "n1", &[]), 11_000)
            .await
            .unwrap();
        let by = |sid: &'static str| {
            let (store, u1) = (store.clone(), u1.clone());
            async move {
                let made = store.presence_made_by(&u1, sid, 0).await.unwrap();
                assert_eq!(made.rooms, Vec::<String>::new());
                made.online_since
            }
        };
        assert_eq!(by("s1").await, Some(10_000), "{backend}");
        assert_eq!(by("s2").await, None, "{backend}: u1 was online already");

        // Offline, then online again through a batch: its first socket of u1.
        for sid in ["s1", "s2"] {
            store.presence_leave(&u1, sid, false, 12_000).await.unwrap();
        }
        let gone = store
            .presence_settle(&u1, NEVER_STALE, 12_000 + GRACE, GRACE, BOUND)
            .await
            .unwrap();
        assert!(gone.user.is_some(), "{backend}: offline");
        assert_eq!(by("s1").await, None, "{backend}: offline since");
        let batch = [
            socket(&c, "u2", "s3", "n1", &[]),
            socket(&c, "u1", "s4", "n1", &[]),
            socket(&c, "u1", "s5", "n1", &[]),
        ];
        let answers = store.presence_join_many(&batch, 20_000).await;
        assert!(answers[1].as_ref().unwrap().user.is_some(), "{backend}");
        assert_eq!(by("s4").await, Some(20_000), "{backend}");
        assert_eq!(by("s5").await, None, "{backend}");
        assert_eq!(by("s1").await, None, "{backend}: an earlier online");
        let u2 = user(&c, "u2");
        assert_eq!(
            store
                .presence_made_by(&u2, "s3", 20_000)
                .await
                .unwrap()
                .online_since,
            Some(20_000),
            "{backend}"
        );

        // Entity rooms: those a registration or subscription took the user
        // into, found by its socket and time.
        let u3 = user(&c, "u3");
        store
            .presence_join(
                &socket(&c, "u3", "s6", "n1", &["order:1", "order:2"]),
                30_000,
            )
            .await
            .unwrap();
        store
            .presence_join(
                &socket(&c, "u3", "s7", "n1", &["order:2", "order:3"]),
                30_500,
            )
            .await
            .unwrap();
        let joined = store
            .presence_rooms(
                &socket(&c, "u3", "s6", "n1", &[]),
                &["order:4".to_string()],
                &[],
                31_000,
            )
            .await
            .unwrap();
        assert_eq!(joined.rooms.len(), 1, "{backend}");
        let made = |sid: &'static str, at: i64| {
            let (store, u3) = (store.clone(), u3.clone());
            async move { store.presence_made_by(&u3, sid, at).await.unwrap() }
        };
        let s6 = made("s6", 30_000).await;
        assert_eq!(s6.online_since, Some(30_000), "{backend}");
        assert_eq!(s6.rooms, vec!["order:1", "order:2"], "{backend}");
        assert_eq!(made("s6", 31_000).await.rooms, vec!["order:4"], "{backend}");
        let s7 = made("s7", 30_500).await;
        assert_eq!(s7.online_since, None, "{backend}");
        assert_eq!(s7.rooms, vec!["order:3"], "{backend}: order:2 was s6's");
    }
}
