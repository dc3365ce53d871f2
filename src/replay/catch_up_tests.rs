//! Unit tests of [`super`]: which shared read a page may come from.

use std::pin::pin;
use std::sync::Arc;

use serde_json::json;

use super::super::{DurableHub, Member};
use super::Page;
use crate::catalog::Catalog;
use crate::domain::{Role, SessionId, now_ms};
use crate::replay::feed::tests::TestSink;
use crate::store::{NewEvent, Store, scratch_sqlite};
use crate::tasks::Tasks;

const COMPANY: &str = "c";
const ROOM: &str = "company";

async fn append(store: &Arc<dyn Store>, n: u32) {
    let event = NewEvent {
        id: format!("e{n}"),
        company_id: COMPANY.into(),
        event_type: "order:status_changed".into(),
        rooms: vec![ROOM.into()],
        payload: json!({ "n": n }),
        priority: "medium".into(),
        source: "test".into(),
        publisher: None,
        created_at: now_ms(),
        expires_at: now_ms() + 3_600_000,
        idempotency_key: None,
        webhooks: Vec::new(),
    };
    store.append(vec![event]).await.expect("append");
}

/// A member of the room at `last`, attached now and catching up.
fn member(hub: &DurableHub, last: i64) -> Arc<Member> {
    let m = Member::new(
        Arc::new(TestSink(Default::default())),
        SessionId::new(),
        Role::Operator,
        COMPANY,
        ROOM,
        last,
    );
    hub.feeds.attach(m.clone());
    m
}

fn offsets(page: Result<Page, super::Stop>) -> Vec<i64> {
    match page {
        Ok(page) => page.iter().map(|e| e.offset).collect(),
        Err(_) => panic!("the read failed"),
    }
}

/// The race a later page's rule is for: a member that missed a
/// notification while catching up reads again; a shared read that began
/// before that call (though after the member joined) may predate the
/// notified event, and going live after it would skip that event.
#[tokio::test]
async fn a_later_page_never_comes_from_a_read_that_began_before_it_was_asked_for() {
    let store = scratch_sqlite().await;
    let catalog = Arc::new(Catalog::load(None).expect("builtin catalog"));
    let hub = DurableHub::new(store.clone(), catalog, Tasks::new());
    append(&store, 1).await;
    append(&store, 2).await;
    let (m, n, x) = (member(&hub, 2), member(&hub, 2), member(&hub, 2));

    // N reads its next page after 2 and X joins that read. X is never
    // polled again, so the read stays open for joining once N has it.
    let (mut n_first, mut x_first) = (false, false);
    let mut n_fetch = pin!(hub.fetch(&n, &mut n_first));
    let mut x_fetch = pin!(hub.fetch(&x, &mut x_first));
    assert!(futures::poll!(n_fetch.as_mut()).is_pending());
    assert!(futures::poll!(x_fetch.as_mut()).is_pending());
    assert_eq!(offsets(n_fetch.await), Vec::<i64>::new());

    // Event 3 commits after that read began; M, catching up, misses its
    // notification and must read again.
    append(&store, 3).await;
    let stored = store
        .events_after(COMPANY, ROOM, 2, 1, now_ms())
        .await
        .expect("read")
        .pop()
        .expect("event 3");
    hub.notify_local(&hub.log_event(COMPANY, stored, None));
    assert!(!m.finish_catch_up(), "the notification was missed");

    let mut m_first = false;
    assert_eq!(
        offsets(hub.fetch(&m, &mut m_first).await),
        vec![3],
        "a read that began before this page was asked for can miss event 3"
    );
}
