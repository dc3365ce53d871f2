//! WebhookStore contract tests: the same cases on PostgreSQL and SQLite.
//! Each test gets fresh databases: a claim takes every due row of a
//! database, whoever wrote it.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use switchyard::store::webhooks::{Endpoint, NewDelivery, Outcome};
use switchyard::store::{self, NewEvent, OutboxEntry, Store};

async fn fresh_stores() -> Vec<(&'static str, Arc<dyn Store>, Option<String>)> {
    let pg_url = common::fresh_postgres("sy_hooks_").await;
    let pg = store::connect(&pg_url).await.expect("postgres");
    pg.migrate().await.expect("migrations");
    let lite = store::connect(&common::sqlite_url()).await.expect("sqlite");
    lite.migrate().await.expect("migrations");
    vec![("postgres", pg, Some(pg_url)), ("sqlite", lite, None)]
}

async fn cleanup(url: Option<String>) {
    if let Some(url) = url {
        common::drop_postgres(&url).await;
    }
}

fn endpoint(id: &str, company: &str) -> Endpoint {
    Endpoint {
        id: id.into(),
        company_id: company.into(),
        url: "https://hooks.example.com/in".into(),
        secret: "whsec_0123456789abcdef".into(),
        types: vec!["alarm".into()],
        min_priority: Some("high".into()),
        description: None,
        created_at: 10,
    }
}

fn event(company: &str, hooks: &[&str], key: Option<&str>, at: i64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        company_id: company.into(),
        event_type: "alarm".into(),
        rooms: vec!["company".into()],
        payload: json!({ "n": 1 }),
        priority: "critical".into(),
        source: "test".into(),
        publisher: None,
        created_at: at,
        expires_at: i64::MAX / 2,
        idempotency_key: key.map(String::from),
        webhooks: hooks
            .iter()
            .map(|h| OutboxEntry {
                endpoint_id: h.to_string(),
                body: format!("{{\"for\":\"{h}\"}}"),
            })
            .collect(),
    }
}

#[tokio::test]
async fn endpoints_are_created_listed_and_deleted_with_their_outbox() {
    for (backend, store, url) in fresh_stores().await {
        store.create_webhook(&endpoint("w1", "acme")).await.unwrap();
        store.create_webhook(&endpoint("w2", "acme")).await.unwrap();
        store
            .create_webhook(&endpoint("w3", "other"))
            .await
            .unwrap();
        let acme = store.webhooks(Some("acme")).await.unwrap();
        assert_eq!(
            acme.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["w1", "w2"],
            "{backend}"
        );
        assert_eq!(acme[0], endpoint("w1", "acme"), "{backend}: round trip");
        assert_eq!(store.webhooks(None).await.unwrap().len(), 3, "{backend}");
        assert!(store.webhook("nope").await.unwrap().is_none());
        store
            .append(vec![event("acme", &["w1", "w2"], None, 100)])
            .await
            .unwrap();
        assert_eq!(store.outbox_counts().await.unwrap(), (2, 0), "{backend}");
        assert!(store.delete_webhook("w1").await.unwrap(), "{backend}");
        assert!(!store.delete_webhook("w1").await.unwrap(), "{backend}");
        assert_eq!(
            store.outbox_counts().await.unwrap(),
            (1, 0),
            "{backend}: w1's row went"
        );
        // A node whose cache still had a deleted endpoint: the row is never
        // claimed, and pruning removes it.
        store
            .append(vec![event("acme", &["w1"], None, 100)])
            .await
            .unwrap();
        let claimed = store
            .claim_deliveries("n", 1_000, 60_000, 10)
            .await
            .unwrap();
        assert!(claimed.iter().all(|c| c.endpoint_id == "w2"), "{backend}");
        assert_eq!(store.prune_deliveries(0).await.unwrap(), 1, "{backend}");
        cleanup(url).await;
    }
}

#[tokio::test]
async fn outbox_rows_ride_the_append_and_are_written_once() {
    for (backend, store, url) in fresh_stores().await {
        store.create_webhook(&endpoint("w1", "acme")).await.unwrap();
        let first = event("acme", &["w1"], Some("k1"), 100);
        let dup = event("acme", &["w1"], Some("k1"), 100);
        store.append(vec![first.clone()]).await.unwrap();
        let again = store.append(vec![dup]).await.unwrap();
        assert!(again[0].duplicate, "{backend}");
        assert_eq!(
            store.outbox_counts().await.unwrap().0,
            1,
            "{backend}: duplicate adds none"
        );
        // A lifecycle delivery enqueued twice is one row.
        let row = NewDelivery {
            endpoint_id: "w1".into(),
            company_id: "acme".into(),
            event_id: "presence-1".into(),
            event_type: "user:online".into(),
            body: "{}".into(),
        };
        store
            .enqueue_deliveries(&[row.clone(), row], 200)
            .await
            .unwrap();
        assert_eq!(store.outbox_counts().await.unwrap().0, 2, "{backend}");
        let claimed = store
            .claim_deliveries("n1", 1_000, 60_000, 10)
            .await
            .unwrap();
        let ids: HashSet<_> = claimed.iter().map(|c| c.event_id.clone()).collect();
        assert_eq!(
            ids,
            HashSet::from([first.id.clone(), "presence-1".to_string()]),
            "{backend}"
        );
        let c = claimed.iter().find(|c| c.event_id == first.id).unwrap();
        assert_eq!(c.url, "https://hooks.example.com/in");
        assert_eq!(c.secret, "whsec_0123456789abcdef");
        assert_eq!(c.body, "{\"for\":\"w1\"}");
        assert_eq!((c.attempts, c.schedule_from), (1, 100), "{backend}");
        cleanup(url).await;
    }
}

