//! Webhooks end to end, with a real receiver (`common::webhooks::Receiver`,
//! an HTTP server in the test that checks signatures with the documented
//! scheme): retries until success with each event once after de-dup by id,
//! across a killed and restarted server process; a bad signature refused
//! and the delivery dead after a short schedule (admin API, /metrics),
//! then redelivered; two nodes on Postgres never sending a row twice;
//! presence lifecycle events; `command_status` of a device command and a
//! telemetry rule's alarm (both published by the server itself); the admin
//! API's checks.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::process::Server;
use common::webhooks::Receiver;
use common::{drop_postgres, fresh_postgres};
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0001";
const SECRET: &str = "whsec_receiver_secret_01";

fn order(n: usize) -> Value {
    json!({
        "type": "order:status_changed",
        "companyId": "acme",
        "payload": { "orderId": n.to_string(), "oldStatus": "a", "newStatus": "b", "timestamp": "2026-11-22T10:00:00Z" }
    })
}

async fn create_hook(base: &str, url: &str, secret: &str, types: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/admin/webhooks"))
        .bearer_auth(ADMIN)
        .json(&json!({ "companyId": "acme", "url": url, "secret": secret, "types": types }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// Publishes `events` through the HTTP API; returns their ids.
async fn publish(base: &str, events: Vec<Value>) -> Vec<String> {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/events"))
        .bearer_auth("test-key")
        .json(&Value::Array(events))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

async fn get_json(url: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_and_each_event_arrives_once_across_a_restart() {
    let receiver = Receiver::start(SECRET, 3).await;
    let dir = std::env::temp_dir().join(common::unique("sy-hooks-"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("sy.db").display());
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("API_KEYS", "test-key"),
        ("ADMIN_API_KEYS", ADMIN),
        ("WEBHOOK_ALLOW_PRIVATE", "on"),
        ("WEBHOOK_POLL_MS", "100"),
        ("WEBHOOK_RETRY_BASE_MS", "600"),
        ("WEBHOOK_RETRY_MAX_MS", "1500"),
        // A row in flight at the kill is due again when its lease ends
        // (2 × timeout + 5 s).
        ("WEBHOOK_TIMEOUT_MS", "2000"),
    ];
    let server = Server::start(&env, None).await;
    let base = format!("http://{}", server.addr());
    create_hook(
        &base,
        &receiver.url(),
        SECRET,
        json!(["order:status_changed"]),
    )
    .await;
    let ids = publish(&base, (0..5).map(order).collect()).await;
    // Every event has failed at least once: the server is mid-retry.
    receiver
        .wait_for(
            Duration::from_secs(10),
            "a first failed attempt of each event",
            |r| {
                let tried: HashSet<String> = r.log().into_iter().map(|l| l.event_id).collect();
                ids.iter().all(|id| tried.contains(id))
            },
        )
        .await;
    assert!(receiver.delivered().is_empty(), "nothing succeeded yet");
    drop(server); // SIGKILL: no graceful shutdown
    let before_restart = receiver.log().len();

    let server = Server::start(&env, None).await;
    receiver
        .wait_for(Duration::from_secs(30), "every event delivered", |r| {
            r.delivered().len() == ids.len()
        })
        .await;
    let delivered = receiver.delivered();
    assert_eq!(
        delivered.keys().cloned().collect::<HashSet<_>>(),
        ids.iter().cloned().collect::<HashSet<_>>(),
        "each event exactly once after de-dup by id"
    );
    let log = receiver.log();
    assert!(log.len() > before_restart, "the restarted server went on");
    assert!(log.iter().all(|r| r.signature_ok), "every request signed");
    let mut attempts: HashMap<&str, usize> = HashMap::new();
    for r in &log {
        *attempts.entry(r.event_id.as_str()).or_default() += 1;
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body["id"],
            r.event_id.as_str(),
            "the id header is the envelope's id"
        );
        assert_eq!(body["companyId"], "acme");
        assert_eq!(body["type"], "order:status_changed");
    }
    assert!(
        attempts.values().all(|n| *n >= 4),
        "3 failures then success: {attempts:?}"
    );
    drop(server);
    receiver.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused_the_delivery_dies_and_can_be_redelivered() {
    // The receiver's check works with the documented scheme: a request the
    // server's signer signed passes, a forged one does not.
    let receiver = Receiver::start(SECRET, 0).await;
    let body = r#"{"id":"x"}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (sig, want) in [
        (switchyard::webhooks::sign::signature(SECRET, ts, body), 204),
        (
            switchyard::webhooks::sign::signature("another-secret-000", ts, body),
            401,
        ),
        ("v1=deadbeef".to_string(), 401),
    ] {
        let res = reqwest::Client::new()
            .post(receiver.url())
            .header("switchyard-event-id", "forged")
            .header("switchyard-timestamp", ts.to_string())
            .header("switchyard-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), want);
    }

    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("ADMIN_API_KEYS", ADMIN),
            ("WEBHOOK_ALLOW_PRIVATE", "on"),
            ("WEBHOOK_POLL_MS", "50"),
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_RETRY_MAX_MS", "200"),
            ("WEBHOOK_RETRY_FOR_MS", "1500"),
        ],
    )
    .await;
    let base = app.url();
    // Registered with a secret the receiver does not know: every attempt is 401.
    let wrong = "whsec_not_the_receivers_secret";
    let hook = create_hook(
        &base,
        &receiver.url(),
        wrong,
        json!(["order:status_changed"]),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    let event = publish(&base, vec![order(1)]).await.remove(0);
    let dead_url = format!("{base}/api/v1/admin/webhooks/{id}/dead-letters");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let letters = loop {
        let (status, body) = get_json(&dead_url).await;
        assert_eq!(status, 200);
        if !body["deadLetters"].as_array().unwrap().is_empty() {
            break body["deadLetters"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters[0]["eventId"], event.as_str());
    assert_eq!(letters[0]["lastStatus"], 401);
    assert!(letters[0]["attempts"].as_i64().unwrap() >= 3, "{letters}");
    let log = receiver.log();
    let mine: Vec<_> = log.iter().filter(|r| r.event_id == event).collect();
    assert!(mine.iter().all(|r| !r.signature_ok && r.status == 401));
    assert!(!receiver.delivered().contains_key(&event));
    let (_, shown) = get_json(&format!("{base}/api/v1/admin/webhooks/{id}")).await;
    assert_eq!(shown["stats"]["dead"], 1, "{shown}");
    assert!(
        shown.get("secret").is_none(),
        "the secret is shown only at creation"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchyard_webhook_outbox{state=\"dead\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_webhook_attempts_total{outcome=\"dead\"} 1"));

    // The receiver learns the endpoint's secret; a redelivery goes through.
    receiver.set_secret(wrong);
    let delivery = letters[0]["deliveryId"].as_i64().unwrap();
    let res = reqwest::Client::new()
        .post(format!("{dead_url}/{delivery}/redeliver"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    receiver
        .wait_for(Duration::from_secs(10), "the redelivery", |r| {
            r.delivered().contains_key(&event)
        })
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, shown) = get_json(&format!("{base}/api/v1/admin/webhooks/{id}")).await;
        if shown["stats"]["delivered"] == 1 {
            assert_eq!(shown["stats"]["dead"], 0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
    receiver.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_postgres_send_each_delivery_once() {
    let receiver = Receiver::start(SECRET, 0).await;
    receiver.set_delay(Duration::from_millis(20));
    let url = fresh_postgres("sy_hooks_two_").await;
    let env = [
        ("ADMIN_API_KEYS", ADMIN),
        ("WEBHOOK_ALLOW_PRIVATE", "on"),
        ("WEBHOOK_POLL_MS", "20"),
        ("WEBHOOK_REFRESH_MS", "200"),
    ];
    let a = common::spawn_app(&url, &env).await;
    let b = common::spawn_app(&url, &env).await;
    create_hook(
        &a.url(),
        &receiver.url(),
        SECRET,
        json!(["order:status_changed"]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await; // b's cache refresh
    let mut ids = Vec::new();
    for round in 0..8 {
        let node = if round % 2 == 0 { &a } else { &b };
        ids.extend(publish(&node.url(), (0..5).map(|i| order(round * 5 + i)).collect()).await);
    }
    receiver
        .wait_for(Duration::from_secs(20), "40 deliveries", |r| {
            r.delivered().len() == ids.len()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // any double send would land now
    let delivered = receiver.delivered();
    assert_eq!(
        delivered.keys().cloned().collect::<HashSet<_>>(),
        ids.iter().cloned().collect::<HashSet<_>>()
    );
    assert!(
        delivered.values().all(|n| *n == 1),
        "a row was sent twice: {delivered:?}"
    );
    assert_eq!(receiver.log().len(), ids.len());
    a.stop().await;
    b.stop().await;
    receiver.stop();
    drop_postgres(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_transitions_and_ephemeral_events_reach_endpoints_that_name_them() {
    let receiver = Receiver::start(SECRET, 0).await;
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("ADMIN_API_KEYS", ADMIN),
            ("WEBHOOK_ALLOW_PRIVATE", "on"),
            ("WEBHOOK_POLL_MS", "50"),
        ],
    )
    .await;
    create_hook(
        &app.url(),
        &receiver.url(),
        SECRET,
        json!(["user:online", "station_queue_update"]),
    )
    .await;
    let token = app.token("u7", "acme", switchyard::domain::Role::Operator);
    let mut client = common::client::Client::with_token(&app.url(), &token).await;
    client.expect("session").await;
    receiver
        .wait_for(Duration::from_secs(10), "user:online", |r| {
            !r.delivered().is_empty()
        })
        .await;
    let log = receiver.log();
    let body: Value = serde_json::from_str(&log[0].body).unwrap();
    assert_eq!(body["type"], "user:online");
    assert_eq!(body["companyId"], "acme");
    assert_eq!(body["payload"]["userId"], "u7");
    assert!(
        body.get("priority").is_none(),
        "lifecycle events have no priority"
    );
    // An ephemeral (not stored) event goes through the write queue.
    let id = publish(
        &app.url(),
        vec![json!({ "type": "station_queue_update", "companyId": "acme",
                     "payload": { "stationId": "s1", "queueLength": 3 } })],
    )
    .await
    .remove(0);
    receiver
        .wait_for(Duration::from_secs(10), "the ephemeral event", |r| {
            r.delivered().contains_key(&id)
        })
        .await;
    let log = receiver.log();
    let body: Value =
        serde_json::from_str(&log.iter().find(|r| r.event_id == id).unwrap().body).unwrap();
    assert_eq!(body["payload"]["queueLength"], 3);
    assert_eq!(body["priority"], "low");
    assert!(log.iter().all(|r| r.signature_ok));
    app.stop().await;
    receiver.stop();
}

/// The bodies the receiver accepted, of one type, in arrival order.
fn bodies_of(receiver: &Receiver, event_type: &str) -> Vec<Value> {
    receiver
        .log()
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter(|b| b["type"] == event_type)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_status_and_rule_alarms_reach_endpoints_that_name_them() {
    let receiver = Receiver::start(SECRET, 0).await;
    let dir = std::env::temp_dir().join(common::unique("sy-hooks-cmd-"));
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = dir.join("catalog.json");
    std::fs::write(
        &catalog,
        json!({
            "commands": { "pump:start": {} },
            "rules": { "hot": {
                "stream": { "type": "telemetry", "key": "endpointId" },
                "thresholds": { "t": { "above": 80, "event": "alarm", "room": "alarms",
                    "payload": { "severity": "critical", "message": "too hot" },
                    "clear": { "severity": "info", "message": "back in range" } } } } }
        })
        .to_string(),
    )
    .unwrap();
    let catalog = catalog.display().to_string();
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("ADMIN_API_KEYS", ADMIN),
            ("WEBHOOK_ALLOW_PRIVATE", "on"),
            ("WEBHOOK_POLL_MS", "50"),
            ("CATALOG_FILE", catalog.as_str()),
        ],
    )
    .await;
    let base = app.url();
    create_hook(
        &base,
        &receiver.url(),
        SECRET,
        json!(["command_status", "alarm"]),
    )
    .await;
    let http = reqwest::Client::new();

    // A command nobody answers: `queued`, then `failed` with TIMEOUT.
    let res = http
        .post(format!("{base}/api/v1/commands"))
        .bearer_auth("test-key")
        .json(
            &json!({ "companyId": "acme", "target": "device:p1", "name": "pump:start",
                       "timeoutMs": 300 }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let sent: Value = res.json().await.unwrap();
    let id = sent["commandId"].as_str().unwrap().to_string();
    receiver
        .wait_for(Duration::from_secs(10), "queued and failed", |r| {
            bodies_of(r, "command_status").len() >= 2
        })
        .await;
    // Deliveries of one endpoint are not ordered: compare by status.
    let mut statuses = bodies_of(&receiver, "command_status");
    statuses.sort_by_key(|b| b["payload"]["status"] != "queued");
    let seen: Vec<(&str, &str)> = statuses
        .iter()
        .map(|b| {
            (
                b["payload"]["commandId"].as_str().unwrap_or_default(),
                b["payload"]["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(seen, [(id.as_str(), "queued"), (id.as_str(), "failed")]);
    assert_eq!(statuses[1]["payload"]["error"]["code"], "TIMEOUT");
    assert!(
        statuses
            .iter()
            .all(|b| b["source"] == "commands" && b["companyId"] == "acme")
    );

    // A rule's threshold: one alarm raised, one cleared.
    let reading = |value: f64| {
        json!({ "companyId": "acme", "endpointId": 59, "value": value,
                "timestamp": "2026-11-22T10:00:00Z" })
    };
    for value in [90.0, 10.0] {
        let res = http
            .post(format!("{base}/api/v1/telemetry"))
            .bearer_auth("test-key")
            .json(&reading(value))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let want = if value > 80.0 { 1 } else { 2 };
        receiver
            .wait_for(Duration::from_secs(10), "the alarm", |r| {
                bodies_of(r, "alarm").len() >= want
            })
            .await;
    }
    let alarms = bodies_of(&receiver, "alarm");
    let states: Vec<&str> = alarms
        .iter()
        .map(|b| b["payload"]["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states, ["raised", "cleared"]);
    assert_eq!(alarms[0]["source"], "rules");
    assert_eq!(
        alarms[0]["payload"]["alarmId"],
        alarms[1]["payload"]["alarmId"]
    );
    assert_eq!(alarms[0]["priority"], "critical");
    assert!(receiver.log().iter().all(|r| r.signature_ok));
    assert!(
        bodies_of(&receiver, "telemetry").is_empty(),
        "only the types the endpoint names"
    );
    app.stop().await;
    receiver.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_admin_api_checks_keys_urls_and_subscriptions() {
    let app = common::spawn_app(&common::sqlite_url(), &[("ADMIN_API_KEYS", ADMIN)]).await;
    let base = app.url();
    let post = |key: &'static str, body: Value| {
        let base = base.clone();
        async move {
            let res = reqwest::Client::new()
                .post(format!("{base}/api/v1/admin/webhooks"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let ok = json!({ "companyId": "acme", "url": "https://hooks.example.com/in", "minPriority": "high" });
    assert_eq!(
        post("test-key", ok.clone()).await.0,
        401,
        "API_KEYS do not administer"
    );
    for (body, field) in [
        (
            json!({ "companyId": "acme", "url": "http://127.0.0.1:9/x", "types": ["a"] }),
            "url",
        ),
        (
            json!({ "companyId": "acme", "url": "http://169.254.169.254/", "types": ["a"] }),
            "url",
        ),
        (
            json!({ "companyId": "acme", "url": "ftp://hooks.example.com/", "types": ["a"] }),
            "url",
        ),
        (
            json!({ "companyId": "acme", "url": "https://h.example.com/", "types": ["a b"] }),
            "types",
        ),
        (
            json!({ "companyId": "acme", "url": "https://h.example.com/", "minPriority": "urgent" }),
            "minPriority",
        ),
        (
            json!({ "companyId": "acme", "url": "https://h.example.com/", "types": ["a"], "extra": 1 }),
            "extra",
        ),
    ] {
        let (status, err) = post(ADMIN, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            err.to_string().contains(field),
            "{body} → {err} should name {field}"
        );
    }
    let (status, err) = post(
        ADMIN,
        json!({ "companyId": "acme", "url": "https://h.example.com/" }),
    )
    .await;
    assert_eq!(
        status, 400,
        "an endpoint must subscribe to something: {err}"
    );
    let (status, created) = post(ADMIN, ok).await;
    assert_eq!(status, 201);
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let (status, list) = get_json(&format!("{base}/api/v1/admin/webhooks?companyId=acme")).await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"][0]["id"], id);
    assert!(list["webhooks"][0].get("secret").is_none());
    let (_, shown) = get_json(&format!("{base}/api/v1/admin/webhooks/{id}")).await;
    assert_eq!(shown["minPriority"], "high");
    assert_eq!(shown["stats"]["pending"], 0);
    let del = |id: String| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .delete(format!("{base}/api/v1/admin/webhooks/{id}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(del(id.to_string()).await, 204);
    assert_eq!(del(id.to_string()).await, 404);
    assert_eq!(
        get_json(&format!("{base}/api/v1/admin/webhooks/{id}"))
            .await
            .0,
        404
    );
    app.stop().await;
}
