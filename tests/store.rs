//! Store contract tests: the same cases on PostgreSQL and SQLite.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard::store::{self, NewEvent, Store};

fn event(company: &str, rooms: &[&str], key: Option<&str>) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        company_id: company.into(),
        event_type: "order:status_changed".into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        payload: json!({ "orderId": "1", "n": 1 }),
        priority: "medium".into(),
        source: "test".into(),
        publisher: Some("u1".into()),
        created_at: 1,
        expires_at: i64::MAX / 2,
        idempotency_key: key.map(String::from),
        webhooks: Vec::new(),
    }
}

#[tokio::test]
async fn append_assigns_per_room_offsets_and_reads_back_in_order() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let a = store
            .append(vec![event(&company, &["company", "order:1"], None)])
            .await
            .unwrap();
        let b = store
            .append(vec![event(&company, &["order:1"], None)])
            .await
            .unwrap();
        assert_eq!(
            a[0].offsets,
            vec![("company".into(), 1), ("order:1".into(), 1)],
            "{backend}"
        );
        assert_eq!(b[0].offsets, vec![("order:1".into(), 2)], "{backend}");
        let page = store
            .events_after(&company, "order:1", 0, 10, 0)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![1, 2],
            "{backend}"
        );
        assert_eq!(page[0].id, a[0].id);
        assert_eq!(page[0].payload, json!({ "orderId": "1", "n": 1 }));
        let after = store
            .events_after(&company, "order:1", 1, 10, 0)
            .await
            .unwrap();
        assert_eq!(after.len(), 1, "{backend}");
        // Another company's log with the same room name is separate.
        let other = common::unique("c");
        let c = store
            .append(vec![event(&other, &["order:1"], None)])
            .await
            .unwrap();
        assert_eq!(c[0].offsets, vec![("order:1".into(), 1)], "{backend}");
        assert!(
            store
                .events_after(&other, "company", 0, 10, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn idempotency_key_returns_the_first_result_and_writes_once() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let first = store
            .append(vec![event(&company, &["company"], Some("k1"))])
            .await
            .unwrap();
        let retry = store
            .append(vec![event(&company, &["company"], Some("k1"))])
            .await
            .unwrap();
        assert!(!first[0].duplicate && retry[0].duplicate, "{backend}");
        assert_eq!(
            (&first[0].id, &first[0].offsets),
            (&retry[0].id, &retry[0].offsets),
            "{backend}"
        );
        assert_eq!(
            store
                .events_after(&company, "company", 0, 10, 0)
                .await
                .unwrap()
                .len(),
            1,
            "{backend}"
        );
    }
}

/// Publishers on "nodes" (separate pools) append to one room concurrently:
/// offsets are exactly 1..=N, each once, and history returns them in order.
async fn concurrent_offsets(nodes: Vec<Arc<dyn Store>>, publishers: usize, per_publisher: usize) {
    let company = common::unique("c");
    let mut tasks = Vec::new();
    for node in &nodes {
        for p in 0..publishers {
            let node = node.clone();
            let company = company.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::with_capacity(per_publisher);
                for i in 0..per_publisher {
                    // A mix of single events and small batches, and an idempotent retry.
                    let key = format!("p{p}-{i}-{}", uuid::Uuid::new_v4());
                    let res = node
                        .append(vec![event(&company, &["line:1"], Some(&key))])
                        .await
                        .unwrap();
                    got.push(res[0].offsets[0].1);
                    if i % 50 == 0 {
                        let again = node
                            .append(vec![event(&company, &["line:1"], Some(&key))])
                            .await
                            .unwrap();
                        assert_eq!(again[0].offsets[0].1, res[0].offsets[0].1);
                    }
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        // Each publisher's own offsets increase (its events are sequential).
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        all.extend(got);
    }
    let total = nodes.len() * publishers * per_publisher;
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), total);
    assert_eq!(
        unique,
        (1..=total as i64).collect::<BTreeSet<_>>(),
        "gapless and unique"
    );
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = nodes[0]
            .events_after(&company, "line:1", after, 500, 0)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.offset;
        read.extend(page.into_iter().map(|e| e.offset));
    }
    assert_eq!(
        read,
        (1..=total as i64).collect::<Vec<_>>(),
        "history in offset order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_offsets_are_gapless_under_concurrent_publishers_on_two_nodes() {
    let url = common::postgres_url();
    let a = store::connect(&url).await.expect("postgres");
    a.migrate().await.unwrap();
    let b = store::connect(&url).await.expect("postgres");
    concurrent_offsets(vec![a, b], 4, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_offsets_are_gapless_under_concurrent_publishers() {
    let s = store::connect(&common::sqlite_url()).await.unwrap();
    s.migrate().await.unwrap();
    concurrent_offsets(vec![s], 4, 500).await;
}

#[tokio::test]
async fn a_batch_is_atomic() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let good = event(&company, &["company"], None);
        let mut dup = event(&company, &["company"], None);
        dup.id = good.id.clone(); // primary-key violation on the second event
        assert!(store.append(vec![good, dup]).await.is_err(), "{backend}");
        assert!(
            store
                .events_after(&company, "company", 0, 10, 0)
                .await
                .unwrap()
                .is_empty(),
            "{backend}: nothing half-written"
        );
        let next = store
            .append(vec![event(&company, &["company"], None)])
            .await
            .unwrap();
        assert_eq!(
            next[0].offsets[0].1, 1,
            "{backend}: the failed batch left no gap"
        );
    }
}

