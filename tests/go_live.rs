//! Going live after the connect replay (`replay::offline::go_live`), on both
//! stores: a member the replay read to the end goes live without another
//! read, but an event announced between that read and going live must
//! still reach it, from the log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard::catalog::Catalog;
use switchyard::domain::{Role, SessionId};
use switchyard::replay::{DurableHub, Member, Merged, offline};
use switchyard::session::{SendFail, Sink};
use switchyard::store::{NewEvent, Store};
use switchyard::tasks::Tasks;

#[derive(Default)]
struct Recorder(Mutex<Vec<i64>>);

impl Recorder {
    fn offsets(&self) -> Vec<i64> {
        self.0.lock().expect("recorder").clone()
    }
}

struct TestSink(Arc<Recorder>);

impl Sink for TestSink {
    fn emit(&self, _: &str, _: &Value, meta: &Value) -> Result<(), SendFail> {
        let offset = meta["offset"].as_i64().expect("offset in meta");
        self.0.0.lock().expect("recorder").push(offset);
        Ok(())
    }
    fn emit_one(&self, _: &str, _: &Value) -> Result<(), SendFail> {
        Ok(())
    }
    fn disconnect(&self) {}
    fn overflowed(&self) {}
    fn proof_window(&self) -> Duration {
        Duration::from_millis(200)
    }
}

const ROOM: &str = "company";

fn event(company: &str, n: u32) -> NewEvent {
    NewEvent {
        id: format!("{company}-{n}"),
        company_id: company.to_string(),
        event_type: "order:status_changed".into(),
        rooms: vec![ROOM.into()],
        payload: json!({ "n": n }),
        priority: "medium".into(),
        source: "test".into(),
        publisher: None,
        created_at: switchyard::domain::now_ms(),
        expires_at: switchyard::domain::now_ms() + 3_600_000,
        idempotency_key: None,
        webhooks: Vec::new(),
    }
}

async fn append(store: &Arc<dyn Store>, company: &str, n: u32) {
    store.append(vec![event(company, n)]).await.expect("append");
}

/// Announces the room's latest event on this node, as a commit would.
async fn announce_latest(hub: &Arc<DurableHub>, store: &Arc<dyn Store>, company: &str) {
    let head = store.head_offset(company, ROOM).await.expect("head");
    let stored = store
        .events_after(company, ROOM, head - 1, 1, switchyard::domain::now_ms())
        .await
        .expect("read")
        .pop()
        .expect("the latest event");
    hub.notify_local(&hub.log_event(company, stored, None));
}

async fn wait_for(rec: &Recorder, want: &[i64]) {
    for _ in 0..100 {
        if rec.offsets() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rec.offsets(), want);
}

fn member(hub: &DurableHub, company: &str) -> (Arc<Member>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let m = Member::new(
        Arc::new(TestSink(rec.clone())),
        SessionId::new(),
        Role::Operator,
        company,
        ROOM,
        0,
    );
    hub.feeds.attach(m.clone());
    (m, rec)
}

/// Each member's connect replay, then going live, all at once.
async fn replay_all_and_go_live(hub: &Arc<DurableHub>, members: &[(Arc<Member>, Arc<Recorder>)]) {
    let replays = members.iter().map(|(m, _)| {
        let (hub, m) = (hub.clone(), m.clone());
        async move {
            let merged = hub.replay_merged(std::slice::from_ref(&m)).await;
            offline::go_live(&hub, vec![m], &merged.read_through);
        }
    });
    futures::future::join_all(replays).await;
}

/// Waits up to `patience` for each member to have `1..=last`, then checks
/// each got exactly that, in order.
async fn each_gets_all_once(
    members: &[(Arc<Member>, Arc<Recorder>)],
    last: u32,
    patience: Duration,
    name: &str,
) {
    let want: Vec<i64> = (1..=i64::from(last)).collect();
    let deadline = tokio::time::Instant::now() + patience;
    for (i, (_, rec)) in members.iter().enumerate() {
        while rec.offsets().len() < want.len() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rec.offsets(), want, "{name}: member {i}");
    }
}

