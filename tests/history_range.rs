//! `GET /api/v1/events` by time range over HTTP, on SQLite and Postgres:
//! cursor pages, type and room filters, the NDJSON export, field-naming
//! refusals, and the offset history still answering as before.

mod common;

use std::collections::HashSet;

use serde_json::{Value, json};

async fn publish(base: &str, company: &str) -> (Vec<String>, Vec<String>) {
    let mut events = Vec::new();
    for i in 0..15 {
        events.push(json!({
            "type": "order:status_changed", "companyId": company, "rooms": ["order:1"],
            "payload": { "orderId": "1", "oldStatus": "a", "newStatus": format!("s{i}"), "timestamp": "2026-11-22T10:00:00Z" }
        }));
    }
    for i in 0..10 {
        events.push(json!({
            "type": "order:created", "companyId": company, "rooms": ["order:2"],
            "payload": { "orderId": format!("o{i}"), "orderNumber": "n" }
        }));
    }
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/events"))
        .bearer_auth("test-key")
        .json(&Value::Array(events))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let ids: Vec<String> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    (ids[..15].to_vec(), ids[15..].to_vec())
}

async fn get(url: &str, accept: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url).bearer_auth("test-key");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_ranges_page_filter_and_stream_on_both_backends() {
    for (backend, db) in [
        ("sqlite", common::sqlite_url()),
        ("postgres", common::postgres_url()),
    ] {
        let app = common::spawn_app(&db, &[]).await;
        let base = app.url();
        let company = common::unique("c");
        let from = switchyard::domain::now_ms() - 1000;
        let (status_ids, created_ids) = publish(&base, &company).await;
        let to = switchyard::domain::iso8601(switchyard::domain::now_ms() + 1000);
        let range = format!("{base}/api/v1/events?companyId={company}&from={from}&to={to}");

        // Pages of 10 through 25 events, each once, in time order.
        let mut seen = Vec::new();
        let mut url = format!("{range}&limit=10");
        let mut pages = 0;
        loop {
            let (status, body) = get(&url, None).await;
            assert_eq!(status, 200, "{backend}: {body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            pages += 1;
            for e in body["events"].as_array().unwrap() {
                seen.push(e["id"].as_str().unwrap().to_string());
                assert!(e.get("room").is_none(), "no room asked");
            }
            match body["next"].as_str() {
                Some(cursor) => url = format!("{range}&limit=10&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{backend}");
        let all: Vec<String> = status_ids.iter().chain(&created_ids).cloned().collect();
        assert_eq!(seen.len(), 25, "{backend}");
        assert_eq!(
            seen.iter().collect::<HashSet<_>>(),
            all.iter().collect::<HashSet<_>>(),
            "{backend}"
        );

        // Types and room.
        let (_, body) = get(&format!("{range}&types=order:created"), None).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        let ids: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids, created_ids,
            "{backend}: the order they were appended in"
        );
        let (_, body) = get(&format!("{range}&room=order:1&limit=1000"), None).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        let events = body["events"].as_array().unwrap();
        assert_eq!(events.len(), 15, "{backend}");
        assert_eq!(events[14]["room"], "order:1");
        assert_eq!(events[14]["offset"], 15);
        assert_eq!(events[14]["payload"]["newStatus"], "s14");
        assert_eq!(body["next"], Value::Null);
        // A range that ends before the events began is empty.
        let (_, body) = get(
            &format!("{base}/api/v1/events?companyId={company}&from=0&to={from}"),
            None,
        )
        .await;
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["events"],
            json!([])
        );

        // NDJSON: the whole range, one event per line, whatever `limit` says.
        let (status, text) = get(&format!("{range}&limit=2"), Some("application/x-ndjson")).await;
        assert_eq!(status, 200);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 25, "{backend}");
        assert_eq!(
            lines
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
            seen,
            "{backend}: the same order as the pages"
        );

        // Refusals name the field; the offset history is unchanged.
        let (status, body) = get(&format!("{range}&cursor=nothex"), None).await;
        assert_eq!(status, 400);
        assert!(body.contains("cursor"), "{body}");
        let (status, body) = get(
            &format!("{base}/api/v1/events?companyId={company}&from=yesterday"),
            None,
        )
        .await;
        assert_eq!(status, 400);
        assert!(body.contains("\"field\":\"from\""), "{body}");
        let (status, body) = get(
            &format!("{base}/api/v1/events?companyId={company}&room=order:1&after=10"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["events"].as_array().unwrap().len(), 5, "{backend}");
        assert_eq!(body["events"][0]["offset"], 11);
        app.stop().await;
    }
}
