//! Inputs that got past the limits (issue 10): rooms named in `auth.offsets`
//! beyond `WS_MAX_SUBSCRIPTIONS` (item 8), and NUL characters, which
//! PostgreSQL cannot store, reaching the database as an outage (item 12).

mod common;

use common::client::Client;
use serde_json::{Value, json};
use switchyard::domain::Role;

fn backends() -> Vec<String> {
    vec![common::sqlite_url(), common::postgres_url()]
}

async fn metric(app: &common::TestApp, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn rooms_in_auth_offsets_obey_the_subscription_limit_and_permissions() {
    let app = common::spawn_app(&common::sqlite_url(), &[("WS_MAX_SUBSCRIPTIONS", "3")]).await;
    let token = app.token("u1", "acme", Role::Operator);
    let mut offsets = serde_json::Map::new();
    for room in ["company", "user:u1", "user:u2", "Not A Room"] {
        offsets.insert(room.into(), json!(0));
    }
    for n in 1..=6 {
        offsets.insert(format!("order:{n}"), json!(0));
    }
    offsets.insert("order:7".into(), json!("x"));
    let mut c = Client::connect(
        &app.url(),
        "",
        json!({ "token": token, "offsets": offsets }),
    )
    .await
    .expect("connects");
    let session = c.expect("session").await.remove(0);
    let mut rooms: Vec<&str> = session["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    rooms.sort();
    assert_eq!(
        rooms,
        [
            "company",
            "order:1",
            "order:2",
            "order:3",
            "role:operator",
            "user:u1"
        ],
        "{session}"
    );
    let denied: Vec<(String, String)> = session["denied"]
        .as_array()
        .unwrap_or_else(|| panic!("session lists what was refused: {session}"))
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
            (
                d["room"].as_str().unwrap_or_default().to_string(),
                d["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expect = |room: &str, code: &str| (room.to_string(), code.to_string());
    for d in [
        expect("order:4", "LIMIT_EXCEEDED"),
        expect("order:5", "LIMIT_EXCEEDED"),
        expect("order:6", "LIMIT_EXCEEDED"),
        expect("user:u2", "FORBIDDEN"),
        expect("Not A Room", "INVALID_ROOM"),
        expect("order:7", "VALIDATION_FAILED"),
    ] {
        assert!(denied.contains(&d), "{d:?} missing from {denied:?}");
    }
    assert_eq!(denied.len(), 6, "{denied:?}");
    // The socket is at its limit: `subscribe` counts the resumed rooms.
    let ack = c
        .emit_with_ack("subscribe", json!({ "room": "order:9" }))
        .await;
    assert_eq!(ack["denied"][0]["code"], "LIMIT_EXCEEDED", "{ack}");
    assert_eq!(
        c.emit_with_ack("rooms", Value::Null).await["rooms"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );
    app.stop().await;
}

/// Asserts a VALIDATION_FAILED refusal naming `field`.
fn refused(body: &Value, field: &str, what: &str) {
    let error = if body["error"].is_object() {
        &body["error"]
    } else {
        body
    };
    assert_eq!(error["code"], "VALIDATION_FAILED", "{what}: {body}");
    assert_eq!(error["details"]["field"], field, "{what}: {body}");
}

#[tokio::test]
async fn nul_characters_are_refused_before_the_database_on_both_backends() {
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let token = app.token("s1", &company, Role::Supervisor);
        let mut s = Client::with_token(&app.url(), &token).await;
        s.expect("session").await;
        let errors_before = metric(&app, "websocket_db_errors_total").await;
        let order = |status: &str| {
            json!({ "orderId": "1", "oldStatus": "a", "newStatus": status,
                    "timestamp": "2026-11-22T10:00:00Z" })
        };
        let publish = |payload: Value, extra: Value| {
            let mut body = json!({ "type": "order:status_changed", "payload": payload });
            if let Value::Object(m) = extra {
                body.as_object_mut().unwrap().extend(m);
            }
            body
        };
        for (body, field) in [
            (publish(order("b\u{0}c"), json!({})), "/payload/newStatus"),
            (
                publish(order("b"), json!({ "clientEventId": "e\u{0}1" })),
                "/clientEventId",
            ),
        ] {
            let ack = s.emit_with_ack("event:publish", body).await;
            refused(&ack, field, &db);
        }
        for (changes, extra, field) in [
            (json!({ "a\u{0}b": 1 }), json!({}), "/changes/a\u{0}b"),
            (json!({ "x": ["ok", "n\u{0}"] }), json!({}), "/changes/x/1"),
            (
                json!({ "x": 1 }),
                json!({ "clientMutationId": "m\u{0}" }),
                "/clientMutationId",
            ),
        ] {
            let mut body =
                json!({ "type": "checklist", "id": "1", "baseVersion": 0, "changes": changes });
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let ack = s.emit_with_ack("document:update", body).await;
            refused(&ack, field, &db);
        }
        let http = reqwest::Client::new();
        for (event, field) in [
            (
                json!({ "type": "order:status_changed", "companyId": company, "payload": order("\u{0}") }),
                "/payload/newStatus",
            ),
            (
                json!({ "type": "order:status_changed", "companyId": company, "payload": order("b"), "source": "erp\u{0}" }),
                "/source",
            ),
            (
                json!({ "type": "order:status_changed", "companyId": company, "payload": order("b"), "idempotencyKey": "k\u{0}" }),
                "/idempotencyKey",
            ),
        ] {
            let res = http
                .post(format!("{}/api/v1/events", app.url()))
                .bearer_auth("test-key")
                .json(&json!([event]))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 400, "{db}: {field}");
            let body: Value = res.json().await.unwrap();
            refused(&body, field, &db);
            assert_eq!(body["error"]["details"]["index"], 0, "{body}");
        }
        let res = http
            .patch(format!(
                "{}/api/v1/documents/checklist/1?companyId={company}",
                app.url()
            ))
            .bearer_auth("test-key")
            .json(&json!({ "baseVersion": 0, "changes": { "note": "a\u{0}" } }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{db}");
        refused(&res.json::<Value>().await.unwrap(), "/changes/note", &db);
        assert_eq!(
            metric(&app, "websocket_db_errors_total").await,
            errors_before,
            "{db}: no database error was counted"
        );
        // Nothing was written, and the server still works.
        let ack = s
            .emit_with_ack("event:publish", publish(order("b"), json!({})))
            .await;
        assert_eq!(ack["offset"], 1, "{db}: {ack}");
        app.stop().await;
    }
}

#[tokio::test]
async fn object_keys_written_with_escapes_are_read() {
    // socketioxide's reader loses an event's whole argument when an object key
    // holds an escape sequence; JSON.stringify writes one for `"` and `\`.
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let token = app.token("s1", "acme", Role::Supervisor);
    let mut s = Client::with_token(&app.url(), &token).await;
    s.expect("session").await;
    s.send_raw(
        r#"427["document:update",{"type":"checklist","id":"q","baseVersion":0,"changes":{"say \"hi\"":1}}]"#,
    );
    let ack = s.ack(7).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["document"]["data"], json!({ "say \"hi\"": 1 }));
    app.stop().await;
}