#[tokio::test]
async fn many_devices_cursors_in_one_batch_only_move_forward() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let key = |user: &str, device: &str| store::CursorKey {
            company_id: company.clone(),
            user_id: user.into(),
            device_id: device.into(),
        };
        store
            .save_cursors(&key("u1", ""), &[("company".into(), 9)], 1)
            .await
            .unwrap();
        let rows = vec![
            (key("u1", ""), "company".to_string(), 4),
            (key("u1", ""), "user:u1".to_string(), 3),
            (key("u2", "phone"), "company".to_string(), 7),
        ];
        store.save_cursor_batch(&rows, 2).await.unwrap();
        let u1 = store.load_cursors(&key("u1", "")).await.unwrap();
        assert_eq!(
            (u1["company"], u1["user:u1"]),
            (9, 3),
            "{backend}: never moves back"
        );
        let u2 = store.load_cursors(&key("u2", "phone")).await.unwrap();
        assert_eq!(u2["company"], 7, "{backend}");
        assert!(
            store.load_cursors(&key("u2", "")).await.unwrap().is_empty(),
            "{backend}: per device"
        );
    }
}

#[tokio::test]
async fn cursors_only_move_forward_and_prune_drops_expired_events() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let key = store::CursorKey {
            company_id: company.clone(),
            user_id: "u1".into(),
            device_id: "tablet".into(),
        };
        assert!(
            store.load_cursors(&key).await.unwrap().is_empty(),
            "{backend}"
        );
        store
            .save_cursors(&key, &[("company".into(), 5), ("user:u1".into(), 2)], 1)
            .await
            .unwrap();
        store
            .save_cursors(&key, &[("company".into(), 3)], 2)
            .await
            .unwrap();
        let c = store.load_cursors(&key).await.unwrap();
        assert_eq!(
            (c["company"], c["user:u1"]),
            (5, 2),
            "{backend}: never moves back"
        );
        // One call naming a room twice keeps the higher offset, in either order.
        store
            .save_cursors(
                &key,
                &[("role:operator".into(), 7), ("role:operator".into(), 4)],
                3,
            )
            .await
            .unwrap();
        store
            .save_cursors(&key, &[("company".into(), 6), ("company".into(), 8)], 3)
            .await
            .unwrap();
        let c = store.load_cursors(&key).await.unwrap();
        assert_eq!(
            (c["role:operator"], c["company"]),
            (7, 8),
            "{backend}: a repeated room keeps its highest offset"
        );
        let other_device = store::CursorKey {
            device_id: "phone".into(),
            ..key.clone()
        };
        assert!(
            store.load_cursors(&other_device).await.unwrap().is_empty(),
            "{backend}: per device"
        );

        let mut old = event(&company, &["company"], None);
        old.expires_at = 1_000;
        let mut fresh = event(&company, &["company"], None);
        fresh.expires_at = i64::MAX / 2;
        store.append(vec![old, fresh]).await.unwrap();
        assert_eq!(
            store.head_offset(&company, "company").await.unwrap(),
            2,
            "{backend}"
        );
        let live = store
            .events_after(&company, "company", 0, 10, 2_000)
            .await
            .unwrap();
        assert_eq!(
            live.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![2],
            "{backend}: expired events are not served"
        );
        assert!(store.prune(2_000).await.unwrap() >= 1, "{backend}");
        assert_eq!(
            store
                .events_after(&company, "company", 0, 10, 0)
                .await
                .unwrap()
                .len(),
            1,
            "{backend}: pruned"
        );
        assert_eq!(
            store.head_offset(&company, "company").await.unwrap(),
            2,
            "{backend}: offsets never restart"
        );
    }
}

