//! A hot document with PostgreSQL stopped mid-turn (`src/documents/hot.rs`:
//! updates of one document queued on a node are merged in order under one
//! lock and committed together). Two nodes on a private PostgreSQL cluster
//! (started by the test, never the shared one), 24 writers updating one
//! document as fast as they are answered; the cluster is stopped (fast
//! shutdown: the turn's transaction is cut) and started again. Every waiter
//! is answered, `UNAVAILABLE` within 2 s, none hangs; no version is
//! acknowledged twice and every acknowledged version holds exactly what its
//! writer sent; after the restart updates succeed with the versions
//! continuing, gapless.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::client::Client;
use common::private_pg::PrivatePg;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use switchyard::domain::Role;

const WRITERS: usize = 24;
/// How long a waiter may wait for its answer once the database is gone.
const BOUND: Duration = Duration::from_secs(2);
/// How long the database stays down: longer than the pool's connection
/// timeout (3 s), so a waiter that waits for a connection is seen waiting.
const DOWN: Duration = Duration::from_secs(5);
/// Longer than this without an answer is a hang.
const HANG: Duration = Duration::from_secs(8);

struct Attempt {
    writer: usize,
    n: u64,
    sent: Instant,
    /// `None`: no answer within [`HANG`].
    answered: Option<Instant>,
    ack: Value,
}

