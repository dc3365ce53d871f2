//! Limits (SPEC §8): each refusal has its code, is counted in /metrics, and
//! the connection survives unless the client is abusive.

mod common;

use std::time::Duration;

use common::client::{Client, ConnectError};
use serde_json::{Value, json};
use switchyard::domain::Role;

async fn metric(app: &common::TestApp, name_and_labels: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn rate_limit_refuses_with_rate_limited_then_disconnects_abusers() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[("WS_RATE_LIMIT", "5"), ("WS_RATE_BURST", "5")],
    )
    .await;
    let before = metric(&app, "websocket_rate_limited_total").await;
    let mut c = Client::with_token(&app.url(), &app.token("u1", "acme", Role::Operator)).await;
    c.expect("session").await;
    let ids: Vec<u64> = (0..20)
        .map(|_| c.emit_ack_id("ping", Value::Null))
        .collect();
    let mut codes = Vec::new();
    for id in ids {
        let ack = c.ack(id).await;
        codes.push(if ack["pong"] == true {
            "ok".to_string()
        } else {
            ack["error"]["code"].as_str().unwrap().to_string()
        });
    }
    assert_eq!(codes.iter().filter(|c| *c == "ok").count(), 5, "{codes:?}");
    assert!(
        codes.iter().skip(5).all(|c| c == "RATE_LIMITED"),
        "{codes:?}"
    );
    assert!(metric(&app, "websocket_rate_limited_total").await >= before + 15.0);
    assert!(metric(&app, "websocket_refused_total{code=\"RATE_LIMITED\"}").await >= 15.0);
    // After a pause the bucket refills and the connection still works.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.emit_with_ack("ping", Value::Null).await["pong"], true);
    // Sustained abuse (far beyond the rate for long) ends the connection.
    for _ in 0..200 {
        c.emit("ping", Value::Null);
    }
    let events: Vec<String> = c
        .drain(Duration::from_secs(2))
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e == "__disconnect" || e == "__closed"),
        "{events:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_events_get_payload_too_large_and_giant_frames_close_only_that_connection() {
    let app = common::spawn_app(&common::sqlite_url(), &[("WS_MAX_PAYLOAD", "2048")]).await;
    let token = app.token("u1", "acme", Role::Supervisor);
    let mut c = Client::with_token(&app.url(), &token).await;
    c.expect("session").await;
    let ack = c.emit_with_ack("event:publish", json!({ "type": "order:note_added", "payload": { "orderId": "1", "note": "x".repeat(3000), "addedBy": "u1" } })).await;
    assert_eq!(ack["error"]["code"], "PAYLOAD_TOO_LARGE", "{ack}");
    assert_eq!(
        c.emit_with_ack("ping", Value::Null).await["pong"],
        true,
        "the connection survives"
    );
    assert!(metric(&app, "websocket_refused_total{code=\"PAYLOAD_TOO_LARGE\"}").await >= 1.0);
    // Above the engine's limit (2 × WS_MAX_PAYLOAD) the frame closes that connection.
    c.emit("ping", json!({ "pad": "y".repeat(5000) }));
    let events: Vec<String> = c
        .drain(Duration::from_secs(2))
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(events.contains(&"__closed".to_string()), "{events:?}");
    let mut other = Client::with_token(&app.url(), &token).await;
    assert_eq!(
        other.emit_with_ack("ping", Value::Null).await["pong"],
        true,
        "the server survives"
    );
    app.stop().await;
}

#[tokio::test]
async fn connection_refusals_and_auth_failures_are_counted() {
    let app = common::spawn_app(&common::sqlite_url(), &[("WS_MAX_CONNECTIONS", "1")]).await;
    let bad_before = metric(
        &app,
        "websocket_auth_failures_total{reason=\"INVALID_TOKEN\"}",
    )
    .await;
    assert!(matches!(
        Client::connect(&app.url(), "", json!({ "token": "nope" })).await,
        Err(ConnectError::Refused(_))
    ));
    assert!(
        metric(
            &app,
            "websocket_auth_failures_total{reason=\"INVALID_TOKEN\"}"
        )
        .await
            >= bad_before + 1.0
    );
    let token = app.token("u1", "acme", Role::Operator);
    let mut first = Client::with_token(&app.url(), &token).await;
    assert_eq!(first.emit_with_ack("ping", Value::Null).await["pong"], true);
    match Client::connect(&app.url(), "", json!({ "token": token })).await {
        Err(ConnectError::Refused(msg)) => assert!(msg.starts_with("LIMIT_EXCEEDED"), "{msg}"),
        other => panic!("over WS_MAX_CONNECTIONS: {:?}", other.err()),
    }
    assert!(metric(&app, "websocket_refused_total{code=\"LIMIT_EXCEEDED\"}").await >= 1.0);
    assert!(metric(&app, "websocket_connections_total").await >= 1.0);
    let text = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in ["websocket_active_connections", "websocket_messages_total"] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    app.stop().await;
}

#[tokio::test]
async fn websocket_handshakes_from_foreign_origins_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[("CORS_ORIGINS", "https://floor.example")],
    )
    .await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let with_origin = |origin: Option<&str>| {
        let mut req = url.clone().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        req
    };
    let evil = tokio_tungstenite::connect_async(with_origin(Some("https://evil.example"))).await;
    match evil {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("foreign origin accepted: {:?}", other.map(|_| ())),
    }
    assert!(
        tokio_tungstenite::connect_async(with_origin(Some("https://floor.example")))
            .await
            .is_ok()
    );
    assert!(
        tokio_tungstenite::connect_async(with_origin(None))
            .await
            .is_ok(),
        "non-browser clients send no Origin"
    );
    let polling = reqwest::Client::new()
        .get(format!("{}/socket.io/?EIO=4&transport=polling", app.url()))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(polling.status(), 403);
    app.stop().await;
}
