//! The durable-write breaker (`store::breaker`) on PostgreSQL: a pool with
//! every connection busy on a healthy database is load, not an outage. A
//! write that times out waiting for a connection fails, but the breaker
//! stays closed, so the writes after it are not refused `UNAVAILABLE` for
//! as long as the pool stays busy. (A database that is really down still
//! opens it: `tests/outage.rs`, `tests/hot_document_outage.rs`.)

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::store::breaker::Breaker;
use switchyard::store::documents::{DocKey, LockWait, Wanted};
use switchyard::store::{self, NewEvent, StoreError};
use switchyard::tasks::Tasks;

/// PostgreSQL pools hold this many connections (`store::postgres`).
const POOL: usize = 16;

fn event(company: &str) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        company_id: company.into(),
        event_type: "order:status_changed".into(),
        rooms: vec![format!("company:{company}")],
        payload: json!({ "orderId": "1" }),
        priority: "medium".into(),
        source: "test".into(),
        publisher: Some("u1".into()),
        created_at: 1,
        expires_at: i64::MAX / 2,
        idempotency_key: None,
        webhooks: Vec::new(),
    }
}

#[tokio::test]
async fn a_busy_pool_on_a_healthy_database_does_not_open_the_breaker() {
    let url = common::fresh_postgres("sy_breaker_").await;
    let store = store::connect(&url).await.expect("postgres");
    store.migrate().await.expect("migrations");
    let company = common::unique("c");
    let tasks = Tasks::new();
    let breaker = Breaker::new(store.clone(), tasks.clone());

    // Every pooled connection held by an open transaction.
    let mut held = Vec::new();
    for i in 0..POOL {
        let wanted = Wanted {
            key: DocKey {
                company_id: company.clone(),
                doc_type: "order".into(),
                doc_id: format!("d{i}"),
            },
            mutation_keys: Vec::new(),
        };
        held.push(
            store
                .lock_documents(vec![wanted], LockWait::Wait)
                .await
                .expect("a pooled connection"),
        );
    }

    let started = Instant::now();
    let first = breaker
        .run(Duration::from_secs(10), store.append(vec![event(&company)]))
        .await;
    assert!(
        matches!(first, Err(StoreError::Db(sqlx::Error::PoolTimedOut))),
        "the write waits out the pool's acquire timeout: {:?} after {:?}",
        first.map(|_| ()),
        started.elapsed()
    );
    assert!(
        breaker.check().is_ok(),
        "the database answers: a busy pool must not open the breaker"
    );

    drop(held);
    let appended = breaker
        .run(Duration::from_secs(10), store.append(vec![event(&company)]))
        .await
        .expect("the pool is free again: the write goes through");
    assert_eq!(appended.len(), 1);
    tasks.shutdown(Duration::from_secs(1)).await;
    common::drop_postgres(&url).await;
}