/// A hub over `store`, one event in a fresh company, and a member of its
/// room after the connect replay (still waiting to go live).
async fn replayed_one(
    store: &Arc<dyn Store>,
) -> (Arc<DurableHub>, String, Arc<Member>, Arc<Recorder>, Merged) {
    let catalog = Arc::new(Catalog::load(None).expect("builtin catalog"));
    let hub = DurableHub::new(store.clone(), catalog, Tasks::new());
    let company = common::unique("golive-");
    append(store, &company, 1).await;
    let (m, rec) = member(&hub, &company);
    let merged = hub.replay_merged(std::slice::from_ref(&m)).await;
    (hub, company, m, rec, merged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_announced_before_going_live_is_read_from_the_log() {
    for (name, store) in common::stores().await {
        let (hub, company, m, rec, merged) = replayed_one(&store).await;
        assert_eq!(merged.read_through, vec![true], "{name}");
        assert_eq!(rec.offsets(), vec![1], "{name}: replayed");
        // Committed and announced after the replay's last read, while the
        // member still waits for `session` to go out.
        append(&store, &company, 2).await;
        announce_latest(&hub, &store, &company).await;
        assert_eq!(
            rec.offsets(),
            vec![1],
            "{name}: held back before going live"
        );
        offline::go_live(&hub, vec![m], &merged.read_through);
        wait_for(&rec, &[1, 2]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_read_to_the_end_goes_live_at_once() {
    for (name, store) in common::stores().await {
        let (hub, company, m, rec, merged) = replayed_one(&store).await;
        offline::go_live(&hub, vec![m], &merged.read_through);
        // Live now: the next announcement is delivered from the feed itself.
        append(&store, &company, 2).await;
        announce_latest(&hub, &store, &company).await;
        assert_eq!(
            rec.offsets(),
            vec![1, 2],
            "{name}: delivered live, in order"
        );
    }
}

/// Many members resuming from the same position at once share their page
/// reads (`replay::pages`), while events keep being committed and
/// announced: each member still gets every event once, in order, whether
/// from a shared page, its own read or live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_sharing_catch_up_reads_each_get_every_event_once_while_events_commit() {
    const MEMBERS: usize = 40;
    const BEFORE: u32 = 30;
    const DURING: u32 = 30;
    for (name, store) in common::stores().await {
        let catalog = Arc::new(Catalog::load(None).expect("builtin catalog"));
        let hub = DurableHub::new(store.clone(), catalog, Tasks::new());
        let company = common::unique("shared-");
        for n in 1..=BEFORE {
            append(&store, &company, n).await;
        }
        let members: Vec<_> = (0..MEMBERS).map(|_| member(&hub, &company)).collect();
        let writer = {
            let (hub, store, company) = (hub.clone(), store.clone(), company.clone());
            tokio::spawn(async move {
                for n in BEFORE + 1..=BEFORE + DURING {
                    append(&store, &company, n).await;
                    announce_latest(&hub, &store, &company).await;
                    tokio::task::yield_now().await;
                }
            })
        };
        replay_all_and_go_live(&hub, &members).await;
        writer.await.expect("writer");
        each_gets_all_once(&members, BEFORE + DURING, Duration::from_secs(10), name).await;
    }
}

/// PostgreSQL goes away while members resuming from one position wait for
/// their catch-up reads (new connections refused, open ones terminated),
/// and comes back: a failed read is no page, shared or not, so every
/// member retries and gets every event once, in order, including those
/// committed after the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_whose_catch_up_reads_fail_in_an_outage_each_get_every_event_once_after_it() {
    const MEMBERS: usize = 20;
    const BEFORE: u32 = 30;
    const AFTER: u32 = 10;
    let db = common::switchable::Switchable::new("sy_shared_outage_").await;
    let store = switchyard::store::connect(&db.url).await.expect("postgres");
    store.migrate().await.expect("migrations");
    let catalog = Arc::new(Catalog::load(None).expect("builtin catalog"));
    let hub = DurableHub::new(store.clone(), catalog, Tasks::new());
    let company = common::unique("outage-");
    for n in 1..=BEFORE {
        append(&store, &company, n).await;
    }
    let members: Vec<_> = (0..MEMBERS).map(|_| member(&hub, &company)).collect();
    db.set_reachable(false).await;
    replay_all_and_go_live(&hub, &members).await;
    // The catch-ups are failing and retrying now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, (_, rec)) in members.iter().enumerate() {
        assert!(
            rec.offsets().is_empty(),
            "member {i} got events while the database was away: {:?}",
            rec.offsets()
        );
    }
    db.set_reachable(true).await;
    // The pool's first uses after the outage may meet connections that
    // were terminated: such an append fails before anything is sent.
    for n in BEFORE + 1..=BEFORE + AFTER {
        let mut tries = 0;
        while let Err(e) = store.append(vec![event(&company, n)]).await {
            tries += 1;
            assert!(tries < 50, "event {n} not appended after the outage: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        announce_latest(&hub, &store, &company).await;
    }
    each_gets_all_once(
        &members,
        BEFORE + AFTER,
        Duration::from_secs(10),
        "postgres",
    )
    .await;
    db.drop().await;
}
