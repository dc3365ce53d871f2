//! Device commands, in-process: the server-only `command_status` refused
//! from the HTTP API (the socket paths are covered with the real clients in
//! clients/tests/test/commands.test.js), the retention sweep deleting
//! finished commands past `COMMAND_RETENTION` as soon as a node starts, and
//! the sweep announcing transitions whose node died before announcing them.

mod common;

use std::time::Duration;

use common::client::Client;
use serde_json::json;
use switchyard::domain::Role;
use switchyard::domain::command::Step;
use switchyard::store::commands::{ANNOUNCE_GRACE_MS, NewCommand, Outcome};

#[tokio::test]
async fn the_http_api_refuses_command_status_naming_it_and_publishes_nothing() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let forged = json!({ "type": "command_status", "companyId": "acme",
                         "rooms": ["command:42"],
                         "payload": { "commandId": "42", "status": "succeeded" } });
    let order = json!({ "type": "order:created", "companyId": "acme", "rooms": ["order:7"],
                        "payload": { "orderId": "7", "orderNumber": "O-7" } });
    for (body, index) in [(forged.clone(), 0), (json!([order, forged]), 1)] {
        let (status, err) = app.post_json("/api/v1/events", &body).await;
        assert_eq!(status, 403);
        assert_eq!(err["error"]["code"], "FORBIDDEN", "{err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`command_status`")
                && message.contains("server")
                && message.contains("command:result"),
            "{message}"
        );
        assert_eq!(err["error"]["details"]["index"], index, "{err}");
    }
    // Nothing of either batch was published (validated whole first).
    for room in ["command:42", "order:7"] {
        let (_, page) = app
            .get_json(&format!("/api/v1/events?companyId=acme&room={room}"))
            .await;
        assert_eq!(page["events"], json!([]), "{room}: {page}");
    }
    app.stop().await;
}

#[tokio::test]
async fn finished_commands_past_retention_are_deleted_when_a_node_starts() {
    let url = common::sqlite_url();
    let store = switchyard::store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let now = switchyard::domain::now_ms();
    let hours = |h: i64| h * 3_600_000;
    let command = |created_at: i64| NewCommand {
        id: common::unique("cmd"),
        company_id: "acme".into(),
        target: "device:p1".into(),
        name: "pump:start".into(),
        args: json!({}),
        sender: None,
        // Far deadlines: the timeout sweep leaves the open ones alone.
        timeout_ms: hours(24 * 365),
        created_at,
        idempotency_key: None,
    };
    let finish = |c: NewCommand, at: i64| {
        let store = store.clone();
        async move {
            store.insert_command(&c).await.unwrap();
            for (step, t) in [(Step::Deliver, 1), (Step::Ack, 2), (Step::Succeed, 3)] {
                store
                    .transition_command("acme", &c.id, step, at - 10 + t, &Outcome::default())
                    .await
                    .unwrap()
                    .expect("the step applies");
            }
            c.id
        }
    };
    let old_done = finish(command(now - hours(3)), now - hours(2)).await;
    let recent_done = finish(command(now - hours(3)), now - 60_000).await;
    let old_open = command(now - hours(3));
    store.insert_command(&old_open).await.unwrap();

    let app = common::spawn_app(&url, &[("COMMAND_RETENTION", "1h")]).await;
    let get = |id: String| {
        let app = &app;
        async move {
            app.get_json(&format!("/api/v1/commands/{id}?companyId=acme"))
                .await
                .0
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(old_done.clone()).await != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a command finished 2 h ago outlived COMMAND_RETENTION=1h"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(recent_done).await, 200, "finished 1 min ago: kept");
    assert_eq!(
        get(old_open.id.clone()).await,
        200,
        "open: kept however old"
    );
    app.stop().await;
}

/// A node commits `queued`, `sent` and `acked` and dies before announcing
/// any of them (simulated by writing the store directly: nobody announces).
/// Another node's sweep publishes every missing `command_status`, in order,
/// live to the sender watching, and records it, so nothing is repeated.
/// Without the sweep the panel would never learn the command was acked.
#[tokio::test]
async fn statuses_a_dead_node_never_announced_reach_the_watcher_in_order() {
    let pg = common::fresh_postgres("sy_cmd_announce_").await;
    for (backend, url) in [("sqlite", common::sqlite_url()), ("postgres", pg.clone())] {
        let store = switchyard::store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        // The dead node's grace ends in 2 s: after the watcher below has
        // connected (a first connect starts at the head of its user room).
        let at = switchyard::domain::now_ms() - ANNOUNCE_GRACE_MS + 2_000;
        let c = NewCommand {
            id: common::unique("cmd"),
            company_id: "acme".into(),
            target: "device:p1".into(),
            name: "pump:start".into(),
            args: json!({}),
            sender: Some("alice".into()),
            timeout_ms: 3_600_000,
            created_at: at - 2,
            idempotency_key: None,
        };
        store.insert_command(&c).await.unwrap();
        for (step, t) in [(Step::Deliver, at - 1), (Step::Ack, at)] {
            store
                .transition_command("acme", &c.id, step, t, &Outcome::default())
                .await
                .unwrap()
                .expect("the step applies");
        }

        let app = common::spawn_app(&url, &[]).await;
        let token = app.token("alice", "acme", Role::Supervisor);
        let mut alice = Client::with_token(&app.url(), &token).await;
        alice.expect("session").await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let args = alice.expect("command_status").await;
            assert_eq!(args[0]["commandId"], c.id.as_str(), "{backend}: {args:?}");
            seen.push(args[0]["status"].as_str().unwrap_or_default().to_string());
        }
        assert_eq!(seen, ["queued", "sent", "acked"], "{backend}");
        // Recorded: later sweeps (every 200 ms) publish nothing again.
        let again = alice.drain(Duration::from_millis(1_500)).await;
        assert!(
            again.iter().all(|(name, _)| name != "command_status"),
            "{backend}: repeated {again:?}"
        );
        let stored = store.command("acme", &c.id).await.unwrap().unwrap();
        assert_eq!(stored.announced, 3, "{backend}");
        app.stop().await;
    }
    common::drop_postgres(&pg).await;
}
