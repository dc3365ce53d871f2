//! Batched cursor saves (`store::cursor_batch`), both stores: many devices
//! saving at once are written in a few statements, and every device still
//! ends with exactly its own cursors, each at the furthest offset saved. A
//! save lost from a batch, or rows handed to the wrong device, fails here.

mod common;

use std::sync::Arc;

use futures::future::join_all;
use switchyard::store::CursorKey;
use switchyard::store::cursor_batch::CursorWriter;
use switchyard::tasks::Tasks;

fn device(company: &str, i: i64) -> CursorKey {
    CursorKey {
        company_id: company.to_string(),
        user_id: format!("u{i}"),
        device_id: if i % 2 == 0 {
            String::new()
        } else {
            format!("d{i}")
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_saving_at_once_each_keep_their_own_furthest_cursors() {
    const DEVICES: i64 = 300;
    for (backend, store) in common::stores().await {
        let (a, b) = (common::unique("ca"), common::unique("cb"));
        let company_of = |i: i64| if i % 3 == 0 { b.clone() } else { a.clone() };
        let writer = Arc::new(CursorWriter::new(store.clone(), &Tasks::new()));
        // Each device saves twice at once, the further offset second or
        // first depending on the device, so batches see both orders.
        let saves = (0..DEVICES).flat_map(|i| {
            let key = device(&company_of(i), i);
            let (near, far) = (
                vec![("company".to_string(), i), (format!("user:u{i}"), 1)],
                vec![("company".to_string(), i + 5)],
            );
            let (first, second) = if i % 2 == 0 { (near, far) } else { (far, near) };
            [first, second].map(|cursors| {
                let (writer, key) = (writer.clone(), key.clone());
                tokio::spawn(async move { writer.save(&key, &cursors, 1).await })
            })
        });
        for saved in join_all(saves).await {
            saved.unwrap().unwrap_or_else(|e| panic!("{backend}: {e}"));
        }
        for i in 0..DEVICES {
            let got = store
                .load_cursors(&device(&company_of(i), i))
                .await
                .unwrap();
            let want = [("company".to_string(), i + 5), (format!("user:u{i}"), 1)];
            assert_eq!(got, want.into_iter().collect(), "{backend} device {i}");
        }
    }
}

/// Shutdown cancels the writer task while departures that began just
/// before it are still saving their last cursors: those saves must still
/// reach the store (else the devices get their last events again).
#[tokio::test]
async fn saves_after_the_writer_stopped_still_reach_the_store() {
    for (backend, store) in common::stores().await {
        let company = common::unique("cs");
        let tasks = Tasks::new();
        let writer = CursorWriter::new(store.clone(), &tasks);
        let key = device(&company, 1);
        writer
            .save(&key, &[("company".to_string(), 3)], 1)
            .await
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(tasks.shutdown(std::time::Duration::from_secs(5)).await);
        writer
            .save(&key, &[("company".to_string(), 9)], 2)
            .await
            .unwrap_or_else(|e| panic!("{backend} after shutdown: {e}"));
        let got = store.load_cursors(&key).await.unwrap();
        assert_eq!(
            got,
            [("company".to_string(), 9)].into_iter().collect(),
            "{backend}"
        );
    }
}