/// Group commit: concurrent requests share transactions, yet each gets its
/// own results, offsets stay gapless, and a bad request fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_answers_each_request_with_its_own_results() {
    for (backend, store) in common::stores().await {
        let appender = store::batch::Appender::new(store.clone(), &switchyard::tasks::Tasks::new());
        let company = common::unique("c");
        let mut tasks = Vec::new();
        for i in 0..60 {
            let appender = appender.clone();
            let company = company.clone();
            tasks.push(tokio::spawn(async move {
                let batch: Vec<NewEvent> = (0..(i % 3 + 1))
                    .map(|_| event(&company, &["line:1"], None))
                    .collect();
                let ids: Vec<String> = batch.iter().map(|e| e.id.clone()).collect();
                let res = appender.append(batch).await.unwrap();
                assert_eq!(
                    res.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
                    ids,
                    "own results, in order"
                );
                res.iter().map(|a| a.offsets[0].1).collect::<Vec<_>>()
            }));
        }
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.extend(t.await.unwrap());
        }
        offsets.sort();
        assert_eq!(
            offsets,
            (1..=offsets.len() as i64).collect::<Vec<_>>(),
            "{backend}: gapless"
        );
        // A request that cannot be written fails without failing its neighbours.
        let good = event(&company, &["line:1"], None);
        let mut bad = event(&company, &["line:1"], None);
        bad.id = good.id.clone();
        let (a, b) = tokio::join!(appender.append(vec![good]), appender.append(vec![bad]));
        assert!(
            a.is_ok() != b.is_ok(),
            "{backend}: exactly one of two clashing requests fails"
        );
    }
}

/// A hand-over to the feeds that panics (a bug in delivery) must not take
/// the node's durable path down with it: the committed request is still
/// answered with its offsets, and the next append goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hand_over_neither_loses_the_answer_nor_stops_the_writer() {
    for (backend, store) in common::stores().await {
        let appender = store::batch::Appender::new(store.clone(), &switchyard::tasks::Tasks::new());
        let company = common::unique("c");
        let panics: store::batch::OnCommit = Box::new(|_| panic!("delivery bug"));
        let first = appender
            .submit(vec![event(&company, &["line:1"], None)], Some(panics))
            .await
            .expect("queued")
            .await;
        let first = first.unwrap_or_else(|e| panic!("{backend}: committed, so answered: {e}"));
        assert_eq!(first[0].offsets, vec![("line:1".into(), 1)], "{backend}");
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            appender.append(vec![event(&company, &["line:1"], None)]),
        )
        .await
        .unwrap_or_else(|_| panic!("{backend}: the writer answers after the panic"))
        .unwrap_or_else(|e| panic!("{backend}: the writer still appends: {e}"));
        assert_eq!(next[0].offsets, vec![("line:1".into(), 2)], "{backend}");
    }
}

/// The log writer gives up on a transaction after 5 s, and its callers are
/// told "not known to be stored". When that transaction commits after all
/// (here: it waited for a row another session held), its events still go
/// to the live feeds: the request's hand-over runs with their offsets.
/// Before, nobody delivered them live until a later event in the same
/// room revealed the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_the_writer_gave_up_on_is_handed_over_when_it_commits() {
    let url = common::fresh_postgres("sy_late_commit_").await;
    let (store, appender, company) = writer_with_one_event(&url).await;

    let (blocker, held) = hold_counter_row(&url, &company, "line:1").await;
    let (handed, record) = recorder();
    let answer = appender
        .submit(vec![event(&company, &["line:1"], None)], Some(record))
        .await
        .expect("queued")
        .await;
    let Err(e) = answer else {
        panic!("answered while the row was held: {answer:?}");
    };
    assert!(
        matches!(e, store::StoreError::Unavailable(_)),
        "not known to be stored: {e}"
    );
    assert!(
        handed.lock().expect("lock").is_empty(),
        "nothing handed over yet"
    );

    held.rollback().await.expect("release the row");
    late_offset_2_then_3(&handed, &appender, &company).await;
    blocker.close().await;
    drop(appender);
    drop(store);
    common::drop_postgres(&url).await;
}

