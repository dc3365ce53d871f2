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

/// PostgreSQL stopped outright (a private cluster, fast shutdown) while a
/// backend publishes over HTTP ten times a second, then started again. The
/// pool retries refused connections until its acquire timeout (3 s); every
/// publish during the outage, and a document update after them (its own
/// breaker), must still be refused with UNAVAILABLE well before that, and
/// publishing resumes by itself after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_while_postgres_is_stopped_is_refused_in_well_under_the_pool_timeout() {
    use common::private_pg::PrivatePg;
    use std::sync::Arc;
    use std::time::Instant;

    let pg = Arc::new(tokio::task::spawn_blocking(PrivatePg::start).await.unwrap());
    let app = common::spawn_app(&pg.url(), &[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/events", app.url());
    let publish = |n: i64| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let started = Instant::now();
            let res = http
                .post(&url)
                .bearer_auth("test-key")
                .json(
                    &json!({ "type": "order:status_changed", "companyId": "acme",
                               "rooms": ["order:1"], "payload": order(n) }),
                )
                .send()
                .await
                .expect("the server answers");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body, started.elapsed())
        }
    };
    assert_eq!(publish(0).await.0, 202, "published before the outage");
    // A socket connected before the outage updates a document during it
    // (document turns have their own breaker, still closed then).
    let mut writer =
        Client::with_token(&app.url(), &app.token("s1", "acme", Role::Supervisor)).await;
    writer.expect("session").await;

    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.stop()).await.unwrap();
    // Health checks (a load balancer's, every few seconds) use the pool
    // too: their failures drop the pool's dead connections until one has
    // to wait for a new connection, so the publishes below find none.
    for _ in 0..20 {
        let started = Instant::now();
        let _ = http
            .get(format!("{}/health/websocket", app.url()))
            .send()
            .await;
        if started.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    let mut refusals = Vec::new();
    for n in 1..=30 {
        let (status, body, took) = publish(n).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("UNAVAILABLE")),
            "{body}"
        );
        refusals.push(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let update = writer
        .emit_with_ack(
            "document:update",
            json!({ "type": "order", "id": "42", "baseVersion": 0,
                    "changes": { "status": "planned" } }),
        )
        .await;
    assert_eq!(update["error"]["code"], "UNAVAILABLE", "{update}");
    refusals.push(started.elapsed());
    let slowest = refusals.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(1_500),
        "slowest refusal took {slowest:?}: {refusals:?}"
    );

    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.resume())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 100;
    while publish(n).await.0 != 202 {
        assert!(Instant::now() < deadline, "publishing did not resume");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
