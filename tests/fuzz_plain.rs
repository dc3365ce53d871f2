//! Hostile input on the plain JSON WebSocket (SPEC §8, §12): random and
//! malformed frames under every request name (the route table's and its
//! plain-WebSocket aliases), with the verb under `type` or `action` and the
//! arguments in `data` or at the top level. Every frame gets an answer
//! (one with its `requestId` when it carried one), the connection survives,
//! and it still answers `ping`. Cases are bounded (FUZZ_CASES, default 1500).

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use switchyard::domain::Role;
use tokio_tungstenite::tungstenite::Message;

fn names() -> Vec<&'static str> {
    switchyard::api::ROUTES
        .iter()
        .chain(switchyard::api::ALIASES.iter())
        .map(|(name, _)| *name)
        .chain([
            "subscribeToOrder",
            "unsubscribeFromMachine",
            "auth",
            "no:such",
            "",
        ])
        .collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,30}".prop_map(Value::from),
        "[a-z]{1,8}(:[A-Za-z0-9]{1,6}){0,2}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("room".to_string()),
                    Just("rooms".to_string()),
                    Just("channel".to_string()),
                    Just("endpointIds".to_string()),
                    Just("orderId".to_string()),
                    Just("type".to_string()),
                    Just("payload".to_string()),
                    Just("offsets".to_string()),
                    Just("offset".to_string()),
                    Just("token".to_string()),
                    Just("id".to_string()),
                    ".{0,10}".prop_map(String::from)
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_under_every_name_get_answers() {
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("WS_RATE_LIMIT", "100000"),
            ("WS_RATE_BURST", "100000"),
            ("WS_USER_RATE_LIMIT", "100000"),
        ],
    )
    .await;
    let token = app.token("fuzzer", "fuzz-co", Role::Admin);
    let url = format!("ws://{}/ws?token={token}", app.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connects");
    let names = names();
    let mut runner = TestRunner::default();
    let strategy = json_value();
    for i in 0..cases {
        let value = strategy.new_tree(&mut runner).expect("tree").current();
        let name = names[i % names.len()];
        let key = if i % 2 == 0 { "type" } else { "action" };
        let frame = match i % 5 {
            0 => json!({ key: name, "data": value, "requestId": i }).to_string(),
            1 => {
                let mut obj = match value {
                    Value::Object(m) => m,
                    other => [("x".to_string(), other)].into_iter().collect(),
                };
                obj.insert(key.into(), json!(name));
                obj.insert("requestId".into(), json!(i));
                Value::Object(obj).to_string()
            }
            2 => value.to_string(),
            3 => format!("{{\"{key}\": \"{name}\", \"requestId\": {i}, \"data\": "),
            _ => json!({ key: value, "requestId": i }).to_string(),
        };
        ws.send(Message::Text(frame.clone().into()))
            .await
            .expect("send");
        // Each frame is answered before the next is sent.
        let answer = loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {frame}"))
                .expect("open")
                .expect("frame");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).expect("answers are JSON");
            // Events and server messages (session, typing, …) may come between.
            if v.get("ok").is_some() || v.get("error").is_some() || v.get("success").is_some() {
                break v;
            }
        };
        if answer.get("requestId").is_some() {
            assert_eq!(answer["requestId"], json!(i), "{frame} → {answer}");
        }
        if answer.get("ok") == Some(&json!(false)) {
            let code = answer["error"]["code"].as_str().unwrap_or_default();
            assert!(!code.is_empty() && code != "INTERNAL", "{frame} → {answer}");
        }
    }
    ws.send(Message::Text(
        json!({"type": "ping", "requestId": "last"})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("answer")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = msg
            && text.contains("\"last\"")
        {
            assert!(text.contains("pong"), "{text}");
            break;
        }
    }
    app.stop().await;
}