/// The same where it matters most: the COMMIT itself stalls. A private
/// PostgreSQL with `synchronous_commit = on` and a synchronous standby
/// that does not exist holds every COMMIT until the setting is cleared;
/// the writer gives up after 5 s, then the commit goes through, and the
/// request's hand-over still gets its offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_stalls_past_the_writers_patience_is_still_handed_over() {
    let stalled = StalledCommits::start().await;
    let (handed, record) = recorder();
    let answer = stalled.submit_one(record).await.await;
    assert!(
        matches!(answer, Err(store::StoreError::Unavailable(_))),
        "not known to be stored while the commit stalls: {answer:?}"
    );
    assert!(
        handed.lock().expect("lock").is_empty(),
        "nothing handed over yet"
    );
    stalled.release_then_offset_2_and_3(&handed).await;
}

/// A COMMIT that went through on a connection that then ended: the
/// backend is terminated while it waits for a synchronous standby that
/// does not exist, when its transaction is committed locally and the
/// client gets an error. The writer answers "not known to be stored";
/// once the database answers again, the log shows the event, and it is
/// handed over with its offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_connection_then_ends_is_found_in_the_log_and_handed_over() {
    let stalled = StalledCommits::start().await;
    let (handed, record) = recorder();
    let answer = stalled.submit_one(record).await;
    assert!(
        stalled.pg.end_the_waiting_commit().await,
        "a COMMIT waited for the standby and was ended"
    );
    let answer = answer.await;
    assert!(
        matches!(answer, Err(store::StoreError::Unavailable(_))),
        "not known to be stored when the connection ended: {answer:?}"
    );
    stalled.release_then_offset_2_and_3(&handed).await;
}

/// The same when the database restarts under a COMMIT that waits for the
/// standby (committed locally, the connection ends with the fast
/// shutdown): the look-up waits until the database answers again, finds
/// the event and hands it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_database_restarts_under_it_is_found_in_the_log_and_handed_over() {
    let stalled = StalledCommits::start().await;
    let (handed, record) = recorder();
    let answer = stalled.submit_one(record).await;
    assert!(
        stalled.pg.waiting_commit().await.is_some(),
        "the COMMIT waits for the standby"
    );
    tokio::task::block_in_place(|| stalled.pg.stop());
    let answer = answer.await;
    assert!(
        matches!(answer, Err(store::StoreError::Unavailable(_))),
        "not known to be stored when the database went away: {answer:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        handed.lock().expect("lock").is_empty(),
        "nothing handed over while the database is down"
    );
    tokio::task::block_in_place(|| stalled.pg.resume());
    stalled.release_then_offset_2_and_3(&handed).await;
}

/// A private PostgreSQL whose COMMITs wait for a synchronous standby that/// A private PostgreSQL whose COMMITs wait for a synchronous standby that
/// does not exist, with a log writer that stored one event in `line:1`
/// before the stall began.
struct StalledCommits {
    pg: common::private_pg::PrivatePg,
    store: Arc<dyn Store>,
    appender: store::batch::Appender,
    company: String,
}

impl StalledCommits {
    async fn start() -> Self {
        let pg = tokio::task::spawn_blocking(common::private_pg::PrivatePg::start)
            .await
            .expect("private postgres");
        pg.commit_synchronously().await;
        let (store, appender, company) = writer_with_one_event(&pg.url()).await;
        pg.stall_commits(true).await;
        Self {
            pg,
            store,
            appender,
            company,
        }
    }

    /// Queues one event for `line:1` with `record` as its hand-over.
    async fn submit_one(
        &self,
        record: store::batch::OnCommit,
    ) -> impl Future<Output = Result<Vec<store::Appended>, store::StoreError>> {
        self.appender
            .submit(vec![event(&self.company, &["line:1"], None)], Some(record))
            .await
            .expect("queued")
    }

    /// Lets commits through again, then checks the stalled one was handed
    /// over with offset 2 and the next append gets 3.
    async fn release_then_offset_2_and_3(self, handed: &Handed) {
        self.pg.stall_commits(false).await;
        late_offset_2_then_3(handed, &self.appender, &self.company).await;
        drop(self.appender);
        drop(self.store);
        drop(self.pg);
    }
}

/// What the log holds of given event ids (asked after an append whose
/// connection ended mid-way): each stored event's rooms and offsets, and
/// nothing for an id it never stored.
#[tokio::test]
async fn the_log_says_which_events_it_stored_and_where() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let one = event(&company, &["order:1", "company"], None);
        let two = event(&company, &["company"], None);
        let ids = vec![one.id.clone(), two.id.clone(), "never-stored".to_string()];
        store.append(vec![one.clone(), two.clone()]).await.unwrap();
        let mut rows = store.stored_offsets(&ids).await.unwrap();
        rows.sort();
        let mut expected = vec![
            (one.id.clone(), "company".to_string(), 1),
            (one.id.clone(), "order:1".to_string(), 1),
            (two.id.clone(), "company".to_string(), 2),
        ];
        expected.sort();
        assert_eq!(rows, expected, "{backend}");
        let none = store
            .stored_offsets(&["never-stored".to_string()])
            .await
            .unwrap();
        assert!(none.is_empty(), "{backend}: {none:?}");
    }
}

