//! Presence orchestration in a real server (in-process, SQLite): what the
//! store contract cannot show on its own.

mod common;

use std::time::Duration;

use common::client::Client;
use serde_json::json;
use switchyard::domain::{Role, now_ms};
use switchyard::store::{self, SocketEntry, UserKey};

async fn rows_of(db: &str, company: &str) -> Vec<(String, String)> {
    let pool = sqlx::SqlitePool::connect(db).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT user_id, node_id FROM presence_sockets WHERE company_id = ? ORDER BY user_id",
    )
    .bind(company)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

/// A node whose rows drifted from its sockets (reaped by another node while
/// it was cut off from the database; or a row it failed to delete) puts
/// them right at its next heartbeat, and announces what changed.
#[tokio::test]
async fn the_heartbeat_repairs_drifted_rows() {
    let db = common::sqlite_url();
    let app = common::spawn_app(
        &db,
        &[("WS_PRESENCE_TTL", "3"), ("WS_PRESENCE_GRACE_MS", "300")],
    )
    .await;
    let store = store::connect(&db).await.unwrap();
    let c = common::unique("c");
    let mut sup = Client::with_token(&app.url(), &app.token("sup", &c, Role::Supervisor)).await;
    sup.expect("session").await;
    let mut op = Client::with_token(&app.url(), &app.token("op", &c, Role::Operator)).await;
    op.expect("session").await;
    assert_eq!(sup.expect("user:online").await[0]["userId"], "op");

    // Another node reaps op's socket as if this node were dead.
    let op_key = UserKey {
        company_id: c.clone(),
        user_id: "op".into(),
    };
    let reaped = store
        .presence_settle(&op_key, i64::MAX, now_ms() + 60_000, 300, 500)
        .await
        .unwrap();
    assert!(reaped.user.is_some(), "op went offline in the database");
    let online = sup.expect("user:online").await;
    assert_eq!(online[0]["userId"], "op", "re-registered and announced");
    assert_eq!(online[0]["role"], "operator");

    // A row of this node that no socket backs is removed as a departure.
    let rows = rows_of(&db, &c).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let node = rows[0].1.clone();
    let ghost = SocketEntry {
        company_id: c.clone(),
        user_id: "ghost".into(),
        role: "operator".into(),
        socket_id: "ghost-socket".into(),
        node_id: node,
        rooms: vec![],
        since: now_ms(),
    };
    store.presence_join(&ghost, now_ms()).await.unwrap();
    let offline = sup.expect("user:offline").await;
    assert_eq!(offline[0]["userId"], "ghost");
    let users: Vec<String> = rows_of(&db, &c).await.into_iter().map(|r| r.0).collect();
    assert_eq!(users, vec!["op", "sup"]);
    app.stop().await;
}

/// Sockets that go away while they are being registered leave no row
/// behind (the heartbeat, which would repair it, is minutes away here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_closing_during_registration_leave_no_rows() {
    let db = common::sqlite_url();
    let app = common::spawn_app(&db, &[("WS_PRESENCE_GRACE_MS", "200")]).await;
    let c = common::unique("c");
    let token = app.token("flash", &c, Role::Operator);
    for _ in 0..20 {
        let client = Client::connect(&app.url(), "", json!({ "token": token }))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        client.disconnect();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rows_of(&db, &c).await, vec![]);
    let store = store::connect(&db).await.unwrap();
    assert!(store.presence_list(&c, None).await.unwrap().is_empty());
    app.stop().await;
}

