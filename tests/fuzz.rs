//! Hostile input (SPEC §8): thousands of random and malformed payloads to
//! every client event. No panic, every asked-for ack is a clear answer, the
//! connection survives, and the server still answers `ping` afterwards.
//! Cases are bounded (FUZZ_CASES, default 3000) so CI stays fast.

mod common;

use std::time::Duration;

use common::client::Client;
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use switchyard::domain::Role;
use tokio_tungstenite::tungstenite::Message;

/// Every route of the one route table every transport serves, and two
/// names that are none.
fn events() -> Vec<&'static str> {
    switchyard::api::ROUTES
        .iter()
        .map(|(name, _)| *name)
        .chain(["no:such_event", ""])
        .collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[a-z]{1,8}(:[A-Za-z0-9]{1,6}){0,3}".prop_map(Value::from),
        Just(Value::from("x".repeat(4000))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("room".to_string()),
                    Just("rooms".to_string()),
                    Just("type".to_string()),
                    Just("payload".to_string()),
                    Just("offsets".to_string()),
                    Just("offset".to_string()),
                    Just("token".to_string()),
                    Just("id".to_string()),
                    Just("changes".to_string()),
                    Just("baseVersion".to_string()),
                    Just("isTyping".to_string()),
                    ".{0,12}".prop_map(String::from)
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn deep_nesting(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!({ "a": [v] }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_payloads_to_every_event_get_clear_answers() {
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[("WS_RATE_LIMIT", "100000"), ("WS_RATE_BURST", "100000")],
    )
    .await;
    let mut c = Client::with_token(&app.url(), &app.token("fuzz", "acme", Role::Admin)).await;
    c.expect("session").await;
    let mut runner = TestRunner::deterministic();
    let strategy = (prop::sample::select(events()), json_value());
    let mut answered = 0;
    for i in 0..cases {
        let (event, data) = strategy.new_tree(&mut runner).expect("strategy").current();
        let data = if i % 500 == 0 {
            deep_nesting(100)
        } else {
            data
        };
        let ack = c.emit_with_ack(event, data.clone()).await;
        let clear = ack["pong"] == true
            || ack["ok"] == true
            || (ack["ok"] == false
                && ack["error"]["code"].as_str().is_some_and(|c| !c.is_empty())
                && ack["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()));
        assert!(clear, "{event} {data} -> {ack}");
        answered += 1;
    }
    assert_eq!(answered, cases);
    assert_eq!(
        c.emit_with_ack("ping", Value::Null).await["pong"],
        true,
        "the connection survived {cases} cases"
    );
    app.stop().await;
}

/// Packets socket.io cannot parse close that connection only.
#[tokio::test]
async fn malformed_packets_close_only_their_connection() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let token = app.token("u1", "acme", Role::Operator);
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let garbage: Vec<Vec<Message>> = vec![
        vec![Message::Text("42".into())],
        vec![Message::Text("42[".into())],
        vec![Message::Text("42[1,2]".into())],
        vec![Message::Text("42{\"a\":1}".into())],
        vec![Message::Text("4".into())],
        vec![Message::Text("49".into())],
        vec![Message::Text("x".into())],
        vec![Message::Text("42999999999999999999999[\"ping\"]".into())],
        vec![
            Message::Text("451-[\"event:publish\",{\"_placeholder\":true,\"num\":0}]".into()),
            Message::Binary(vec![0xff, 0xfe, 0x00].into()),
        ],
        vec![
            Message::Text("452-[\"subscribe\",{\"_placeholder\":true,\"num\":7}]".into()),
            Message::Binary(vec![0xc3].into()),
        ],
        vec![Message::Binary(vec![0, 159, 146, 150].into())],
        vec![Message::Text(
            format!("42[\"ping\",{}]", "[".repeat(5000) + &"]".repeat(5000)).into(),
        )],
    ];
    for packets in garbage {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("ws");
        let _open = ws.next().await;
        ws.send(Message::Text(
            format!("40{}", json!({ "token": token })).into(),
        ))
        .await
        .unwrap();
        let _connect = ws.next().await;
        for p in packets {
            let _ = ws.send(p).await;
        }
        // Whatever happens to this connection, it must not take the server down.
        let _ = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
    }
    let mut c = Client::with_token(&app.url(), &token).await;
    assert_eq!(c.emit_with_ack("ping", Value::Null).await["pong"], true);
    let health = reqwest::get(format!("{}/health/websocket", app.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    app.stop().await;
}
