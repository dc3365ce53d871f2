//! Protocol edges (issue 10): event type names that would break clients,
//! JWT claim rules and `auth:refresh` with far-future expiries, receive
//! filtering for admins in role rooms, and HTTP targets listed twice.

mod common;

use std::time::Duration;

use common::client::Client;
use serde_json::{Value, json};
use switchyard::domain::Role;

/// A catalog file that allows unknown types plus a few test types.
fn catalog_file(allow_unknown: bool) -> String {
    let path = std::env::temp_dir().join(format!("{}.json", common::unique("catalog")));
    let body = json!({
        "allowUnknown": allow_unknown,
        "events": {
            "t:sup_ephemeral": { "durable": false, "receive": ["supervisor"], "publish": ["supervisor"] },
            "t:sup_durable": { "durable": true, "receive": ["supervisor"], "publish": ["supervisor"] },
            "t:all_ephemeral": { "durable": false },
            "t:all_durable": { "durable": true },
        }
    });
    std::fs::write(&path, body.to_string()).expect("write catalog");
    path.display().to_string()
}

async fn http_publish(app: &common::TestApp, body: Value) -> (u16, Value) {
    app.post_json("/api/v1/events", &body).await
}

fn names(events: &[(String, Vec<Value>)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

const RESERVED: [&str; 16] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    "error",
    "ping",
    "pong",
    "reconnect",
    "session",
    "session:expired",
    "document:updated",
    "user:online",
    "presence:joined",
    "replay:truncated",
];

#[tokio::test]
async fn reserved_and_malformed_type_names_are_refused_even_when_unknown_types_are_allowed() {
    let catalog = catalog_file(true);
    let app = common::spawn_app(&common::sqlite_url(), &[("CATALOG_FILE", &catalog)]).await;
    let company = common::unique("c");
    let mut op = Client::with_token(&app.url(), &app.token("o1", &company, Role::Operator)).await;
    op.expect("session").await;
    let mut sup =
        Client::with_token(&app.url(), &app.token("s1", &company, Role::Supervisor)).await;
    sup.expect("session").await;
    let too_long = "a".repeat(65);
    let malformed = ["bad type", "1abc", "", too_long.as_str(), "a/b", "ü"];
    for name in RESERVED.iter().chain(&malformed) {
        let ack = sup
            .emit_with_ack(
                "event:publish",
                json!({ "type": name, "payload": { "x": 1 } }),
            )
            .await;
        assert_eq!(ack["error"]["code"], "VALIDATION_FAILED", "{name}: {ack}");
        assert_eq!(ack["error"]["details"]["field"], "type", "{name}: {ack}");
        let (status, body) = http_publish(
            &app,
            json!({ "type": name, "companyId": company, "payload": { "x": 1 } }),
        )
        .await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{name}: {body}");
    }
    // Unknown but well-formed names still pass, and the room is still alive.
    let ack = sup
        .emit_with_ack(
            "event:publish",
            json!({ "type": "custom:thing", "payload": { "x": 1 } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // What the publishes above sent (server signals such as `user:online`
    // for the supervisor's connect carry other payloads).
    let got: Vec<(String, Vec<Value>)> = op
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|(_, args)| args.first() == Some(&json!({ "x": 1 })))
        .collect();
    assert_eq!(names(&got), vec!["custom:thing"], "{got:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_catalog_entry_with_a_reserved_or_malformed_name_fails_startup_naming_it() {
    for name in ["user:online", "disconnect", "bad name"] {
        let path = std::env::temp_dir().join(format!("{}.json", common::unique("catalog")));
        std::fs::write(&path, json!({ "events": { name: {} } }).to_string()).unwrap();
        let err = switchyard::catalog::Catalog::load(Some(&path)).expect_err(name);
        let text = err.to_string();
        assert!(text.contains(&format!("events.{name}")), "{text}");
        let mut vars = std::collections::HashMap::new();
        vars.insert("JWT_SECRET".to_string(), common::SECRET.to_string());
        vars.insert("DATABASE_URL".to_string(), common::sqlite_url());
        vars.insert("PORT".to_string(), "0".to_string());
        vars.insert("HOST".to_string(), "127.0.0.1".to_string());
        vars.insert("CATALOG_FILE".to_string(), path.display().to_string());
        let config = switchyard::Config::from_map(vars).unwrap();
        let err = switchyard::App::build(config)
            .await
            .err()
            .expect("startup fails");
        assert!(
            format!("{err:#}").contains(&format!("events.{name}")),
            "{err:#}"
        );
    }
}

#[tokio::test]
async fn unknown_types_share_one_metric_label() {
    let catalog = catalog_file(true);
    let app = common::spawn_app(&common::sqlite_url(), &[("CATALOG_FILE", &catalog)]).await;
    let company = common::unique("c");
    let mut op = Client::with_token(&app.url(), &app.token("o1", &company, Role::Operator)).await;
    op.expect("session").await;
    let prefix = common::unique("zz");
    for i in 0..3 {
        let (status, body) = http_publish(
            &app,
            json!({ "type": format!("{prefix}:{i}"), "companyId": company, "payload": {} }),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        op.expect(&format!("{prefix}:{i}")).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains(&prefix),
        "unknown types must not become labels"
    );
    assert!(
        metrics.contains("websocket_messages_total{type=\"unknown\",direction=\"out\"}"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn stored_events_with_reserved_names_are_never_replayed() {
    // An event stored before names were checked must not kill clients on resume.
    let db = common::sqlite_url();
    let app = common::spawn_app(&db, &[]).await;
    let company = common::unique("c");
    let store = switchyard::store::connect(&db).await.unwrap();
    let now = switchyard::domain::now_ms();
    let event = |ty: &str| switchyard::store::NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        company_id: company.clone(),
        event_type: ty.to_string(),
        rooms: vec!["company".into()],
        payload: json!({}),
        priority: "medium".into(),
        source: "api".into(),
        publisher: None,
        created_at: now,
        expires_at: now + 3_600_000,
        idempotency_key: None,
        webhooks: Vec::new(),
    };
    store
        .append(vec![
            event("connect"),
            event("session:expired"),
            event("dashboard:refresh"),
        ])
        .await
        .unwrap();
    let token = app.token("o1", &company, Role::Operator);
    let mut c = Client::connect(
        &app.url(),
        "",
        json!({ "token": token, "offsets": { "company": 0 } }),
    )
    .await
    .expect("connects");
    let got = c.drain(Duration::from_millis(800)).await;
    assert_eq!(names(&got), vec!["dashboard:refresh", "session"], "{got:?}");
    app.stop().await;
}

fn sign(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn refresh_with_a_far_future_exp_answers_a_saturated_expires_at() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let mut c = Client::with_token(&app.url(), &app.token("u1", "acme", Role::Operator)).await;
    c.expect("session").await;
    let huge: [Value; 3] = [json!(i64::MAX), json!(i64::MAX / 1000 + 1), json!(u64::MAX)];
    for exp in huge {
        let token =
            sign(json!({ "sub": "u1", "companyId": "acme", "role": "operator", "exp": exp }));
        let ack = c
            .emit_with_ack("auth:refresh", json!({ "token": token }))
            .await;
        assert_eq!(ack["ok"], true, "exp {exp}: {ack}");
        // The largest time a JavaScript Date can hold.
        assert_eq!(ack["expiresAt"], json!(8_640_000_000_000_000_i64), "{ack}");
    }
    assert_eq!(c.emit_with_ack("ping", Value::Null).await["pong"], true);
    app.stop().await;
}

#[tokio::test]
async fn max_ttl_and_required_issuer_and_audience_refuse_connections() {
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[
            ("JWT_MAX_TTL", "3600"),
            ("JWT_ISSUER", "idp"),
            ("JWT_AUDIENCE", "switchyard"),
        ],
    )
    .await;
    let now = switchyard::domain::now_ms() / 1000;
    let base = json!({ "sub": "u1", "companyId": "acme", "role": "operator", "iat": now, "exp": now + 600, "iss": "idp", "aud": "switchyard" });
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        sign(c)
    };
    let cases = [
        (
            with("iss", Value::Null),
            "INVALID_TOKEN: invalid token: no issuer",
        ),
        (
            with("aud", Value::Null),
            "INVALID_TOKEN: invalid token: no audience",
        ),
        // exp − iat beyond the limit, exp − now beyond it (with and without iat).
        (
            with("iat", json!(now - 7000)),
            "INVALID_TOKEN: invalid token: it is valid for longer than JWT_MAX_TTL",
        ),
        (
            with("exp", json!(now + 7200)),
            "INVALID_TOKEN: invalid token: it is valid for longer than JWT_MAX_TTL",
        ),
        (
            sign(
                json!({ "sub": "u1", "companyId": "acme", "role": "operator", "exp": now + 7200, "iss": "idp", "aud": "switchyard" }),
            ),
            "INVALID_TOKEN: invalid token: it is valid for longer than JWT_MAX_TTL",
        ),
    ];
    for (token, prefix) in cases {
        match Client::connect(&app.url(), "", json!({ "token": token })).await {
            Err(common::client::ConnectError::Refused(msg)) => {
                assert!(msg.starts_with(prefix), "{msg} (want {prefix})")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("{prefix}: accepted"),
        }
    }
    let ok = Client::connect(&app.url(), "", json!({ "token": sign(base.clone()) })).await;
    assert!(ok.is_ok(), "a token within the rules connects");
    app.stop().await;
}

#[tokio::test]
async fn an_admin_in_a_role_room_receives_what_that_role_receives_there() {
    let catalog = catalog_file(false);
    let app = common::spawn_app(&common::sqlite_url(), &[("CATALOG_FILE", &catalog)]).await;
    let company = common::unique("c");
    let mut admin = Client::with_token(&app.url(), &app.token("a1", &company, Role::Admin)).await;
    admin.expect("session").await;
    let ack = admin
        .emit_with_ack("subscribe", json!({ "room": "role:operator" }))
        .await;
    assert_eq!(ack["rooms"], json!(["role:operator"]), "{ack}");
    let mut op = Client::with_token(&app.url(), &app.token("o1", &company, Role::Operator)).await;
    op.expect("session").await;
    let mut sup =
        Client::with_token(&app.url(), &app.token("s1", &company, Role::Supervisor)).await;
    sup.expect("session").await;
    let publish = |ty: &str, room: &str| json!({ "type": ty, "companyId": company, "rooms": [room], "payload": {} });
    // To the company: an admin gets everything, whatever role rooms it joined.
    for ty in ["t:sup_ephemeral", "t:sup_durable"] {
        let (status, body) = http_publish(&app, publish(ty, "company")).await;
        assert_eq!(status, 202, "{body}");
    }
    // To role:operator: an admin in that room gets what operators get there.
    for ty in [
        "t:sup_ephemeral",
        "t:sup_durable",
        "t:all_ephemeral",
        "t:all_durable",
    ] {
        let (status, body) = http_publish(&app, publish(ty, "role:operator")).await;
        assert_eq!(status, 202, "{body}");
    }
    let seen = |events: Vec<(String, Vec<Value>)>| -> Vec<String> {
        let mut v: Vec<String> = events
            .into_iter()
            .filter(|(n, _)| n.starts_with("t:"))
            .map(|(n, args)| format!("{n}@{}", args[1]["room"].as_str().unwrap_or("?")))
            .collect();
        v.sort();
        v
    };
    let wait = Duration::from_millis(800);
    assert_eq!(
        seen(admin.drain(wait).await),
        vec![
            "t:all_durable@role:operator",
            "t:all_ephemeral@role:operator",
            "t:sup_durable@company",
            "t:sup_ephemeral@company",
        ]
    );
    assert_eq!(
        seen(op.drain(wait).await),
        vec![
            "t:all_durable@role:operator",
            "t:all_ephemeral@role:operator"
        ]
    );
    assert_eq!(
        seen(sup.drain(wait).await),
        vec!["t:sup_durable@company", "t:sup_ephemeral@company"]
    );
    app.stop().await;
}

#[tokio::test]
async fn targets_listed_twice_are_delivered_once() {
    for db in [common::sqlite_url(), common::postgres_url()] {
        let catalog = catalog_file(false);
        let app = common::spawn_app(&db, &[("CATALOG_FILE", &catalog)]).await;
        let company = common::unique("c");
        let mut c =
            Client::with_token(&app.url(), &app.token("u1", &company, Role::Operator)).await;
        c.expect("session").await;
        c.emit_with_ack("subscribe", json!({ "rooms": ["order:1", "order:2"] }))
            .await;
        for ty in ["t:all_ephemeral", "t:all_durable"] {
            let (status, body) = http_publish(
                &app,
                json!({
                    "type": ty, "companyId": company, "payload": {},
                    "rooms": ["order:1", "order:2", "order:1", "user:u1"],
                    "users": ["u1", "u1"], "roles": ["operator", "operator"],
                }),
            )
            .await;
            assert_eq!(status, 202, "{body}");
            if ty == "t:all_durable" {
                let offsets = body["events"][0]["offsets"].as_object().unwrap();
                let mut rooms: Vec<&String> = offsets.keys().collect();
                rooms.sort();
                assert_eq!(
                    rooms,
                    vec!["order:1", "order:2", "role:operator", "user:u1"]
                );
                assert!(offsets.values().all(|o| o == 1), "{body}");
            }
        }
        let got = c.drain(Duration::from_millis(800)).await;
        let mut rooms: Vec<String> = got
            .iter()
            .filter(|(n, _)| n.starts_with("t:"))
            .map(|(n, args)| format!("{n}@{}", args[1]["room"].as_str().unwrap_or("?")))
            .collect();
        rooms.sort();
        let mut want = Vec::new();
        for ty in ["t:all_durable", "t:all_ephemeral"] {
            for room in ["order:1", "order:2", "role:operator", "user:u1"] {
                want.push(format!("{ty}@{room}"));
            }
        }
        assert_eq!(rooms, want);
        app.stop().await;
    }
}
