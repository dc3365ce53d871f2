//! Unit tests of [`super`]: the seeds' request shapes and the replies.

use super::*;

fn call(text: &str) -> AppResult<Call> {
    route(&read(text).expect("readable"))
}

fn body(text: &str) -> (Verb, Value) {
    match call(text).expect("routes") {
        Call::Api { verb, body, .. } => (verb, body),
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_and_arguments() {
    let r = read(r#"{"action":"subscribe","data":{"room":"order:1"},"requestId":"r1"}"#).unwrap();
    assert_eq!((r.key, r.name.as_str()), (Key::Action, "subscribe"));
    assert_eq!(r.args, json!({"room": "order:1"}));
    assert_eq!(r.request_id, Some(json!("r1")));
    let r = read(r#"{"type":"subscribe","channel":"alarms"}"#).unwrap();
    assert_eq!(
        (r.key, r.args.clone()),
        (Key::Type, json!({"channel": "alarms"}))
    );
    for bad in [
        "nope",
        "[1]",
        "{}",
        r#"{"action":1}"#,
        r#"{"type":"x","data":3}"#,
    ] {
        assert!(read(bad).is_err(), "{bad}");
    }
    assert_eq!(
        read(r#"{"action":1,"requestId":7}"#)
            .unwrap_err()
            .request_id,
        Some(json!(7))
    );
}

#[test]
fn the_seeds_subscriptions() {
    assert_eq!(
        body(r#"{"type":"subscribe","channel":"telemetry","endpointIds":[59,60]}"#),
        (
            Verb::Subscribe,
            json!({"rooms": ["telemetry:59", "telemetry:60"]})
        )
    );
    assert_eq!(
        body(r#"{"type":"subscribe","channel":"commands","commandIds":["c1"]}"#).1,
        json!({"rooms": ["command:c1"]})
    );
    assert_eq!(
        body(r#"{"type":"subscribe","channel":"alarms"}"#).1,
        json!({"rooms": ["alarms"]})
    );
    assert_eq!(
        body(r#"{"action":"subscribe","data":{"orderIds":[1]}}"#).1,
        json!({"rooms": ["order:1"]})
    );
    assert_eq!(
        body(r#"{"action":"unsubscribe","rooms":["a"]}"#),
        (Verb::Unsubscribe, json!({"rooms": ["a"]}))
    );
    let Ok(Call::Api { verb, body, echo }) =
        call(r#"{"action":"subscribeToOrder","data":{"orderId":67890}}"#)
    else {
        panic!()
    };
    assert_eq!(
        (verb, body),
        (Verb::Subscribe, json!({"room": "order:67890"}))
    );
    assert_eq!(echo["orderId"], 67890);
    assert_eq!(
        body_of(r#"{"action":"unsubscribeFromMachine","machineId":"m1"}"#),
        json!({"room": "machine:m1"})
    );
    assert_eq!(
        call(r#"{"action":"subscribeToOrder","data":{}}"#)
            .unwrap_err()
            .details
            .unwrap()["field"],
        "orderId"
    );
}

fn body_of(text: &str) -> Value {
    body(text).1
}

#[test]
fn names_auth_and_publish() {
    assert_eq!(body(r#"{"action":"getRooms"}"#).0, Verb::Rooms);
    assert_eq!(body(r#"{"type":"rooms"}"#).0, Verb::Rooms);
    assert_eq!(body(r#"{"type":"getStatus"}"#).0, Verb::Status);
    assert_eq!(
        body(r#"{"type":"ack","room":"company","offset":3}"#).0,
        Verb::Ack
    );
    assert_eq!(
        body(r#"{"type":"document:get","data":{"type":"t","id":"1"}}"#).1["type"],
        "t"
    );
    assert_eq!(
        call(r#"{"type":"auth","token":"abc"}"#).unwrap(),
        Call::Auth("abc".into())
    );
    assert!(call(r#"{"action":"auth"}"#).is_err());
    assert_eq!(
        body(r#"{"action":"publish","type":"alarm","room":"alarms","payload":{}}"#),
        (
            Verb::Publish,
            json!({"type": "alarm", "room": "alarms", "payload": {}})
        )
    );
    assert_eq!(
        body(r#"{"type":"publish","eventType":"alarm","payload":{}}"#).1["type"],
        "alarm"
    );
    assert_eq!(
        call(r#"{"type":"nope"}"#).unwrap_err().code,
        Code::UnknownEvent
    );
}

#[test]
fn replies_use_the_callers_key() {
    let inb = read(r#"{"action":"ping","requestId":9}"#).unwrap();
    let a = answer(&inb, Map::new(), Ok(json!({"pong": true, "serverTime": 1})));
    assert_eq!(
        (a["action"].clone(), a["requestId"].clone()),
        (json!("pong"), json!(9))
    );
    assert!(a["timestamp"].is_i64());
    let inb = read(r#"{"action":"getRooms"}"#).unwrap();
    let a = answer(
        &inb,
        Map::new(),
        Ok(json!({"ok": true, "rooms": ["a", "b"]})),
    );
    assert_eq!(
        (
            a["action"].clone(),
            a["count"].clone(),
            a["success"].clone()
        ),
        (json!("getRooms"), json!(2), json!(true))
    );
    let inb = read(r#"{"type":"subscribe","channel":"x"}"#).unwrap();
    let a = answer(&inb, Map::new(), Err(AppError::new(Code::Forbidden, "no")));
    assert_eq!(
        (
            a["type"].clone(),
            a["success"].clone(),
            a["error"]["code"].clone()
        ),
        (json!("subscribe"), json!(false), json!("FORBIDDEN"))
    );
    assert!(a.get("requestId").is_none());
}
