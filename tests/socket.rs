//! Integration tests: the real server (in-process, ephemeral port) on SQLite
//! and on Postgres, spoken to over a raw Socket.IO WebSocket and HTTP.

mod common;

use std::time::Duration;

use common::client::{Client, ConnectError};
use serde_json::{Value, json};
use switchyard::domain::Role;

fn backends() -> Vec<String> {
    vec![common::sqlite_url(), common::postgres_url()]
}

fn order_payload(n: i64) -> Value {
    json!({ "orderId": n.to_string(), "oldStatus": "pending", "newStatus": "in_progress", "timestamp": "2026-11-22T10:00:00Z" })
}

#[tokio::test]
async fn refusals_reach_the_client_as_connect_errors_with_codes() {
    let app = common::spawn_app(&common::sqlite_url(), &[("JWT_LEEWAY", "0")]).await;
    let expired = {
        let now = switchyard::domain::now_ms() / 1000;
        let claims = json!({ "sub": "u", "companyId": "c", "role": "admin", "exp": now - 10 });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
        )
        .unwrap()
    };
    for (auth, code) in [
        (json!({}), "UNAUTHORIZED"),
        (json!({ "token": "garbage" }), "INVALID_TOKEN"),
        (json!({ "token": expired }), "TOKEN_EXPIRED"),
    ] {
        match Client::connect(&app.url(), "", auth).await {
            Err(ConnectError::Refused(msg)) => assert!(msg.starts_with(code), "{msg}"),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("{code}: connected"),
        }
    }
    // Token in the query string (Swift connectParams) is accepted.
    let token = app.token("u1", "acme", Role::Operator);
    let query = format!("&token={token}");
    assert!(Client::connect(&app.url(), &query, json!({})).await.is_ok());
    app.stop().await;
}

#[tokio::test]
async fn session_rooms_ping_and_subscribe() {
    for db in backends() {
        let app = common::spawn_app(&db, &[("WS_MAX_SUBSCRIPTIONS", "2")]).await;
        let mut c = Client::with_token(&app.url(), &app.token("u1", "acme", Role::Operator)).await;
        let session = c.expect("session").await.remove(0);
        assert_eq!(session["userId"], "u1");
        assert_eq!(session["companyId"], "acme");
        assert_eq!(
            session["rooms"],
            json!(["company", "user:u1", "role:operator"])
        );
        assert_eq!(session["socketId"].as_str(), c.sid.as_deref());
        let pong = c.emit_with_ack("ping", Value::Null).await;
        assert_eq!(pong["pong"], true);
        let sub = c
            .emit_with_ack(
                "subscribe",
                json!({ "rooms": ["order:1", "order:2", "order:3", "user:u2", "x y"] }),
            )
            .await;
        assert_eq!(sub["rooms"], json!(["order:1", "order:2"]));
        let codes: Vec<&str> = sub["denied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, vec!["LIMIT_EXCEEDED", "FORBIDDEN", "INVALID_ROOM"]);
        let rooms = c.emit_with_ack("rooms", Value::Null).await;
        assert_eq!(
            rooms["rooms"],
            json!(["company", "order:1", "order:2", "role:operator", "user:u1"])
        );
        let bad = c.emit_with_ack("subscribe", json!([1, 2])).await;
        assert_eq!(bad["error"]["code"], "VALIDATION_FAILED");
        app.stop().await;
    }
}

/// socketioxide spawns a task per message; our dispatcher must keep the
/// client's order: publishes sent back to back get increasing offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sockets_events_are_handled_in_the_order_sent() {
    for db in backends() {
        let app = common::spawn_app(&db, &[("WS_RATE_LIMIT", "1000")]).await;
        let company = common::unique("c");
        let mut c =
            Client::with_token(&app.url(), &app.token("s1", &company, Role::Supervisor)).await;
        let ids: Vec<u64> = (0..100)
            .map(|n| c.emit_ack_id("event:publish", json!({ "type": "order:status_changed", "room": "order:1", "payload": order_payload(n) })))
            .collect();
        let mut offsets = Vec::new();
        for id in ids {
            let ack = c.ack(id).await;
            assert_eq!(ack["ok"], true, "{ack}");
            offsets.push(ack["offset"].as_i64().unwrap());
        }
        assert_eq!(offsets, (1..=100).collect::<Vec<_>>());
        app.stop().await;
    }
}