#[tokio::test]
async fn leases_retries_dead_letters_and_redelivery() {
    for (backend, store, url) in fresh_stores().await {
        store.create_webhook(&endpoint("w1", "acme")).await.unwrap();
        let ev = event("acme", &["w1"], None, 100);
        store.append(vec![ev.clone()]).await.unwrap();
        let c = store.claim_deliveries("a", 1_000, 5_000, 10).await.unwrap();
        assert_eq!(c.len(), 1, "{backend}");
        let id = c[0].id;
        // Leased: nobody else gets it until the lease ends.
        assert!(
            store
                .claim_deliveries("b", 5_999, 5_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // The lease ran out: another node takes it; the first can no longer finish it.
        let c = store.claim_deliveries("b", 6_000, 5_000, 10).await.unwrap();
        assert_eq!((c.len(), c[0].attempts), (1, 2), "{backend}");
        let retry = Outcome::Retry {
            next_at: 20_000,
            status: Some(500),
            error: "HTTP 500".into(),
        };
        assert!(
            !store.finish_delivery(id, "a", &retry, 6_100).await.unwrap(),
            "{backend}"
        );
        assert!(
            store.finish_delivery(id, "b", &retry, 6_100).await.unwrap(),
            "{backend}"
        );
        assert!(
            store
                .claim_deliveries("c", 19_999, 5_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let c = store
            .claim_deliveries("c", 20_000, 5_000, 10)
            .await
            .unwrap();
        assert_eq!(c[0].attempts, 3, "{backend}");
        let dead = Outcome::Dead {
            status: None,
            error: "connection refused".into(),
        };
        assert!(store.finish_delivery(id, "c", &dead, 21_000).await.unwrap());
        assert!(
            store
                .claim_deliveries("d", 99_999, 5_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let stats = store.delivery_stats("w1").await.unwrap();
        assert_eq!(
            (stats.pending, stats.delivered, stats.dead),
            (0, 0, 1),
            "{backend}"
        );
        assert_eq!(store.outbox_counts().await.unwrap(), (0, 1), "{backend}");
        let letters = store.dead_letters("w1", 10).await.unwrap();
        assert_eq!(letters.len(), 1, "{backend}");
        assert_eq!(letters[0].event_id, ev.id);
        assert_eq!(letters[0].attempts, 3);
        assert_eq!(letters[0].last_error.as_deref(), Some("connection refused"));
        assert_eq!(letters[0].failed_at, Some(21_000));
        // Redelivery: due at once, a fresh window, attempts from zero.
        assert!(
            !store.redeliver("w2", id, 30_000).await.unwrap(),
            "other endpoint"
        );
        assert!(
            store.redeliver("w1", id, 30_000).await.unwrap(),
            "{backend}"
        );
        assert!(
            !store.redeliver("w1", id, 30_000).await.unwrap(),
            "no longer dead"
        );
        let c = store
            .claim_deliveries("e", 30_000, 5_000, 10)
            .await
            .unwrap();
        assert_eq!(
            (c[0].attempts, c[0].schedule_from),
            (1, 30_000),
            "{backend}"
        );
        assert!(
            store
                .finish_delivery(id, "e", &Outcome::Delivered { status: 204 }, 30_500)
                .await
                .unwrap()
        );
        let stats = store.delivery_stats("w1").await.unwrap();
        assert_eq!(
            (stats.pending, stats.delivered, stats.dead),
            (0, 1, 0),
            "{backend}"
        );
        assert_eq!(stats.last_delivered_at, Some(30_500));
        assert_eq!(
            store.prune_deliveries(30_000).await.unwrap(),
            0,
            "{backend}"
        );
        assert_eq!(
            store.prune_deliveries(30_501).await.unwrap(),
            1,
            "{backend}"
        );
        cleanup(url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_row() {
    for (backend, store, url) in fresh_stores().await {
        store.create_webhook(&endpoint("w1", "acme")).await.unwrap();
        let batch: Vec<NewEvent> = (0..300)
            .map(|_| event("acme", &["w1"], None, 100))
            .collect();
        store.append(batch).await.unwrap();
        let mut workers = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let c = store
                        .claim_deliveries(&format!("w{w}"), 1_000, 60_000, 7)
                        .await
                        .unwrap();
                    if c.is_empty() {
                        return got;
                    }
                    got.extend(c.into_iter().map(|c| c.id));
                }
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 300, "{backend}: every row claimed");
        assert_eq!(unique.len(), 300, "{backend}: no row claimed twice");
        cleanup(url).await;
    }
}
