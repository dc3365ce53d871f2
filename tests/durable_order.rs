//! Durable events reach a node's live feeds in offset order, however many
//! publishers commit in one group: a member that sees an offset before the
//! one it waits for takes it for a gap and reads the log (a catch-up query
//! per member). Before, each publish handed its events to the feeds from its
//! own task once its commit was answered, in whatever order the runtime ran
//! those tasks, and a busy room started about one catch-up per commit.

mod common;

use std::time::Duration;

use common::client::Client;
use serde_json::json;
use switchyard::domain::Role;

const PUBLISHERS: usize = 8;
const EACH: usize = 30;

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_reach_the_feeds_in_offset_order_on_sqlite() {
    publish_at_once(&common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_reach_the_feeds_in_offset_order_on_postgres() {
    let url = common::fresh_postgres("sy_durable_order_").await;
    publish_at_once(&url).await;
    common::drop_postgres(&url).await;
}

/// Every publisher keeps all of its publishes in flight at once, so the
/// group-commit writer answers many publishers per commit; a watcher must
/// get every offset once, in order, and no member may read the log.
async fn publish_at_once(database_url: &str) {
    let app = common::spawn_app(database_url, &[("WS_RATE_LIMIT", "100000")]).await;
    let company = common::unique("order-");
    let mut watcher =
        Client::with_token(&app.url(), &app.token("w", &company, Role::Operator)).await;
    watcher.expect("session").await;
    let mut publishers = Vec::new();
    for i in 0..PUBLISHERS {
        let token = app.token(&format!("p{i}"), &company, Role::Supervisor);
        let mut c = Client::with_token(&app.url(), &token).await;
        c.expect("session").await;
        publishers.push(c);
    }
    let before = metric(&app.url(), "switchyard_catch_ups_total").await;

    let mut pending = Vec::new();
    for (i, p) in publishers.iter_mut().enumerate() {
        let ids: Vec<u64> = (0..EACH)
            .map(|n| {
                p.emit_ack_id(
                    "event:publish",
                    json!({ "type": "order:status_changed", "payload": {
                        "orderId": format!("{i}-{n}"), "oldStatus": "a", "newStatus": "b",
                        "timestamp": "2026-12-02T10:00:00Z" } }),
                )
            })
            .collect();
        pending.push(ids);
    }
    for (p, ids) in publishers.iter_mut().zip(pending) {
        for id in ids {
            let ack = p.ack(id).await;
            assert_eq!(ack["ok"], true, "{ack}");
        }
    }

    let mut offsets = Vec::new();
    while offsets.len() < PUBLISHERS * EACH {
        let ev = watcher.expect("order:status_changed").await;
        offsets.push(ev[1]["offset"].as_i64().expect("offset in the meta"));
    }
    let first = offsets[0];
    let want: Vec<i64> = (first..first + offsets.len() as i64).collect();
    assert_eq!(offsets, want, "the watcher got every offset once, in order");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = metric(&app.url(), "switchyard_catch_ups_total").await;
    assert_eq!(
        after - before,
        0.0,
        "members read the log although no notification was lost"
    );
    app.stop().await;
}