async fn writer(
    app_url: String,
    token: String,
    writer: usize,
    stop: Arc<AtomicBool>,
    highest: Arc<AtomicI64>,
) -> Vec<Attempt> {
    let mut client = Client::with_token(&app_url, &token).await;
    client.expect("session").await;
    let mut attempts = Vec::new();
    let mut base = 0;
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let sent = Instant::now();
        let id = client.emit_ack_id(
            "document:update",
            json!({ "type": "checklist", "id": "hot", "baseVersion": base,
                    "changes": { format!("w{writer}"): n } }),
        );
        let (answered, ack) = match tokio::time::timeout(HANG, client.ack(id)).await {
            Ok(ack) => (Some(Instant::now()), ack),
            Err(_) => (None, Value::Null),
        };
        if let Some(v) = ack["version"].as_i64().filter(|_| ack["ok"] == true) {
            base = v;
            highest.fetch_max(v, Ordering::AcqRel);
        }
        let failed = ack["ok"] != true;
        attempts.push(Attempt {
            writer,
            n,
            sent,
            answered,
            ack,
        });
        if answered.is_none() {
            break;
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    attempts
}

/// `t - origin` in ms, negative when earlier.
fn signed_ms(t: Instant, origin: Instant) -> i128 {
    if t >= origin {
        (t - origin).as_millis() as i128
    } else {
        -((origin - t).as_millis() as i128)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_document_answers_every_waiter_when_postgres_stops_and_versions_continue() {
    let pg = Arc::new(tokio::task::spawn_blocking(PrivatePg::start).await.unwrap());
    let extra = [("WS_RATE_LIMIT", "10000"), ("WS_USER_RATE_LIMIT", "10000")];
    // Two nodes: the database, not one node's queue, arbitrates the versions.
    let nodes = [
        common::spawn_app(&pg.url(), &extra).await,
        common::spawn_app(&pg.url(), &extra).await,
    ];
    let company = common::unique("hot");
    let stop = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let node = &nodes[w % 2];
        let token = node.token(&format!("w{w}"), &company, Role::Supervisor);
        tasks.push(tokio::spawn(writer(
            node.url(),
            token,
            w,
            stop.clone(),
            highest.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while highest.load(Ordering::Acquire) < 150 {
        assert!(Instant::now() < deadline, "the writers did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Mid-turn: the writers never pause, so a turn is always running.
    let stopped_at = Instant::now();
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.stop()).await.unwrap();
    let down_at = Instant::now();
    tokio::time::sleep(DOWN).await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.resume())
        .await
        .unwrap();
    let up_at = Instant::now();
    // Each writer gets an update through again (nodes find out by themselves).
    let recovered = Instant::now() + Duration::from_secs(20);
    let after_restart = highest.load(Ordering::Acquire);
    while highest.load(Ordering::Acquire) < after_restart + 3 * WRITERS as i64 {
        assert!(
            Instant::now() < recovered,
            "updates do not succeed again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Release);
    let mut attempts = Vec::new();
    for t in tasks {
        attempts.extend(t.await.unwrap());
    }

    // Every waiter answered; the ones the outage reached within the bound.
    let hung: Vec<(usize, u64)> = attempts
        .iter()
        .filter(|a| a.answered.is_none())
        .map(|a| (a.writer, a.n))
        .collect();
    assert!(
        hung.is_empty(),
        "no answer within {HANG:?} for (writer, n) {hung:?}"
    );
    let mut slowest = Duration::ZERO;
    let mut late = Vec::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for a in &attempts {
        let answered = a.answered.unwrap_or(a.sent);
        if a.ack["ok"] != true {
            *codes
                .entry(a.ack["error"]["code"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        if answered < stopped_at || a.sent > up_at {
            continue;
        }
        let waited = answered - a.sent.max(stopped_at);
        slowest = slowest.max(waited);
        if waited > BOUND {
            let code = a.ack["error"]["code"].as_str().unwrap_or("ok");
            late.push(format!(
                "writer {} n={} sent {} ms, answered {} ms after the stop began: {code} {}",
                a.writer,
                a.n,
                signed_ms(a.sent, stopped_at),
                signed_ms(answered, stopped_at),
                a.ack["version"]
            ));
        }
    }
    eprintln!(
        "{} attempts; refusals by code {codes:?}; slowest answer during the outage {slowest:?}; \
         stop took {:?}",
        attempts.len(),
        down_at - stopped_at
    );
    assert!(
        codes.keys().all(|c| c == "UNAVAILABLE"),
        "refusals are UNAVAILABLE only: {codes:?}"
    );
    assert!(
        codes.get("UNAVAILABLE").copied().unwrap_or(0) > 0,
        "the outage was seen"
    );
    assert!(
        late.is_empty(),
        "answered later than {BOUND:?} into the outage: {late:?}"
    );

    // No version used twice; each acknowledged version holds its writer's change.
    let db = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("the private postgres");
    let rows: Vec<(i64, sqlx::types::Json<Value>)> = sqlx::query_as(
        "SELECT version, changes FROM document_versions
         WHERE company_id = $1 AND doc_type = 'checklist' AND doc_id = 'hot' ORDER BY version",
    )
    .bind(&company)
    .fetch_all(&db)
    .await
    .unwrap();
    let history: HashMap<i64, Value> = rows.iter().map(|(v, c)| (*v, c.0.clone())).collect();
    let versions: Vec<i64> = rows.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        (1..=versions.len() as i64).collect::<Vec<_>>(),
        "versions gapless from 1"
    );
    let mut acked: HashMap<i64, (usize, u64)> = HashMap::new();
    for a in attempts.iter().filter(|a| a.ack["ok"] == true) {
        let v = a.ack["version"]
            .as_i64()
            .expect("an applied update has a version");
        if let Some(first) = acked.insert(v, (a.writer, a.n)) {
            panic!(
                "version {v} acknowledged twice: {first:?} and {:?}",
                (a.writer, a.n)
            );
        }
        assert_eq!(
            history.get(&v),
            Some(&json!({ format!("w{}", a.writer): a.n })),
            "version {v} holds what writer {} sent as n={}",
            a.writer,
            a.n
        );
    }
    // The versions continue after the restart.
    let before_stop = attempts
        .iter()
        .filter(|a| a.ack["ok"] == true && a.sent < stopped_at)
        .filter_map(|a| a.ack["version"].as_i64())
        .max()
        .unwrap();
    let after_up: Vec<i64> = attempts
        .iter()
        .filter(|a| a.ack["ok"] == true && a.sent > up_at)
        .filter_map(|a| a.ack["version"].as_i64())
        .collect();
    assert!(
        after_up.len() >= WRITERS,
        "updates succeed after the restart"
    );
    assert!(
        after_up.iter().all(|v| *v > before_stop),
        "versions after the restart continue past {before_stop}"
    );
    db.close().await;
    for node in nodes {
        node.stop().await;
    }
}

/// An update whose COMMIT stalls past the node's 5 s: a private
/// PostgreSQL with `synchronous_commit = on` and a synchronous standby that
/// does not exist holds every COMMIT until the setting is cleared. The
/// writer is told UNAVAILABLE; when the COMMIT goes through, the other
/// subscriber still gets `document:updated` for the version it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_commit_that_stalls_past_the_turn_timeout_is_still_announced() {
    let (pg, app, mut writer, mut reader) = one_version_then_stalled_commits("stall").await;
    let stalled = writer
        .emit_with_ack("document:update", notes(1, "two"))
        .await;
    assert_eq!(stalled["ok"], false, "{stalled}");
    assert_eq!(stalled["error"]["code"], "UNAVAILABLE", "{stalled}");

    pg.stall_commits(false).await;
    version_2_announced(&mut reader, "once it commits").await;
    drop(app);
    drop(pg);
}

/// A COMMIT that went through on a connection that then ended: the
/// backend is terminated while its COMMIT waits for a synchronous standby
/// that does not exist (the transaction is committed locally, the node
/// gets an error). The writer is told UNAVAILABLE; once the database
/// answers, the history shows the version, and the other subscriber gets
/// `document:updated` for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_commit_whose_connection_then_ends_is_announced_from_the_history() {
    let (pg, app, mut writer, mut reader) = one_version_then_stalled_commits("ended").await;
    let (ended, terminated) = tokio::join!(
        writer.emit_with_ack("document:update", notes(1, "two")),
        pg.end_the_waiting_commit()
    );
    assert!(terminated, "a COMMIT waited for the standby and was ended");
    assert_eq!(ended["ok"], false, "{ended}");
    assert_eq!(ended["error"]["code"], "UNAVAILABLE", "{ended}");

    version_2_announced(&mut reader, "from the history").await;
    pg.stall_commits(false).await;
    drop(app);
    drop(pg);
}

/// An update of order 7's notes from `base`.
fn notes(base: i64, note: &str) -> Value {
    json!({ "type": "order", "id": "7", "baseVersion": base, "changes": { "notes": note } })
}

/// A private PostgreSQL and a node on it; a writer and a reader in order
/// 7's room, version 1 written and announced; then COMMITs stall (they
/// wait for a synchronous standby that does not exist).
async fn one_version_then_stalled_commits(
    label: &str,
) -> (PrivatePg, common::TestApp, Client, Client) {
    let pg = tokio::task::spawn_blocking(PrivatePg::start).await.unwrap();
    pg.commit_synchronously().await;
    let app = common::spawn_app(&pg.url(), &[]).await;
    let company = common::unique(label);
    let mut writer =
        Client::with_token(&app.url(), &app.token("s1", &company, Role::Supervisor)).await;
    writer.expect("session").await;
    let mut reader =
        Client::with_token(&app.url(), &app.token("o1", &company, Role::Operator)).await;
    reader.expect("session").await;
    for c in [&mut writer, &mut reader] {
        let ack = c
            .emit_with_ack("subscribe", json!({ "room": "document:order:7" }))
            .await;
        assert_eq!(ack["rooms"], json!(["document:order:7"]));
    }
    let first = writer
        .emit_with_ack("document:update", notes(0, "one"))
        .await;
    assert_eq!(first["version"], 1, "{first}");
    reader.expect("document:updated").await;
    pg.stall_commits(true).await;
    (pg, app, writer, reader)
}

/// The reader gets `document:updated` for version 2 with its change
/// (within 10 s).
async fn version_2_announced(reader: &mut Client, how: &str) {
    let announced =
        tokio::time::timeout(Duration::from_secs(10), reader.expect("document:updated"))
            .await
            .unwrap_or_else(|_| panic!("version 2 is announced {how}"))
            .remove(0);
    assert_eq!(announced["version"], 2, "{announced}");
    assert_eq!(
        announced["changes"],
        json!({ "notes": "two" }),
        "{announced}"
    );
}