/// One batch carrying several rooms, keyless events and a key repeated
/// within the batch: each room's offsets follow batch order, and the repeat
/// gets the first event's result as a duplicate without writing anything.
#[tokio::test]
async fn a_batch_hands_out_each_rooms_offsets_in_order_and_dedupes_a_repeated_key() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let res = store
            .append(vec![
                event(&company, &["order:1", "company"], Some("k")),
                event(&company, &["company"], None),
                event(&company, &["company", "order:1"], Some("k")),
                event(&company, &["order:1"], None),
            ])
            .await
            .unwrap();
        assert_eq!(
            res[0].offsets,
            vec![("order:1".into(), 1), ("company".into(), 1)],
            "{backend}: the caller's room order"
        );
        assert_eq!(res[1].offsets, vec![("company".into(), 2)], "{backend}");
        assert!(res[2].duplicate && res[2].id == res[0].id, "{backend}");
        assert_eq!(res[2].offsets, res[0].offsets, "{backend}");
        assert_eq!(res[3].offsets, vec![("order:1".into(), 2)], "{backend}");
        let read = store
            .events_after(&company, "company", 0, 10, 0)
            .await
            .unwrap();
        assert_eq!(read.len(), 2, "{backend}: the repeat wrote nothing");
        let retry = store
            .append(vec![event(&company, &["company", "order:1"], Some("k"))])
            .await
            .unwrap();
        assert!(retry[0].duplicate && retry[0].offsets == res[0].offsets);
    }
}

/// A connect's one read: the device's cursors and the named rooms' heads
/// (rooms without events absent), the same as the separate reads.
#[tokio::test]
async fn connect_positions_reads_cursors_and_heads_together() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        store
            .append(vec![
                event(&company, &["company", "role:operator"], None),
                event(&company, &["company"], None),
            ])
            .await
            .unwrap();
        let key = store::CursorKey {
            company_id: company.clone(),
            user_id: "u1".into(),
            device_id: "d1".into(),
        };
        store
            .save_cursors(&key, &[("user:u1".into(), 4), ("company".into(), 1)], 1)
            .await
            .unwrap();
        let rooms: Vec<String> = ["company", "role:operator", "user:u1", "order:9"]
            .iter()
            .map(|r| r.to_string())
            .collect();
        let got = store.connect_positions(&key, &rooms).await.unwrap();
        assert_eq!(
            got.cursors,
            store.load_cursors(&key).await.unwrap(),
            "{backend}"
        );
        assert_eq!(
            got.heads,
            [("company".to_string(), 2), ("role:operator".to_string(), 1)]
                .into_iter()
                .collect(),
            "{backend}"
        );
    }
}

