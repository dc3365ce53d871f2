//! Storage down (SPEC §9, issue 3): durable publishes answer UNAVAILABLE /
//! 503, ephemeral traffic and new connections go on, health says degraded,
//! and everything recovers by itself when the database is back.

mod common;

use std::time::Duration;

use common::client::Client;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use switchyard::domain::Role;

fn order(n: i64) -> Value {
    json!({ "orderId": n.to_string(), "oldStatus": "a", "newStatus": "b", "timestamp": "2026-11-22T10:00:00Z" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_refuses_durable_keeps_ephemeral_and_recovers() {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&common::postgres_url())
        .await
        .expect("postgres");
    let db = common::unique("sy_outage_");
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!(
        "{}/{db}",
        common::postgres_url().rsplit_once('/').unwrap().0
    );
    let app = common::spawn_app(&url, &[]).await;
    let mut sup = Client::with_token(&app.url(), &app.token("s1", "acme", Role::Supervisor)).await;
    let mut op = Client::with_token(&app.url(), &app.token("o1", "acme", Role::Operator)).await;
    sup.expect("session").await;
    op.expect("session").await;
    let ack = sup
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": order(1) }),
        )
        .await;
    assert_eq!(ack["offset"], 1);

    // The database goes away: no new connections, existing ones killed.
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let ack = sup
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": order(2) }),
        )
        .await;
    assert_eq!(ack["error"]["code"], "UNAVAILABLE", "{ack}");
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/v1/events", app.url()))
        .bearer_auth("test-key")
        .json(&json!({ "type": "order:status_changed", "companyId": "acme", "payload": order(3) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let ack = sup.emit_with_ack("event:publish", json!({ "type": "dashboard:refresh", "payload": { "timestamp": "2026-11-22T10:00:00Z" } })).await;
    assert_eq!(ack["ok"], true, "ephemeral events still flow: {ack}");
    assert_eq!(
        op.expect("dashboard:refresh").await[0]["timestamp"],
        "2026-11-22T10:00:00Z"
    );
    let health = http
        .get(format!("{}/health/websocket", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["database"].as_str()),
        (Some("degraded"), Some("error"))
    );
    // New clients still connect and get `session` during the outage.
    let mut late = Client::with_token(&app.url(), &app.token("o2", "acme", Role::Operator)).await;
    late.expect("session").await;

    // The database comes back: durable publishing resumes with the next offset.
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    let mut recovered = Value::Null;
    for _ in 0..50 {
        recovered = sup
            .emit_with_ack(
                "event:publish",
                json!({ "type": "order:status_changed", "payload": order(4) }),
            )
            .await;
        if recovered["ok"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recovered["offset"], 2, "{recovered}");
    let args = op.expect("order:status_changed").await;
    assert_eq!(args[1]["offset"], 2);
    app.stop().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .ok();
}
