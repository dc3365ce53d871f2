//! Documents end to end (SPEC §6): the real server in-process on SQLite and
//! Postgres, spoken to over a raw Socket.IO WebSocket and the HTTP API.

mod common;

use std::time::Duration;

use common::client::Client;
use serde_json::{Value, json};
use switchyard::domain::Role;

fn backends() -> Vec<String> {
    vec![common::sqlite_url(), common::postgres_url()]
}

async fn connect(app: &common::TestApp, user: &str, company: &str, role: Role) -> Client {
    let mut c = Client::with_token(&app.url(), &app.token(user, company, role)).await;
    c.expect("session").await;
    c
}

fn names(events: &[(String, Vec<Value>)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn get_update_and_broadcast_to_other_subscribers_only() {
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let mut writer = connect(&app, "s1", &company, Role::Supervisor).await;
        let mut reader = connect(&app, "o1", &company, Role::Operator).await;
        for c in [&mut writer, &mut reader] {
            let ack = c
                .emit_with_ack("subscribe", json!({ "room": "document:order:42" }))
                .await;
            assert_eq!(ack["rooms"], json!(["document:order:42"]), "{db}");
        }
        let absent = reader
            .emit_with_ack("document:get", json!({ "type": "order", "id": "42" }))
            .await;
        assert_eq!(absent["ok"], true, "{absent}");
        assert_eq!(absent["document"]["version"], 0);
        assert_eq!(absent["document"]["data"], json!({}));
        assert_eq!(absent["document"]["updatedAt"], Value::Null);

        let ack = writer
            .emit_with_ack(
                "document:update",
                json!({ "type": "order", "id": "42", "baseVersion": 0,
                        "changes": { "status": "planned", "notes": "rush" } }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{db}: {ack}");
        assert_eq!(ack["status"], "applied");
        assert_eq!(ack["version"], 1);
        assert_eq!(
            ack["document"]["data"],
            json!({ "status": "planned", "notes": "rush" })
        );
        assert_eq!(ack["document"]["updatedBy"], "s1");
        assert!(ack.get("conflict").is_none(), "{ack}");
        let updated = reader.expect("document:updated").await.remove(0);
        assert_eq!(
            (
                &updated["type"],
                &updated["id"],
                &updated["version"],
                &updated["updatedBy"]
            ),
            (&json!("order"), &json!("42"), &json!(1), &json!("s1"))
        );
        assert_eq!(
            updated["changes"],
            json!({ "status": "planned", "notes": "rush" })
        );
        assert!(
            updated["updatedAt"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );

        // `null` deletes a field; only what changed is broadcast.
        let ack = writer
            .emit_with_ack(
                "document:update",
                json!({ "type": "order", "id": "42", "baseVersion": 1, "changes": { "notes": null } }),
            )
            .await;
        assert_eq!(
            (ack["status"].clone(), ack["version"].clone()),
            (json!("applied"), json!(2))
        );
        assert_eq!(ack["document"]["data"], json!({ "status": "planned" }));
        let updated = reader.expect("document:updated").await.remove(0);
        assert_eq!(updated["changes"], json!({ "notes": null }));
        assert_eq!(updated["version"], 2);
        let got = reader
            .emit_with_ack("document:get", json!({ "type": "order", "id": "42" }))
            .await;
        assert_eq!(got["document"]["version"], 2);
        assert_eq!(got["document"]["data"], json!({ "status": "planned" }));
        // The writer never hears its own updates.
        let own = writer.drain(Duration::from_millis(300)).await;
        assert!(!names(&own).contains(&"document:updated"), "{db}: {own:?}");
        app.stop().await;
    }
}

/// Two supervisors edit the same order; the tablet that was offline sends
/// an older edit later and loses the field it disagreed on.
#[tokio::test]
async fn stale_update_merges_and_the_loser_is_told_which_fields_and_why() {
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let mut desk = connect(&app, "desk", &company, Role::Supervisor).await;
        let mut tablet = connect(&app, "tablet", &company, Role::Supervisor).await;
        let doc = |base: i64, changes: Value, edited_at: Value| json!({ "type": "order", "id": "7", "baseVersion": base, "changes": changes, "editedAt": edited_at });
        let now = switchyard::domain::now_ms();
        let v1 = desk
            .emit_with_ack(
                "document:update",
                doc(
                    0,
                    json!({"status": "planned", "priority": "low"}),
                    json!(now - 7_200_000),
                ),
            )
            .await;
        assert_eq!(v1["version"], 1, "{db}: {v1}");
        let v2 = desk
            .emit_with_ack(
                "document:update",
                doc(1, json!({"status": "running"}), json!(now - 60_000)),
            )
            .await;
        assert_eq!(v2["version"], 2);
        // Edited an hour ago offline, based on version 1, arriving now.
        let offline = switchyard::domain::iso8601(now - 3_600_000);
        let ack = tablet
            .emit_with_ack(
                "document:update",
                doc(
                    1,
                    json!({"status": "paused", "notes": "jam on line 2"}),
                    json!(offline),
                ),
            )
            .await;
        assert_eq!(ack["ok"], true, "{db}: {ack}");
        assert_eq!(ack["status"], "merged");
        assert_eq!(ack["version"], 3);
        assert_eq!(
            ack["document"]["data"],
            json!({ "status": "running", "priority": "low", "notes": "jam on line 2" })
        );
        let conflict = tablet.expect("document:conflict").await.remove(0);
        assert_eq!(
            ack["conflict"], conflict,
            "the ack carries the same conflict"
        );
        assert_eq!(conflict["type"], "order");
        assert_eq!(conflict["id"], "7");
        assert_eq!(conflict["strategy"], "last-write-wins");
        assert_eq!(conflict["conflictedFields"], json!(["status"]));
        assert_eq!(conflict["originalValue"], json!({ "status": "running" }));
        assert_eq!(conflict["incomingValue"], json!({ "status": "paused" }));
        assert_eq!(conflict["resolvedValue"], json!({ "status": "running" }));
        assert_eq!(conflict["version"], 3);
        assert_eq!(conflict["resolution"]["status"]["winner"], "stored");
        assert_eq!(conflict["resolution"]["status"]["storedBy"], "desk");
        // A newer stale edit wins its field.
        let ack = tablet
            .emit_with_ack(
                "document:update",
                doc(1, json!({"status": "paused"}), json!(now)),
            )
            .await;
        assert_eq!(ack["status"], "merged");
        assert_eq!(ack["version"], 4);
        assert_eq!(
            ack["conflict"]["resolvedValue"],
            json!({ "status": "paused" })
        );
        assert_eq!(
            ack["conflict"]["resolution"]["status"]["winner"],
            "incoming"
        );
        assert_eq!(ack["document"]["data"]["status"], "paused");
        // A stale update of fields nobody touched since merges without conflict.
        let ack = desk
            .emit_with_ack(
                "document:update",
                doc(2, json!({"priority": "high"}), Value::Null),
            )
            .await;
        assert_eq!(ack["status"], "merged", "{ack}");
        assert_eq!(ack["conflict"], Value::Null);
        let events = desk.drain(Duration::from_millis(200)).await;
        assert!(!names(&events).contains(&"document:conflict"), "{events:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn refusals_write_nothing() {
    for db in backends() {
        let app = common::spawn_app(&db, &[("DOCUMENT_MAX_BYTES", "2048")]).await;
        let company = common::unique("c");
        let mut s = connect(&app, "s1", &company, Role::Supervisor).await;
        let mut op = connect(&app, "o1", &company, Role::Operator).await;
        let upd = |id: &str, base: i64, changes: Value| json!({ "type": "order", "id": id, "baseVersion": base, "changes": changes });
        let ok = s
            .emit_with_ack("document:update", upd("1", 0, json!({"status": "a"})))
            .await;
        assert_eq!(ok["version"], 1, "{db}: {ok}");
        let code = |ack: &Value| {
            ack["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let future = s
            .emit_with_ack("document:update", upd("1", 5, json!({"status": "b"})))
            .await;
        assert_eq!(
            (future["ok"].clone(), code(&future)),
            (json!(false), "CONFLICT".into()),
            "{future}"
        );
        assert_eq!(future["error"]["details"]["version"], 1);
        let schema = s
            .emit_with_ack("document:update", upd("1", 1, json!({"status": 5})))
            .await;
        assert_eq!(code(&schema), "VALIDATION_FAILED", "{schema}");
        assert_eq!(schema["error"]["details"]["field"], "/status");
        let big = s
            .emit_with_ack(
                "document:update",
                upd("1", 1, json!({"notes": "x".repeat(3000)})),
            )
            .await;
        assert_eq!(code(&big), "PAYLOAD_TOO_LARGE", "{big}");
        let forbidden = op
            .emit_with_ack("document:update", upd("1", 1, json!({"status": "c"})))
            .await;
        assert_eq!(code(&forbidden), "FORBIDDEN", "{forbidden}");
        let project = s
            .emit_with_ack(
                "document:update",
                json!({ "type": "project", "id": "p", "baseVersion": 0, "changes": {"a": 1} }),
            )
            .await;
        assert_eq!(
            code(&project),
            "FORBIDDEN",
            "supervisors may not write projects"
        );
        for bad in [
            json!({ "type": "order", "id": "1", "changes": {"a": 1} }),
            json!({ "type": "Order", "id": "1", "baseVersion": 1, "changes": {"a": 1} }),
            json!({ "type": "order", "id": "a/b", "baseVersion": 1, "changes": {"a": 1} }),
            json!({ "type": "order", "id": "1", "baseVersion": 1, "changes": [] }),
            json!({ "type": "order", "id": "1", "baseVersion": 1, "changes": {"status": "d"}, "editedAt": "soon" }),
            json!("order"),
        ] {
            let ack = s.emit_with_ack("document:update", bad.clone()).await;
            assert_eq!(code(&ack), "VALIDATION_FAILED", "{bad} → {ack}");
        }
        let got = s
            .emit_with_ack("document:get", json!({ "type": "order", "id": "1" }))
            .await;
        assert_eq!(got["document"]["version"], 1, "{db}: nothing was written");
        assert_eq!(got["document"]["data"], json!({"status": "a"}));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_retried_mutation_returns_the_first_ack_and_writes_and_sends_nothing() {
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let mut s = connect(&app, "s1", &company, Role::Supervisor).await;
        let mut other = connect(&app, "s2", &company, Role::Supervisor).await;
        other
            .emit_with_ack("subscribe", json!({ "room": "document:order:9" }))
            .await;
        let update = json!({ "type": "order", "id": "9", "baseVersion": 0,
                             "changes": {"status": "a"}, "clientMutationId": "m-1" });
        let first = s.emit_with_ack("document:update", update.clone()).await;
        assert_eq!(first["version"], 1, "{db}: {first}");
        other.expect("document:updated").await;
        // Someone else writes in between; the retry still answers with the
        // first outcome, and the document as it is now.
        other
            .emit_with_ack(
                "document:update",
                json!({ "type": "order", "id": "9", "baseVersion": 1, "changes": {"notes": "n"} }),
            )
            .await;
        let retry = s.emit_with_ack("document:update", update).await;
        assert_eq!(retry["duplicate"], true, "{db}: {retry}");
        assert_eq!(retry["status"], first["status"], "{db}");
        assert_eq!(retry["version"], first["version"], "{db}");
        assert_eq!(retry["document"]["version"], 2, "{db}: {retry}");
        assert_eq!(
            retry["document"]["data"],
            json!({"status": "a", "notes": "n"})
        );
        let events = other.drain(Duration::from_millis(300)).await;
        assert!(!names(&events).contains(&"document:updated"), "{events:?}");
        let got = s
            .emit_with_ack("document:get", json!({ "type": "order", "id": "9" }))
            .await;
        assert_eq!(got["document"]["version"], 2, "the retry wrote nothing");
        // Another user's identical mutation id is a different mutation.
        let theirs = other
            .emit_with_ack("document:update", json!({ "type": "order", "id": "9", "baseVersion": 2,
                                                       "changes": {"status": "b"}, "clientMutationId": "m-1" }))
            .await;
        assert_eq!(theirs["version"], 3, "{theirs}");
        app.stop().await;
    }
}

#[tokio::test]
async fn companies_never_share_a_document() {
    let app = common::spawn_app(&common::postgres_url(), &[]).await;
    let (a, b) = (common::unique("a"), common::unique("b"));
    let mut in_a = connect(&app, "s1", &a, Role::Supervisor).await;
    let mut in_b = connect(&app, "s1", &b, Role::Supervisor).await;
    in_b.emit_with_ack("subscribe", json!({ "room": "document:order:1" }))
        .await;
    let ack = in_a
        .emit_with_ack("document:update", json!({ "type": "order", "id": "1", "baseVersion": 0, "changes": {"status": "secret"} }))
        .await;
    assert_eq!(ack["version"], 1);
    let got = in_b
        .emit_with_ack("document:get", json!({ "type": "order", "id": "1" }))
        .await;
    assert_eq!(got["document"]["version"], 0);
    let ack = in_b
        .emit_with_ack(
            "document:update",
            json!({ "type": "order", "id": "1", "baseVersion": 0, "changes": {"status": "mine"} }),
        )
        .await;
    assert_eq!(
        (ack["status"].clone(), ack["version"].clone()),
        (json!("applied"), json!(1))
    );
    let events = in_b.drain(Duration::from_millis(300)).await;
    assert!(!names(&events).contains(&"document:updated"), "{events:?}");
    let got = in_a
        .emit_with_ack("document:get", json!({ "type": "order", "id": "1" }))
        .await;
    assert_eq!(got["document"]["data"], json!({"status": "secret"}));
    app.stop().await;
}

#[tokio::test]
async fn http_get_patch_and_history() {
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let http = reqwest::Client::new();
        let url = format!(
            "{}/api/v1/documents/order/55?companyId={company}",
            app.url()
        );
        let mut sub = connect(&app, "o1", &company, Role::Operator).await;
        sub.emit_with_ack("subscribe", json!({ "room": "document:order:55" }))
            .await;

        assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
        let missing = http.get(&url).bearer_auth("test-key").send().await.unwrap();
        assert_eq!(missing.status(), 404, "{db}");
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND");

        let patch = |body: Value| http.patch(&url).bearer_auth("test-key").json(&body).send();
        let res = patch(json!({ "baseVersion": 0, "changes": {"status": "new"}, "updatedBy": "erp", "clientMutationId": "x1" }))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let first: Value = res.json().await.unwrap();
        assert_eq!(
            (first["status"].clone(), first["version"].clone()),
            (json!("applied"), json!(1))
        );
        assert_eq!(first["document"]["updatedBy"], "erp");
        let updated = sub.expect("document:updated").await.remove(0);
        assert_eq!(updated["updatedBy"], "erp");
        let retry: Value = patch(json!({ "baseVersion": 0, "changes": {"status": "new"}, "updatedBy": "erp", "clientMutationId": "x1" }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(retry["version"], 1);
        assert_eq!(retry["duplicate"], true);
        let res =
            patch(json!({ "baseVersion": 1, "changes": {"priority": "high", "status": null} }))
                .await
                .unwrap();
        let second: Value = res.json().await.unwrap();
        assert_eq!(second["version"], 2, "{second}");
        assert_eq!(second["document"]["updatedBy"], "api");
        for (body, status, code) in [
            (
                json!({ "baseVersion": 9, "changes": {"a": 1} }),
                409,
                "CONFLICT",
            ),
            (
                json!({ "baseVersion": 2, "changes": {"status": 1} }),
                400,
                "VALIDATION_FAILED",
            ),
            (json!({ "changes": {"a": 1} }), 400, "VALIDATION_FAILED"),
            (
                json!({ "baseVersion": 2, "changes": {"a": 1}, "updatedBy": "a b" }),
                400,
                "VALIDATION_FAILED",
            ),
        ] {
            let res = patch(body.clone()).await.unwrap();
            assert_eq!(res.status(), status, "{body}");
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"]["code"], code, "{body}");
        }
        let bad_type = http
            .get(format!(
                "{}/api/v1/documents/Order/1?companyId={company}",
                app.url()
            ))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap();
        assert_eq!(bad_type.status(), 400);

        let got: Value = http
            .get(&url)
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["document"]["version"], 2);
        assert_eq!(got["document"]["data"], json!({"priority": "high"}));

        let history = format!(
            "{}/api/v1/documents/order/55/history?companyId={company}",
            app.url()
        );
        let page: Value = http
            .get(format!("{history}&limit=1"))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["versions"].as_array().map(Vec::len), Some(1), "{page}");
        assert_eq!(page["versions"][0]["version"], 1);
        assert_eq!(page["versions"][0]["changes"], json!({"status": "new"}));
        assert_eq!(page["versions"][0]["updatedBy"], "erp");
        assert_eq!(page["next"], 1);
        let rest: Value = http
            .get(format!("{history}&after=1"))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            rest["versions"][0]["changes"],
            json!({"priority": "high", "status": null})
        );
        assert_eq!(rest["next"], Value::Null);
        app.stop().await;
    }
}

#[tokio::test]
async fn reading_needs_a_read_role_of_the_catalog() {
    let catalog = std::env::temp_dir().join(format!("{}.json", common::unique("catalog")));
    std::fs::write(
        &catalog,
        json!({ "documents": { "payroll": { "read": ["manager"], "write": ["manager"] } } })
            .to_string(),
    )
    .expect("catalog file");
    let app = common::spawn_app(
        &common::sqlite_url(),
        &[("CATALOG_FILE", catalog.to_str().expect("utf-8 path"))],
    )
    .await;
    let company = common::unique("c");
    let mut op = connect(&app, "o1", &company, Role::Operator).await;
    let mut mgr = connect(&app, "m1", &company, Role::Manager).await;
    let ack = mgr
        .emit_with_ack("document:update", json!({ "type": "payroll", "id": "2026-11", "baseVersion": 0, "changes": {"total": 1} }))
        .await;
    assert_eq!(ack["version"], 1, "{ack}");
    let denied = op
        .emit_with_ack(
            "document:get",
            json!({ "type": "payroll", "id": "2026-11" }),
        )
        .await;
    assert_eq!(denied["error"]["code"], "FORBIDDEN", "{denied}");
    let sub = op
        .emit_with_ack("subscribe", json!({ "room": "document:payroll:2026-11" }))
        .await;
    assert_eq!(sub["denied"][0]["code"], "FORBIDDEN", "{sub}");
    let got = mgr
        .emit_with_ack(
            "document:get",
            json!({ "type": "payroll", "id": "2026-11" }),
        )
        .await;
    assert_eq!(got["document"]["data"], json!({"total": 1}));
    app.stop().await;
    let _ = std::fs::remove_file(catalog);
}

/// Many writers of one document at once (updates queued on the node share
/// a turn: one lock, one commit): every update is answered, each version
/// number is used once, the history has every version in order, and each
/// writer's field holds its last value (each update was merged against the
/// state its predecessor left). A repeated mutation id inside the rush is
/// answered with the first ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_document_uses_every_version_once() {
    const WRITERS: usize = 8;
    const EACH: i64 = 25;
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let mut tasks = Vec::new();
        for k in 0..WRITERS {
            let mut c = connect(&app, &format!("s{k}"), &company, Role::Supervisor).await;
            tasks.push(tokio::spawn(async move {
                let mut base = 0;
                let mut versions = Vec::new();
                for i in 0..EACH {
                    let update = json!({ "type": "order", "id": "hot", "baseVersion": base,
                                         "changes": { format!("f{k}"): i },
                                         "clientMutationId": format!("m{i}") });
                    // Two sockets of writer 0 would be one user; here the same
                    // socket sends the same mutation twice, without waiting.
                    let (first, again) = if k == 0 && i == 3 {
                        let a = c.emit_ack_id("document:update", update.clone());
                        let b = c.emit_ack_id("document:update", update);
                        (c.ack(a).await, Some(c.ack(b).await))
                    } else {
                        (c.emit_with_ack("document:update", update).await, None)
                    };
                    assert_eq!(first["ok"], true, "{first}");
                    assert!(
                        first["status"] == "applied" || first["status"] == "merged",
                        "{first}"
                    );
                    assert!(first["conflict"].is_null(), "{first}");
                    let v = first["version"].as_i64().unwrap();
                    if let Some(again) = again {
                        assert_eq!(again["version"], v, "{again}");
                    }
                    versions.push(v);
                    base = v;
                }
                versions
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let versions = t.await.unwrap();
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
            all.extend(versions);
        }
        all.sort();
        let n = (WRITERS as i64) * EACH;
        assert_eq!(all, (1..=n).collect::<Vec<_>>(), "{db}: each version once");
        let mut reader = connect(&app, "r", &company, Role::Supervisor).await;
        let got = reader
            .emit_with_ack("document:get", json!({ "type": "order", "id": "hot" }))
            .await;
        assert_eq!(got["document"]["version"], n, "{db}: {got}");
        for k in 0..WRITERS {
            assert_eq!(got["document"]["data"][format!("f{k}")], EACH - 1, "{db}");
        }
        app.stop().await;
    }
}

/// Updates of many documents at once (two writers on each of 20
/// documents, 15 updates each, without pauses) share transactions (the
/// documents' `writer`): every document still uses each version once,
/// each writer sees its versions rise, every writer's last value is in
/// the document, and on PostgreSQL the 600 history rows come from far
/// fewer commits than updates (at least 300 without the shared ones: a
/// turn of one document can take at most its two writers' updates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_many_documents_share_commits_and_each_uses_every_version_once() {
    const DOCS: usize = 20;
    const EACH: i64 = 15;
    let pg = common::fresh_postgres("sy_docbatch_").await;
    for db in [common::sqlite_url(), pg.clone()] {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        let mut tasks = Vec::new();
        for w in 0..DOCS * 2 {
            let mut c = connect(&app, &format!("w{w}"), &company, Role::Supervisor).await;
            let doc = format!("d{}", w % DOCS);
            tasks.push(tokio::spawn(async move {
                let mut base = 0;
                let mut versions = Vec::new();
                for i in 0..EACH {
                    let ack = c
                        .emit_with_ack(
                            "document:update",
                            json!({ "type": "order", "id": doc, "baseVersion": base,
                                    "changes": { format!("w{w}"): i },
                                    "clientMutationId": format!("w{w}-{i}") }),
                        )
                        .await;
                    assert_eq!(ack["ok"], true, "{ack}");
                    base = ack["version"].as_i64().unwrap();
                    versions.push(base);
                }
                (doc, versions)
            }));
        }
        let mut by_doc: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        for t in tasks {
            let (doc, versions) = t.await.unwrap();
            assert!(versions.windows(2).all(|v| v[0] < v[1]), "{versions:?}");
            by_doc.entry(doc).or_default().extend(versions);
        }
        let mut reader = connect(&app, "r", &company, Role::Supervisor).await;
        for (doc, mut versions) in by_doc {
            versions.sort();
            assert_eq!(versions, (1..=2 * EACH).collect::<Vec<_>>(), "{db} {doc}");
            let got = reader
                .emit_with_ack("document:get", json!({ "type": "order", "id": doc }))
                .await;
            assert_eq!(got["document"]["version"], 2 * EACH, "{db}: {got}");
            let n: usize = doc[1..].parse().unwrap();
            for w in [n, n + DOCS] {
                assert_eq!(
                    got["document"]["data"][format!("w{w}")],
                    EACH - 1,
                    "{db}: {got}"
                );
            }
        }
        app.stop().await;
        if db == pg {
            let pool = sqlx::PgPool::connect(&pg).await.expect("postgres");
            let commits: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT xmin::text) FROM document_versions WHERE company_id = $1",
            )
            .bind(&company)
            .fetch_one(&pool)
            .await
            .expect("count");
            pool.close().await;
            let updates = 2 * DOCS as i64 * EACH;
            eprintln!("{updates} updates of {DOCS} documents in {commits} commits");
            assert!(
                commits <= updates / 3,
                "{updates} updates took {commits} commits"
            );
        }
    }
    common::drop_postgres(&pg).await;
}