/// Many connects reading at once (SQLite answers the reads that wait
/// together in one statement, at most 256 per statement): each gets exactly
/// its own device's cursors and its own rooms' heads, never another's, in
/// either company, and none waits forever, also when reads are cancelled
/// midway (every seventh here, as a connect dropped while it reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_positions_at_once_each_get_their_own() {
    const DEVICES: i64 = 600;
    for (backend, store) in common::stores().await {
        let (a, b) = (common::unique("ca"), common::unique("cb"));
        let company_of = |i: i64| if i % 2 == 0 { a.clone() } else { b.clone() };
        // Company a's room "company" gets 3 events, b's gets 1; "order:i"
        // gets i % 5 events in its company.
        for (company, n) in [(&a, 3), (&b, 1)] {
            for _ in 0..n {
                store
                    .append(vec![event(company, &["company"], None)])
                    .await
                    .unwrap();
            }
        }
        for i in 0..10 {
            let room = format!("order:{i}");
            for _ in 0..i % 5 {
                store
                    .append(vec![event(&company_of(i), &[room.as_str()], None)])
                    .await
                    .unwrap();
            }
        }
        let key = |i: i64| store::CursorKey {
            company_id: company_of(i),
            user_id: format!("u{}", i % 7),
            device_id: format!("d{i}"),
        };
        for i in (0..DEVICES).filter(|i| i % 3 != 0) {
            store
                .save_cursors(&key(i), &[(format!("user:u{}", i % 7), i)], 1)
                .await
                .unwrap();
        }
        let reads: Vec<_> = (0..DEVICES)
            .map(|i| {
                let (store, key) = (store.clone(), key(i));
                let rooms = vec!["company".to_string(), format!("order:{}", i % 10)];
                tokio::spawn(async move { store.connect_positions(&key, &rooms).await })
            })
            .collect();
        for (i, read) in reads.iter().enumerate() {
            if i % 7 == 3 {
                read.abort();
            }
        }
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            futures::future::join_all(reads),
        )
        .await
        .unwrap_or_else(|_| panic!("{backend}: reads still waiting after 30 s"));
        for (i, got) in (0..DEVICES).zip(got) {
            let Ok(got) = got else {
                assert_eq!(i % 7, 3, "{backend}: device {i} was not cancelled");
                continue;
            };
            let got = got.unwrap_or_else(|e| panic!("{backend} device {i}: {e}"));
            let cursors: std::collections::HashMap<String, i64> = if i % 3 != 0 {
                [(format!("user:u{}", i % 7), i)].into_iter().collect()
            } else {
                Default::default()
            };
            assert_eq!(got.cursors, cursors, "{backend} device {i}");
            let mut heads = std::collections::HashMap::new();
            heads.insert("company".to_string(), if i % 2 == 0 { 3 } else { 1 });
            // order:k is in company_of(k); device i asks for order:(i % 10)
            // in company_of(i): the same company, as i and i % 10 share parity.
            if (i % 10) % 5 != 0 {
                heads.insert(format!("order:{}", i % 10), (i % 10) % 5);
            }
            assert_eq!(got.heads, heads, "{backend} device {i}");
        }
    }
}

/// Batches without idempotency keys (PostgreSQL appends them in one
/// statement, offsets computed in SQL) from two "nodes" at once, some
/// events in two rooms: each room's offsets are exactly 1..=N, every event
/// is stored at the offsets its append returned, and a batch's events of
/// one room are consecutive in batch order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_without_keys_get_gapless_offsets_in_every_room_on_two_nodes() {
    let url = common::fresh_postgres("sy_plain_append_").await;
    let a = store::connect(&url).await.expect("postgres");
    a.migrate().await.unwrap();
    let b = store::connect(&url).await.expect("postgres");
    let lite = store::connect(&common::sqlite_url()).await.expect("sqlite");
    lite.migrate().await.unwrap();
    for nodes in [vec![a, b], vec![lite]] {
        let company = common::unique("c");
        let mut tasks = Vec::new();
        for node in &nodes {
            for p in 0..3usize {
                let (node, company) = (node.clone(), company.clone());
                tasks.push(tokio::spawn(async move {
                    let mut got: Vec<(String, Vec<(String, i64)>)> = Vec::new();
                    for i in 0..60usize {
                        let batch: Vec<NewEvent> = (0..1 + (i + p) % 4)
                            .map(|j| {
                                let rooms: &[&str] = if (i + j) % 3 == 0 {
                                    &["line:1", "line:2"]
                                } else {
                                    &["line:1"]
                                };
                                event(&company, rooms, None)
                            })
                            .collect();
                        let ids: Vec<String> = batch.iter().map(|e| e.id.clone()).collect();
                        let res = node.append(batch).await.unwrap();
                        let mut last: std::collections::HashMap<String, i64> = Default::default();
                        for (id, r) in ids.into_iter().zip(res) {
                            assert_eq!(r.id, id);
                            assert!(!r.duplicate);
                            for (room, offset) in &r.offsets {
                                if let Some(before) = last.insert(room.clone(), *offset) {
                                    assert_eq!(*offset, before + 1, "consecutive in batch order");
                                }
                            }
                            got.push((id, r.offsets));
                        }
                    }
                    got
                }));
            }
        }
        let mut returned: std::collections::BTreeMap<(String, i64), String> = Default::default();
        for t in tasks {
            for (id, offsets) in t.await.unwrap() {
                for (room, offset) in offsets {
                    assert!(
                        returned.insert((room, offset), id.clone()).is_none(),
                        "once"
                    );
                }
            }
        }
        for room in ["line:1", "line:2"] {
            let stored = nodes[0]
                .events_after(&company, room, 0, 100_000, 0)
                .await
                .unwrap();
            let offsets: Vec<i64> = stored.iter().map(|e| e.offset).collect();
            assert_eq!(
                offsets,
                (1..=stored.len() as i64).collect::<Vec<_>>(),
                "{room}"
            );
            for e in &stored {
                assert_eq!(
                    returned.get(&(room.to_string(), e.offset)),
                    Some(&e.id),
                    "{room}"
                );
            }
            assert_eq!(
                returned.keys().filter(|(r, _)| r == room).count(),
                stored.len(),
                "{room}"
            );
        }
    }
    common::drop_postgres(&url).await;
}