/// `WS_PRESENCE=off`: no presence signal of any kind, in the company or in
/// entity rooms, and `presence:list` says presence is off.
#[tokio::test]
async fn presence_off_sends_no_presence_signals() {
    let db = common::sqlite_url();
    let app = common::spawn_app(
        &db,
        &[("WS_PRESENCE", "off"), ("WS_PRESENCE_GRACE_MS", "200")],
    )
    .await;
    let c = common::unique("c");
    let mut sup = Client::with_token(&app.url(), &app.token("sup", &c, Role::Supervisor)).await;
    sup.expect("session").await;
    let ack = sup
        .emit_with_ack("subscribe", json!({ "room": "machine:m1" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut op = Client::with_token(&app.url(), &app.token("op", &c, Role::Operator)).await;
    op.expect("session").await;
    let ack = op
        .emit_with_ack("subscribe", json!({ "room": "machine:m1" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = op
        .emit_with_ack("unsubscribe", json!({ "room": "machine:m1" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    op.disconnect();
    let heard = sup.drain(Duration::from_millis(800)).await;
    let names: Vec<&str> = heard.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("user:") || n.starts_with("presence:")),
        "{names:?}"
    );
    let list = sup
        .emit_with_ack("presence:list", json!({ "room": "machine:m1" }))
        .await;
    assert_eq!(list["error"]["code"], "UNAVAILABLE", "{list}");
    app.stop().await;
}

/// Above `WS_PRESENCE_BROADCAST_MAX` users online, company-wide arrivals and
/// departures are no longer sent to every socket; sessions that asked for
/// batches (`presence:list { batches: true }`) get `presence:batch` frames
/// that, with the per-user frames sent below the bound, account for every
/// transition exactly once.
#[tokio::test]
async fn over_the_broadcast_bound_transitions_go_out_in_batches_to_those_who_asked() {
    let db = common::sqlite_url();
    let app = common::spawn_app(
        &db,
        &[
            ("WS_PRESENCE_BROADCAST_MAX", "3"),
            ("WS_PRESENCE_GRACE_MS", "300"),
        ],
    )
    .await;
    let c = common::unique("c");
    let mut watch = Client::with_token(&app.url(), &app.token("w", &c, Role::Supervisor)).await;
    watch.expect("session").await;
    let list = watch
        .emit_with_ack("presence:list", json!({ "batches": true }))
        .await;
    assert_eq!(list["users"][0]["userId"], "w", "{list}");
    let refused = watch
        .emit_with_ack(
            "presence:list",
            json!({ "room": "role:supervisor", "batches": true }),
        )
        .await;
    assert_eq!(refused["error"]["code"], "VALIDATION_FAILED", "{refused}");
    let mut plain = Client::with_token(&app.url(), &app.token("p", &c, Role::Operator)).await;
    plain.expect("session").await;
    let mut others = Vec::new();
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        let mut client = Client::with_token(&app.url(), &app.token(u, &c, Role::Operator)).await;
        client.expect("session").await;
        others.push(client);
    }
    // 1..3 online: per-user frames (p and u1); 4..7: batches.
    let heard = watch.drain(Duration::from_millis(800)).await;
    let each: Vec<String> = heard
        .iter()
        .filter(|(n, _)| n == "user:online")
        .map(|(_, a)| a[0]["userId"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(each, vec!["p", "u1"], "{heard:?}");
    let mut batched: Vec<String> = Vec::new();
    for (name, args) in &heard {
        if name == "presence:batch" {
            assert_eq!(args[0]["offline"], json!([]), "{args:?}");
            for e in args[0]["online"].as_array().unwrap() {
                assert_eq!(e["role"], "operator");
                batched.push(e["userId"].as_str().unwrap().to_string());
            }
        }
    }
    batched.sort();
    assert_eq!(
        batched,
        vec!["u2", "u3", "u4", "u5"],
        "each once: {heard:?}"
    );
    let plain_heard = plain.drain(Duration::from_millis(300)).await;
    let names: Vec<(&str, String)> = plain_heard
        .iter()
        .map(|(n, a)| (n.as_str(), a[0]["userId"].to_string()))
        .collect();
    assert_eq!(
        names,
        vec![("user:online", "\"u1\"".to_string())],
        "no per-user frames above the bound, no batches unasked"
    );

    // A departure above the bound: in a batch, after the grace period.
    others.pop().unwrap().disconnect();
    let heard = watch.drain(Duration::from_millis(1200)).await;
    let batches: Vec<&Vec<serde_json::Value>> = heard
        .iter()
        .filter(|(n, _)| n == "presence:batch")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(batches.len(), 1, "{heard:?}");
    assert_eq!(batches[0][0]["online"], json!([]));
    assert_eq!(batches[0][0]["offline"][0]["userId"], "u5");
    assert!(!heard.iter().any(|(n, _)| n == "user:offline"), "{heard:?}");
    assert!(plain.drain(Duration::from_millis(200)).await.is_empty());
    app.stop().await;
}