#[tokio::test]
async fn publish_delivers_payload_and_meta_filtered_by_role_and_company() {
    let app = common::spawn_app(&common::postgres_url(), &[]).await;
    let (a, b) = (common::unique("a"), common::unique("b"));
    let mut publisher =
        Client::with_token(&app.url(), &app.token("s1", &a, Role::Supervisor)).await;
    let mut op = Client::with_token(&app.url(), &app.token("o1", &a, Role::Operator)).await;
    let mut sup = Client::with_token(&app.url(), &app.token("s2", &a, Role::Supervisor)).await;
    let mut other = Client::with_token(&app.url(), &app.token("s2", &b, Role::Supervisor)).await;
    for c in [&mut publisher, &mut op, &mut sup, &mut other] {
        c.expect("session").await;
    }
    let ack = publisher
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": order_payload(1) }),
        )
        .await;
    assert_eq!(ack["offset"], 1, "{ack}");
    let args = op.expect("order:status_changed").await;
    assert_eq!(args[0], order_payload(1));
    assert_eq!(args[1]["room"], "company");
    assert_eq!(args[1]["offset"], 1);
    assert_eq!(args[1]["publisher"], "s1");
    assert_eq!(args[1]["id"], ack["id"]);
    // quality_test_result is supervisor+: the operator in the same room must not get it.
    let q = json!({ "testId": "t", "batchId": "b", "parameter": "pH", "measuredValue": 7.1, "expectedRange": [6.5, 7.5], "passed": true });
    let ack = publisher
        .emit_with_ack(
            "event:publish",
            json!({ "type": "quality_test_result", "payload": q }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(sup.expect("quality_test_result").await[0], q);
    let op_events = op.drain(Duration::from_millis(400)).await;
    assert!(
        op_events.iter().all(|(n, _)| n != "quality_test_result"),
        "{op_events:?}"
    );
    let other_events = other.drain(Duration::from_millis(100)).await;
    assert!(
        other_events.is_empty(),
        "another company received {other_events:?}"
    );
    let own = publisher.drain(Duration::from_millis(100)).await;
    let own: Vec<_> = own
        .into_iter()
        .filter(|(n, _)| n != "user:online")
        .collect();
    assert!(
        own.is_empty(),
        "the sender received its own publish: {own:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn socket_publish_refusals() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let mut op = Client::with_token(&app.url(), &app.token("o1", "acme", Role::Operator)).await;
    let mut sup = Client::with_token(&app.url(), &app.token("s1", "acme", Role::Supervisor)).await;
    let ack = op
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": order_payload(1) }),
        )
        .await;
    assert_eq!(ack["error"]["code"], "FORBIDDEN");
    let cases = [
        (
            json!({ "type": "nope:nope", "payload": {} }),
            "UNKNOWN_EVENT",
        ),
        (
            json!({ "type": "order:status_changed", "payload": { "orderId": 5 } }),
            "VALIDATION_FAILED",
        ),
        (
            json!({ "type": "order:status_changed", "payload": [1] }),
            "VALIDATION_FAILED",
        ),
        (
            json!({ "type": "order:status_changed", "room": "user:other", "payload": order_payload(1) }),
            "FORBIDDEN",
        ),
        (
            json!({ "type": "order:status_changed", "payload": { "x": "y".repeat(70_000) } }),
            "PAYLOAD_TOO_LARGE",
        ),
        (json!({ "type": 5 }), "VALIDATION_FAILED"),
    ];
    for (body, code) in cases {
        let ack = sup.emit_with_ack("event:publish", body.clone()).await;
        assert_eq!(ack["ok"], false);
        assert_eq!(ack["error"]["code"], code, "{body}");
        assert!(
            ack["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let mut wrong_type = order_payload(1);
    // Identifiers are a string or an integer (the seeds send both); not a boolean.
    wrong_type["orderId"] = json!(true);
    let ack = sup
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": wrong_type }),
        )
        .await;
    assert_eq!(ack["error"]["details"]["field"], "/orderId");
    let ack = sup
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": { "orderId": "5" } }),
        )
        .await;
    assert!(
        ack["error"]["details"]["field"]
            .as_str()
            .unwrap()
            .ends_with("Status"),
        "{ack}"
    );
    // Idempotent retry: same result, one delivery.
    let mut listener =
        Client::with_token(&app.url(), &app.token("o2", "acme", Role::Operator)).await;
    listener.expect("session").await;
    let body = json!({ "type": "order:status_changed", "payload": order_payload(9), "clientEventId": "retry-1" });
    let first = sup.emit_with_ack("event:publish", body.clone()).await;
    let again = sup.emit_with_ack("event:publish", body).await;
    assert_eq!(
        (first["id"].clone(), first["offset"].clone()),
        (again["id"].clone(), again["offset"].clone())
    );
    let got = listener.drain(Duration::from_millis(400)).await;
    assert_eq!(
        got.iter()
            .filter(|(n, _)| n == "order:status_changed")
            .count(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn http_publish_batch_is_validated_whole_and_history_pages() {
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let http = reqwest::Client::new();
        let url = format!("{}/api/v1/events", app.url());
        let mut c =
            Client::with_token(&app.url(), &app.token("o1", &company, Role::Operator)).await;
        c.expect("session").await;
        c.emit_with_ack("subscribe", json!({ "room": "order:7" }))
            .await;
        let unauth = http.post(&url).json(&json!({})).send().await.unwrap();
        assert_eq!(unauth.status(), 401);
        // Second event invalid: nothing of the batch is written or sent.
        let bad = http
            .post(&url)
            .bearer_auth("test-key")
            .json(&json!([
                { "type": "order:status_changed", "companyId": company, "rooms": ["order:7"], "payload": order_payload(7) },
                { "type": "order:status_changed", "companyId": company, "payload": { "orderId": 7 } },
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let body: Value = bad.json().await.unwrap();
        assert_eq!(body["error"]["code"], "VALIDATION_FAILED");
        assert_eq!(body["error"]["details"]["index"], 1);
        let batch: Vec<Value> = (0..5)
            .map(|n| json!({ "type": "order:status_changed", "companyId": company, "rooms": ["order:7", "company"], "payload": order_payload(n), "idempotencyKey": format!("k{n}") }))
            .collect();
        let ok = http
            .post(&url)
            .bearer_auth("test-key")
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 202);
        let body: Value = ok.json().await.unwrap();
        assert_eq!(
            body["events"][4]["offsets"],
            json!({ "order:7": 5, "company": 5 })
        );
        let args = c.expect("order:status_changed").await;
        assert_eq!(
            (args[1]["room"].clone(), args[1]["source"].clone()),
            (json!("order:7"), json!("api"))
        );
        // Retrying the batch returns the first results and writes nothing new.
        let retry: Value = http
            .post(&url)
            .bearer_auth("test-key")
            .json(&batch)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(retry, body);
        let page: Value = http
            .get(format!(
                "{url}?companyId={company}&room=order:7&after=0&limit=3"
            ))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let offsets: Vec<i64> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["offset"].as_i64().unwrap())
            .collect();
        assert_eq!((offsets, page["next"].clone()), (vec![1, 2, 3], json!(3)));
        let rest: Value = http
            .get(format!(
                "{url}?companyId={company}&room=order:7&after=3&limit=3"
            ))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rest["events"].as_array().unwrap().len(), 2);
        assert_eq!(rest["next"], Value::Null);
        app.stop().await;
    }
}

#[tokio::test]
async fn telemetry_is_conflated_but_critical_alarms_are_not_delayed() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let http = reqwest::Client::new();
    let mut c = Client::with_token(&app.url(), &app.token("o1", "acme", Role::Operator)).await;
    c.expect("session").await;
    c.emit_with_ack("subscribe", json!({ "rooms": ["telemetry:59", "alarms"] }))
        .await;
    let readings: Vec<Value> = (0..100)
        .map(|n| json!({ "companyId": "acme", "endpointId": 59, "value": n, "timestamp": "2026-11-22T10:00:00Z" }))
        .collect();
    let res = http
        .post(format!("{}/api/v1/telemetry", app.url()))
        .bearer_auth("test-key")
        .json(&readings)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let alarm = json!({ "type": "alarm", "companyId": "acme", "rooms": ["alarms"], "payload": { "alarmId": "a1", "severity": "critical", "message": "overpressure", "timestamp": "2026-11-22T10:00:00Z" } });
    let res = http
        .post(format!("{}/api/v1/events", app.url()))
        .bearer_auth("test-key")
        .json(&alarm)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let events = c.drain(Duration::from_millis(800)).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["alarm", "telemetry"],
        "the alarm is not held back by the telemetry window"
    );
    assert_eq!(events[1].1[0]["value"], 99);
    assert_eq!(events[0].1[1]["priority"], "critical");
    app.stop().await;
}

#[tokio::test]
async fn health_reports_every_field() {
    let app = common::spawn_app(&common::sqlite_url(), &[("NODE_ID", "n1")]).await;
    let body: Value = reqwest::get(format!("{}/health/websocket", app.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in [
        "status",
        "service",
        "connectedClients",
        "node",
        "adapter",
        "database",
        "redis",
        "uptimeSeconds",
        "version",
    ] {
        assert!(body.get(field).is_some(), "missing {field}");
    }
    assert_eq!(
        (
            body["status"].as_str(),
            body["adapter"].as_str(),
            body["redis"].as_str()
        ),
        (Some("ok"), Some("local"), Some("disabled"))
    );
    assert_eq!(body["node"], "n1");
    for path in ["/health/live", "/health/ready"] {
        assert_eq!(
            reqwest::get(format!("{}{path}", app.url()))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn connection_limits_refuse_with_limit_exceeded_and_free_on_disconnect() {
    let app = common::spawn_app(&common::sqlite_url(), &[("WS_MAX_CONNECTIONS_PER_IP", "2")]).await;
    let token = app.token("u1", "acme", Role::Operator);
    let a = Client::with_token(&app.url(), &token).await;
    let _b = Client::with_token(&app.url(), &token).await;
    match Client::connect(&app.url(), "", json!({ "token": token })).await {
        Err(ConnectError::Refused(msg)) => assert!(msg.starts_with("LIMIT_EXCEEDED"), "{msg}"),
        other => panic!("third connection from one IP: {:?}", other.err()),
    }
    a.disconnect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        Client::connect(&app.url(), "", json!({ "token": token }))
            .await
            .is_ok()
    );
    app.stop().await;
}

/// SIGTERM: acknowledged durable writes are kept, and the transport closes without
/// a DISCONNECT packet so socket.io clients reconnect (to another node).
#[tokio::test]
async fn graceful_shutdown_keeps_acked_writes_and_lets_clients_reconnect() {
    let db = common::sqlite_url();
    let app = common::spawn_app(&db, &[]).await;
    let company = common::unique("c");
    let mut c = Client::with_token(&app.url(), &app.token("s1", &company, Role::Supervisor)).await;
    c.expect("session").await;
    let ids: Vec<u64> = (0..20)
        .map(|n| {
            c.emit_ack_id(
                "event:publish",
                json!({ "type": "order:status_changed", "payload": order_payload(n) }),
            )
        })
        .collect();
    let last = *ids.last().unwrap();
    let ack = c.ack(last).await;
    assert_eq!(ack["offset"], 20);
    app.stop().await;
    let events: Vec<String> = c
        .drain(Duration::from_secs(3))
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(events.contains(&"__closed".to_string()), "{events:?}");
    assert!(
        !events.contains(&"__disconnect".to_string()),
        "a DISCONNECT packet stops client reconnection: {events:?}"
    );
    let store = switchyard::store::connect(&db).await.unwrap();
    assert_eq!(
        store
            .events_after(&company, "company", 0, 100, 0)
            .await
            .unwrap()
            .len(),
        20
    );
}

/// A node on a Postgres database of its own (its rows are counted) with
/// no practical rate limit, an operator subscribed to the company room and
/// a supervisor to publish, both past `session`.
async fn publisher_and_subscriber(prefix: &str) -> (String, common::TestApp, Client, Client) {
    let url = common::fresh_postgres(prefix).await;
    let app = common::spawn_app(&url, &[("WS_RATE_LIMIT", "100000")]).await;
    let mut sub = Client::with_token(&app.url(), &app.token("op1", "acme", Role::Operator)).await;
    sub.expect("session").await;
    let mut publisher =
        Client::with_token(&app.url(), &app.token("sup1", "acme", Role::Supervisor)).await;
    publisher.expect("session").await;
    (url, app, sub, publisher)
}

/// One socket's durable publishes are pipelined into the group-commit
/// writer (`session::pipeline`): 200 sent without waiting for their acks
/// share transactions (the rows' `xmin`; one transaction each without the
/// pipeline), still get offsets 1..200 in the order they were sent and
/// reach a subscriber in that order, and an ephemeral event sent after
/// them reaches it after all of them.
#[tokio::test]
async fn one_sockets_durable_publishes_share_commits_and_keep_their_order() {
    const N: i64 = 200;
    let (url, app, mut sub, mut publisher) = publisher_and_subscriber("sy_pipeline_").await;

    let ids: Vec<u64> = (1..=N)
        .map(|n| {
            publisher.emit_ack_id(
                "event:publish",
                json!({ "type": "order:status_changed", "payload": order_payload(n) }),
            )
        })
        .collect();
    let refresh = publisher.emit_ack_id(
        "event:publish",
        json!({ "type": "dashboard:refresh", "payload": { "timestamp": "2026-11-22T10:00:00Z" } }),
    );
    let mut offsets = Vec::new();
    for id in ids {
        let ack = publisher.ack(id).await;
        assert_eq!(ack["ok"], true, "{ack}");
        offsets.push(ack["offset"].as_i64().unwrap_or(-1));
    }
    assert_eq!(
        offsets,
        (1..=N).collect::<Vec<_>>(),
        "offsets follow the order sent"
    );
    assert_eq!(publisher.ack(refresh).await["ok"], true);

    let mut seen = Vec::new();
    loop {
        match sub.next_event().await {
            (name, _) if name == "dashboard:refresh" => break,
            (name, args) if name == "order:status_changed" => {
                seen.push(args[0]["orderId"].as_str().unwrap_or_default().to_string());
            }
            _ => {}
        }
    }
    let expected: Vec<String> = (1..=N).map(|n| n.to_string()).collect();
    assert_eq!(
        seen, expected,
        "every durable event, in order, before the ephemeral one"
    );

    let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    assert!(
        transactions <= N / 2,
        "{N} publishes of one socket took {transactions} transactions"
    );
    app.stop().await;
    common::drop_postgres(&url).await;
}

/// A socket that sends 100 durable publishes and disconnects at once,
/// its publishes still in flight: what was committed is in the log with
/// offsets 1..k in the order sent, and a subscriber receives exactly that,
/// in order, once each.
#[tokio::test]
async fn publishes_in_flight_when_their_socket_disconnects_are_committed_in_order_and_delivered() {
    const N: i64 = 100;
    let (url, app, mut sub, publisher) = publisher_and_subscriber("sy_pipeline_close_").await;
    for n in 1..=N {
        publisher.emit(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": order_payload(n) }),
        );
    }
    publisher.disconnect();

    // Everything the log holds, once the server is done with it.
    let mut log = Vec::new();
    for _ in 0..50 {
        let (_, page) = app
            .get_json("/api/v1/events?companyId=acme&room=company&limit=1000")
            .await;
        let now: Vec<(i64, String)> = page["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|e| {
                        (
                            e["offset"].as_i64().unwrap_or(-1),
                            e["payload"]["orderId"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !now.is_empty() && now == log {
            break;
        }
        log = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let k = log.len() as i64;
    assert!(k > 0, "nothing committed");
    assert_eq!(
        log,
        (1..=k).map(|n| (n, n.to_string())).collect::<Vec<_>>(),
        "offsets 1..k in the order sent"
    );
    let mut seen = Vec::new();
    while (seen.len() as i64) < k {
        let (name, args) = sub.next_event().await;
        if name == "order:status_changed" {
            seen.push(args[0]["orderId"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(seen, (1..=k).map(|n| n.to_string()).collect::<Vec<_>>());
    let extra = sub.drain(Duration::from_millis(300)).await;
    assert!(
        extra.iter().all(|(name, _)| name != "order:status_changed"),
        "delivered once: {extra:?}"
    );
    app.stop().await;
    common::drop_postgres(&url).await;
}
