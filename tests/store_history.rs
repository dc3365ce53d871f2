//! HistoryStore contract tests (events by time range): the same cases on
//! PostgreSQL and SQLite.

mod common;

use serde_json::json;
use switchyard::store::{NewEvent, RangeQuery};

const DAY: i64 = 86_400_000;

fn event(company: &str, ty: &str, rooms: &[&str], at: i64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        company_id: company.into(),
        event_type: ty.into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        payload: json!({ "at": at }),
        priority: "medium".into(),
        source: "test".into(),
        publisher: None,
        created_at: at,
        expires_at: i64::MAX / 2,
        idempotency_key: None,
        webhooks: Vec::new(),
    }
}

fn query(company: &str, from: i64, to: i64, limit: i64) -> RangeQuery {
    RangeQuery {
        company_id: company.into(),
        room: None,
        types: Vec::new(),
        from,
        to,
        after: None,
        limit,
    }
}

#[tokio::test]
async fn ranges_page_by_time_and_filter_by_room_and_type() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        // Three days, 10 events a day, alternating types and rooms; two
        // events share a timestamp (the id breaks the tie).
        let mut batch = Vec::new();
        for day in 0..3 {
            for i in 0..10 {
                let ty = if i % 2 == 0 { "a" } else { "b" };
                let room = if i % 3 == 0 { "order:1" } else { "order:2" };
                let at = day * DAY + (i.min(8)) * 1000;
                batch.push(event(&company, ty, &["company", room], at));
            }
        }
        store.append(batch.clone()).await.unwrap();
        store
            .append(vec![event("someone-else", "a", &["company"], 5)])
            .await
            .unwrap();

        // Day 1, paged by 4: 10 events, in (time, id) order, each once.
        let mut q = query(&company, DAY, 2 * DAY, 4);
        let mut seen = Vec::new();
        loop {
            let page = store.events_in_range(&q).await.unwrap();
            seen.extend(page.iter().map(|e| (e.created_at, e.id.clone())));
            if (page.len() as i64) < q.limit {
                break;
            }
            let last = page.last().unwrap();
            q.after = Some((last.created_at, last.id.clone()));
        }
        let mut want: Vec<(i64, String)> = batch[10..20]
            .iter()
            .map(|e| (e.created_at, e.id.clone()))
            .collect();
        want.sort();
        assert_eq!(seen, want, "{backend}");

        // [from, to): an event at `to` is not included, one at `from` is.
        let edge = store
            .events_in_range(&query(&company, DAY, DAY + 1000, 100))
            .await
            .unwrap();
        assert_eq!(edge.len(), 1, "{backend}");
        assert_eq!(edge[0].created_at, DAY);
        assert_eq!(
            edge[0].room, None,
            "{backend}: no room asked, none reported"
        );

        // Types, and a room (with its offsets).
        let mut q = query(&company, 0, 3 * DAY, 100);
        q.types = vec!["a".into()];
        let only_a = store.events_in_range(&q).await.unwrap();
        assert_eq!(only_a.len(), 15, "{backend}");
        assert!(only_a.iter().all(|e| e.event_type == "a"));
        q.types = vec!["a".into(), "b".into()];
        assert_eq!(store.events_in_range(&q).await.unwrap().len(), 30);
        q.types = Vec::new();
        q.room = Some("order:1".into());
        let room = store.events_in_range(&q).await.unwrap();
        assert_eq!(room.len(), 12, "{backend}: i = 0, 3, 6, 9 on each day");
        assert!(room.iter().all(|e| e.room.as_deref() == Some("order:1")));
        let offsets: Vec<i64> = room.iter().filter_map(|e| e.offset).collect();
        assert_eq!(offsets, (1..=12).collect::<Vec<_>>(), "{backend}");
        q.types = vec!["b".into()];
        assert_eq!(
            store.events_in_range(&q).await.unwrap().len(),
            6,
            "{backend}"
        );
        assert_eq!(room[0].payload, json!({ "at": 0 }));
    }
}