/// The connects' reads when the database cannot answer them (here: a table
/// they read is gone): every read fails with the error, none waits forever
/// however many were grouped, and once the table is back the same store
/// answers again (a failed group gives its slot back).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_positions_fail_each_read_when_the_database_cannot_answer() {
    const READS: usize = 300;
    let pg_url = common::fresh_postgres("sy_positions_fail_").await;
    for url in [common::sqlite_url(), pg_url.clone()] {
        let store = store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrations");
        let company = common::unique("c");
        store
            .append(vec![event(&company, &["company"], None)])
            .await
            .unwrap();
        let key = |i: usize| store::CursorKey {
            company_id: company.clone(),
            user_id: format!("u{i}"),
            device_id: format!("d{i}"),
        };
        let rooms = vec!["company".to_string()];
        let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
        let read_all = || {
            let reads: Vec<_> = (0..READS)
                .map(|i| {
                    let (store, key, rooms) = (store.clone(), key(i), rooms.clone());
                    tokio::spawn(async move { store.connect_positions(&key, &rooms).await })
                })
                .collect();
            let url = url.clone();
            async move {
                tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    futures::future::join_all(reads),
                )
                .await
                .unwrap_or_else(|_| panic!("{url}: reads still waiting after 30 s"))
            }
        };

        ddl(&url, &rename("room_offsets", "room_offsets_away")).await;
        for (i, got) in read_all().await.into_iter().enumerate() {
            let got = got.expect("read task");
            assert!(got.is_err(), "{url}: read {i} answered without its table");
        }

        ddl(&url, &rename("room_offsets_away", "room_offsets")).await;
        for (i, got) in read_all().await.into_iter().enumerate() {
            let got = got
                .expect("read task")
                .unwrap_or_else(|e| panic!("{url}: read {i} after the table came back: {e}"));
            assert_eq!(got.heads.get("company"), Some(&1), "{url}: read {i}");
        }
    }
    common::drop_postgres(&pg_url).await;
}

/// PostgreSQL keeps the log writer's connection between appends (sqlx
/// pings every connection it takes back): one whose backend died fails its
/// append and is not used again; the next append takes a healthy one.
#[tokio::test]
async fn an_append_whose_kept_connection_died_fails_alone() {
    let (url, store, company) = store_with_one_event("sy_kept_conn_").await;
    let append = || store.append(vec![event(&company, &["line:1"], None)]);
    // Only the backend that ran the append: the pool's others stay healthy.
    ddl(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query LIKE 'WITH e AS%'",
    )
    .await;
    assert!(
        append().await.is_err(),
        "the kept connection's backend is gone"
    );
    for want in [2, 3] {
        let got = append()
            .await
            .unwrap_or_else(|e| panic!("append after the dead connection: {e}"));
        assert_eq!(got[0].offsets[0].1, want, "gapless after the failure");
    }
    drop(store);
    common::drop_postgres(&url).await;
}

