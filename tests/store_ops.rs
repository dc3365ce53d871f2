//! Contract tests of `OpsStore` on both backends: the offline-queue backlog
//! behind `websocket_queued_messages`, and pool use.

mod common;

use serde_json::json;
use switchyard::store::{CursorKey, NewEvent};

fn event(company: &str, room: &str) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        company_id: company.into(),
        event_type: "order:status_changed".into(),
        rooms: vec![room.to_string()],
        payload: json!({ "orderId": "1" }),
        priority: "medium".into(),
        source: "test".into(),
        publisher: None,
        created_at: 1,
        expires_at: i64::MAX / 2,
        idempotency_key: None,
        webhooks: Vec::new(),
    }
}

fn device(company: &str, id: &str) -> CursorKey {
    CursorKey {
        company_id: company.into(),
        user_id: "u1".into(),
        device_id: id.into(),
    }
}

#[tokio::test]
async fn backlog_sums_what_recent_devices_have_not_received() {
    // Cursors stamped far in the future and a `seen_since` just before keep
    // other tests' cursors out; earlier runs of this test left such cursors
    // too (the shared database keeps them), so the test measures the change.
    let stamp = i64::MAX / 4;
    for (name, store) in common::stores().await {
        let c = common::unique("ops-");
        for _ in 0..3 {
            store
                .append(vec![event(&c, "company")])
                .await
                .expect("append");
        }
        for _ in 0..2 {
            store
                .append(vec![event(&c, "user:u1")])
                .await
                .expect("append");
        }
        let before = store.offline_backlog(stamp - 1).await.expect("backlog");
        let behind = [("company".to_string(), 1), ("user:u1".to_string(), 0)];
        store
            .save_cursors(&device(&c, "behind"), &behind, stamp)
            .await
            .expect("save");
        let caught_up = [("company".to_string(), 3), ("user:u1".to_string(), 2)];
        store
            .save_cursors(&device(&c, "current"), &caught_up, stamp)
            .await
            .expect("save");
        // A new device's user room has no cursor row (none means 0): its 2
        // events there count.
        let first = [("company".to_string(), 3)];
        store
            .save_cursors(&device(&c, "new"), &first, stamp)
            .await
            .expect("save");
        // Seen too long ago (before `seen_since`): not counted.
        let old = [("company".to_string(), 0)];
        store
            .save_cursors(&device(&c, "gone"), &old, stamp - 10)
            .await
            .expect("save");
        let backlog = store.offline_backlog(stamp - 1).await.expect("backlog");
        assert_eq!(backlog - before, 2 + 2 + 2, "{name}");
        for pool in store.pool_use() {
            assert!(
                pool.max >= 1 && pool.in_use + pool.idle <= pool.max,
                "{name}: {pool:?}"
            );
        }
    }
}