/// An append given up mid-statement (the log writer's 5 s timeout drops
/// the future while PostgreSQL still works on it): the statement still
/// commits after the caller was told it failed, which is why a refusal
/// means "not known to be stored" (docs/protocol.md); the log stays
/// gapless and the appends after it go through.
#[tokio::test]
async fn an_append_cancelled_while_it_waits_commits_later_and_leaves_no_gap() {
    let (url, store, company) = store_with_one_event("sy_kept_cancel_").await;
    let append = || store.append(vec![event(&company, &["line:1"], None)]);
    // Another session holds the room's counter row: the next append waits.
    let (blocker, held) = hold_counter_row(&url, &company, "line:1").await;
    let given_up = tokio::time::timeout(Duration::from_millis(300), append()).await;
    assert!(given_up.is_err(), "the append waited for the lock");
    // The next append waits for the lock too.
    let next = tokio::spawn({
        let store = store.clone();
        let company = company.clone();
        async move { store.append(vec![event(&company, &["line:1"], None)]).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.rollback().await.expect("release the row");
    let got = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("the next append is answered once the row is free")
        .expect("task")
        .expect("the next append");
    let offset = got[0].offsets[0].1;
    assert!(offset == 2 || offset == 3, "offset {offset}");
    // The cancelled statement ran to its end on its backend: three events,
    // offsets 1, 2, 3.
    let mut log = Vec::new();
    for _ in 0..50 {
        log = store
            .events_after(&company, "line:1", 0, 10, 2)
            .await
            .expect("read the log");
        if log.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let offsets: Vec<i64> = log.iter().map(|e| e.offset).collect();
    assert_eq!(
        offsets,
        vec![1, 2, 3],
        "gapless, the cancelled one included"
    );
    assert_eq!(append().await.expect("after")[0].offsets[0].1, 4);
    blocker.close().await;
    drop(store);
    common::drop_postgres(&url).await;
}

/// A fresh PostgreSQL database, its migrated store, and a new company
/// whose `line:1` already holds offset 1.
async fn store_with_one_event(prefix: &str) -> (String, Arc<dyn Store>, String) {
    let url = common::fresh_postgres(prefix).await;
    let store = store::connect(&url).await.expect("store");
    store.migrate().await.expect("migrations");
    let company = common::unique("c");
    let first = store.append(vec![event(&company, &["line:1"], None)]).await;
    assert_eq!(first.expect("first")[0].offsets[0].1, 1);
    (url, store, company)
}

/// A migrated store at `url` with its log writer, and a new company whose
/// `line:1` already holds offset 1.
async fn writer_with_one_event(url: &str) -> (Arc<dyn Store>, store::batch::Appender, String) {
    let store = store::connect(url).await.expect("store");
    store.migrate().await.expect("migrations");
    let appender = store::batch::Appender::new(store.clone(), &switchyard::tasks::Tasks::new());
    let company = common::unique("c");
    let first = appender
        .append(vec![event(&company, &["line:1"], None)])
        .await;
    assert_eq!(first.expect("first")[0].offsets[0].1, 1);
    (store, appender, company)
}

/// Per hand-over, the offsets it was given.
type Handed = Arc<std::sync::Mutex<Vec<Vec<(String, i64)>>>>;

/// A hand-over that records the offsets it gets.
fn recorder() -> (Handed, store::batch::OnCommit) {
    let handed: Handed = Arc::default();
    let record: store::batch::OnCommit = Box::new({
        let handed = handed.clone();
        move |appended| {
            let mut handed = handed.lock().expect("lock");
            handed.extend(appended.iter().map(|a| a.offsets.clone()));
        }
    });
    (handed, record)
}

/// Waits (at most 10 s) until a hand-over recorded something.
async fn until_handed(handed: &Handed) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handed.lock().expect("lock").is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After a late commit: its hand-over got offset 2 of `line:1`, and once
/// the breaker closed again the next append follows, gapless, with 3.
async fn late_offset_2_then_3(handed: &Handed, appender: &store::batch::Appender, company: &str) {
    until_handed(handed).await;
    assert_eq!(
        *handed.lock().expect("lock"),
        vec![vec![("line:1".to_string(), 2)]],
        "the late commit went through and was handed over"
    );
    let next = append_once_open(appender, company).await;
    assert_eq!(next.expect("after the breaker closed")[0].offsets[0].1, 3);
}

/// Appends one event to `line:1`, retrying (at most 10 s) while the
/// writer's breaker is still open.
async fn append_once_open(
    appender: &store::batch::Appender,
    company: &str,
) -> Result<Vec<store::Appended>, store::StoreError> {
    let mut next = appender
        .append(vec![event(company, &["line:1"], None)])
        .await;
    for _ in 0..40 {
        if next.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        next = appender
            .append(vec![event(company, &["line:1"], None)])
            .await;
    }
    next
}

/// Another session holding a room's counter row: appends to the room wait
/// until the transaction is rolled back.
async fn hold_counter_row(
    url: &str,
    company: &str,
    room: &str,
) -> (sqlx::PgPool, sqlx::Transaction<'static, sqlx::Postgres>) {
    let pool = sqlx::PgPool::connect(url).await.expect("postgres");
    let mut held = pool.begin().await.expect("begin");
    sqlx::query(
        "SELECT last_offset FROM room_offsets WHERE company_id = $1 AND room = $2 FOR UPDATE",
    )
    .bind(company)
    .bind(room)
    .fetch_one(&mut *held)
    .await
    .expect("lock the counter row");
    (pool, held)
}

/// Runs one statement on the database at `url` over a connection of its own.
async fn ddl(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        sqlx::query(sql).execute(&pool).await.expect(sql);
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        sqlx::query(sql).execute(&pool).await.expect(sql);
        pool.close().await;
    }
}
