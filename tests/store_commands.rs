//! Command store contract (SPEC §13): the same cases on PostgreSQL and
//! SQLite. Each transition is made by exactly one caller even when many
//! race for it; expiry fails each open command once; idempotency keys
//! return the first command; retention deletes finished commands only.

mod common;

use std::sync::Arc;

use serde_json::json;
use switchyard::domain::command::{Status, Step};
use switchyard::store::Store;
use switchyard::store::commands::{ANNOUNCE_GRACE_MS, NewCommand, Outcome, TIMEOUT_CODE};

fn command(company: &str, target: &str, created_at: i64, timeout_ms: i64) -> NewCommand {
    NewCommand {
        id: common::unique("cmd"),
        company_id: company.into(),
        target: target.into(),
        name: "pump:start".into(),
        args: json!({"rpm": 1200}),
        sender: Some("u1".into()),
        timeout_ms,
        created_at,
        idempotency_key: None,
    }
}

#[tokio::test]
async fn a_command_goes_through_every_state_with_its_times() {
    for (backend, store) in common::stores().await {
        let company = common::unique("co");
        let c = command(&company, "device:p1", 1_000, 5_000);
        let first = store.insert_command(&c).await.unwrap();
        assert!(!first.duplicate);
        assert_eq!(first.command.status, Status::Queued, "{backend}");
        assert_eq!(first.command.deadline_at, 6_000, "{backend}");
        let none = Outcome::default();
        let sent = store
            .transition_command(&company, &c.id, Step::Deliver, 1_100, &none)
            .await
            .unwrap()
            .expect("queued → sent");
        assert_eq!((sent.status, sent.sent_at), (Status::Sent, Some(1_100)));
        let acked = store
            .transition_command(
                &company,
                &c.id,
                Step::Ack,
                1_200,
                &Outcome {
                    deadline_at: Some(6_200),
                    answered_by: Some("dev1".into()),
                    ..Outcome::default()
                },
            )
            .await
            .unwrap()
            .expect("sent → acked");
        assert_eq!(
            acked.deadline_at, 6_200,
            "{backend}: the ack moves the deadline"
        );
        // A second ack finds no `sent` command: refused by the guard.
        assert!(
            store
                .transition_command(&company, &c.id, Step::Ack, 1_250, &none)
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );
        let done = store
            .transition_command(
                &company,
                &c.id,
                Step::Succeed,
                1_300,
                &Outcome {
                    actual_value: Some(json!({"rpm": 1190})),
                    ..Outcome::default()
                },
            )
            .await
            .unwrap()
            .expect("acked → succeeded");
        assert_eq!(done.status, Status::Succeeded);
        assert_eq!(done.actual_value, Some(json!({"rpm": 1190})));
        assert_eq!(
            (
                done.created_at,
                done.sent_at,
                done.acked_at,
                done.finished_at
            ),
            (1_000, Some(1_100), Some(1_200), Some(1_300)),
            "{backend}"
        );
        assert_eq!(done.answered_by.as_deref(), Some("dev1"));
        // Another company cannot see or move it.
        assert!(store.command("other", &c.id).await.unwrap().is_none());
        assert_eq!(store.command(&company, &c.id).await.unwrap(), Some(done));
    }
}

#[tokio::test]
async fn racing_transitions_are_made_once() {
    for (backend, store) in common::stores().await {
        let company = common::unique("co");
        let c = command(&company, "device:p1", 1_000, 60_000);
        store.insert_command(&c).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store: Arc<dyn Store> = store.clone();
            let (company, id) = (company.clone(), c.id.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .transition_command(
                        &company,
                        &id,
                        Step::Deliver,
                        2_000 + i,
                        &Outcome::default(),
                    )
                    .await
                    .unwrap()
                    .is_some()
            }));
        }
        let mut made = 0;
        for t in tasks {
            made += usize::from(t.await.unwrap());
        }
        assert_eq!(made, 1, "{backend}: exactly one caller delivers");
    }
}

#[tokio::test]
async fn expiry_fails_each_open_command_once_and_spares_the_rest() {
    for (backend, store) in common::stores().await {
        let company = common::unique("co");
        let late = command(&company, "device:p1", 1_000, 1_000);
        let acked = command(&company, "device:p1", 1_000, 1_000);
        let future = command(&company, "device:p1", 1_000, i64::MAX / 4);
        for c in [&late, &acked, &future] {
            store.insert_command(c).await.unwrap();
        }
        store
            .transition_command(
                &company,
                &acked.id,
                Step::Deliver,
                1_100,
                &Outcome::default(),
            )
            .await
            .unwrap();
        store
            .transition_command(
                &company,
                &acked.id,
                Step::Ack,
                1_200,
                &Outcome {
                    deadline_at: Some(50_000),
                    ..Outcome::default()
                },
            )
            .await
            .unwrap();
        // Several sweeps at once (as every node runs one): each command is
        // expired by exactly one of them.
        let mut sweeps = Vec::new();
        for _ in 0..4 {
            let store: Arc<dyn Store> = store.clone();
            sweeps.push(tokio::spawn(async move {
                store.expire_commands(10_000, 1_000).await.unwrap()
            }));
        }
        let mut expired = Vec::new();
        for s in sweeps {
            expired.extend(
                s.await
                    .unwrap()
                    .into_iter()
                    .filter(|c| c.company_id == company),
            );
        }
        assert_eq!(expired.len(), 1, "{backend}: {expired:?}");
        assert_eq!(expired[0].id, late.id);
        assert_eq!(expired[0].status, Status::Failed);
        assert_eq!(expired[0].error_code.as_deref(), Some(TIMEOUT_CODE));
        assert_eq!(expired[0].finished_at, Some(10_000));
        // The acked one's deadline moved with its ack.
        let a = store.command(&company, &acked.id).await.unwrap().unwrap();
        assert_eq!(a.status, Status::Acked, "{backend}");
        // A finished command cannot be answered.
        assert!(
            store
                .transition_command(&company, &late.id, Step::Ack, 11_000, &Outcome::default())
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn pending_commands_come_in_order_and_lists_by_target_and_time() {
    for (backend, store) in common::stores().await {
        let company = common::unique("co");
        let now = 100_000;
        let a = command(&company, "device:p1", 1_000, 500_000);
        let b = command(&company, "device:p1", 1_000, 500_000); // same ms: order of sending
        let expired = command(&company, "device:p1", 1_000, 10);
        let other = command(&company, "device:p2", 2_000, 500_000);
        for c in [&a, &b, &expired, &other] {
            store.insert_command(c).await.unwrap();
        }
        store
            .transition_command(&company, &b.id, Step::Deliver, 1_500, &Outcome::default())
            .await
            .unwrap();
        let pending: Vec<String> = store
            .pending_commands(&company, &["device:p1".into()], now)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(pending, vec![a.id.clone(), b.id.clone()], "{backend}");
        let both = store
            .pending_commands(&company, &["device:p1".into(), "device:p2".into()], now)
            .await
            .unwrap();
        assert_eq!(both.len(), 3, "{backend}");
        let listed = store
            .list_commands(&company, Some("device:p2"), 0, i64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, other.id);
        let in_range = store
            .list_commands(&company, None, 1_000, 2_000, 10)
            .await
            .unwrap();
        assert_eq!(in_range.len(), 3, "{backend}: [from, to) excludes `to`");
        let page = store
            .list_commands(&company, None, 0, i64::MAX, 2)
            .await
            .unwrap();
        assert_eq!(page.len(), 2);
    }
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_command() {
    for (backend, store) in common::stores().await {
        let company = common::unique("co");
        let mut first = command(&company, "device:p1", 1_000, 5_000);
        first.idempotency_key = Some("c:u1:k1".into());
        let mut retry = command(&company, "device:p1", 1_500, 5_000);
        retry.idempotency_key = first.idempotency_key.clone();
        let a = store.insert_command(&first).await.unwrap();
        let b = store.insert_command(&retry).await.unwrap();
        assert!(!a.duplicate && b.duplicate, "{backend}");
        assert_eq!(b.command.id, first.id, "{backend}");
        // Same key in another company is another command.
        let mut elsewhere = retry.clone();
        elsewhere.company_id = common::unique("co");
        assert!(!store.insert_command(&elsewhere).await.unwrap().duplicate);
    }
}

#[tokio::test]
async fn retention_deletes_finished_commands_only_in_bounded_batches() {
    // Times below 1,000 ms, which no other case of this file uses: the
    // prune is global (every company), and the cases share the database.
    for (backend, store) in common::stores().await {
        let company = common::unique("co");
        let far = i64::MAX / 4;
        let new = || command(&company, "device:p1", 100, far);
        let (queued, sent, acked) = (new(), new(), new());
        let (succeeded, failed, recent) = (new(), new(), new());
        let none = Outcome::default();
        let steps: [(&NewCommand, &[(Step, i64)]); 6] = [
            (&queued, &[]),
            (&sent, &[(Step::Deliver, 150)]),
            (&acked, &[(Step::Deliver, 150), (Step::Ack, 160)]),
            (
                &succeeded,
                &[(Step::Deliver, 150), (Step::Ack, 160), (Step::Succeed, 200)],
            ),
            (
                &failed,
                &[(Step::Deliver, 150), (Step::Ack, 160), (Step::Fail, 300)],
            ),
            (
                &recent,
                &[(Step::Deliver, 150), (Step::Ack, 160), (Step::Succeed, 700)],
            ),
        ];
        for (c, path) in steps {
            store.insert_command(c).await.unwrap();
            for (step, at) in path {
                store
                    .transition_command(&company, &c.id, *step, *at, &none)
                    .await
                    .unwrap()
                    .expect("the step applies");
            }
        }
        // Finished at or before 500: `succeeded` and `failed`, one per call.
        let mut deleted = 0;
        loop {
            let n = store.prune_commands(500, 1).await.unwrap();
            assert!(n <= 1, "{backend}: a batch is bounded by its limit");
            if n == 0 {
                break;
            }
            deleted += n;
        }
        assert!(deleted >= 2, "{backend}: {deleted}");
        for gone in [&succeeded, &failed] {
            assert_eq!(
                store.command(&company, &gone.id).await.unwrap(),
                None,
                "{backend}: a finished command past retention is deleted"
            );
        }
        // Open commands are kept however old; a recent finished one too.
        for (kept, status) in [
            (&queued, Status::Queued),
            (&sent, Status::Sent),
            (&acked, Status::Acked),
            (&recent, Status::Succeeded),
        ] {
            let c = store.command(&company, &kept.id).await.unwrap();
            assert_eq!(c.map(|c| c.status), Some(status), "{backend}");
        }
        assert_eq!(store.prune_commands(500, 1_000).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn announcing_is_recorded_and_an_overdue_announcement_is_claimed_once() {
    for (backend, store) in common::stores().await {
        let company = common::unique("co");
        let c = command(&company, "device:p1", 1_000, 1_000_000);
        let inserted = store.insert_command(&c).await.unwrap().command;
        assert_eq!(inserted.announced, 0, "{backend}: nothing announced yet");
        assert_eq!(inserted.unannounced(), [Status::Queued], "{backend}");
        // Announced in time: never claimed.
        store.mark_announced(&company, &c.id, 1).await.unwrap();
        let due = 1_000 + ANNOUNCE_GRACE_MS;
        assert!(
            store
                .claim_unannounced(due, due + 1, 10)
                .await
                .unwrap()
                .is_empty(),
            "{backend}"
        );

        // Two transitions, then the node dies: nothing more is recorded.
        for (step, at) in [(Step::Deliver, 2_000), (Step::Ack, 2_100)] {
            store
                .transition_command(&company, &c.id, step, at, &Outcome::default())
                .await
                .unwrap()
                .expect("the step applies");
        }
        let due = 2_100 + ANNOUNCE_GRACE_MS;
        assert!(
            store
                .claim_unannounced(due - 1, due + 500, 10)
                .await
                .unwrap()
                .is_empty(),
            "{backend}: still within its node's grace"
        );
        // Several sweeps at once: exactly one claims it, with what is missing.
        let mut claims = Vec::new();
        for _ in 0..4 {
            let store: Arc<dyn Store> = store.clone();
            claims.push(tokio::spawn(async move {
                store.claim_unannounced(due, due + 500, 10).await.unwrap()
            }));
        }
        let mut claimed = Vec::new();
        for c in claims {
            claimed.extend(c.await.unwrap());
        }
        assert_eq!(claimed.len(), 1, "{backend}: {claimed:?}");
        assert_eq!(
            claimed[0].unannounced(),
            [Status::Sent, Status::Acked],
            "{backend}"
        );
        // The claimer died too: due again after its lease, not before.
        assert!(
            store
                .claim_unannounced(due + 499, due + 1_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .claim_unannounced(due + 500, due + 1_000, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        // Recorded up to `acked`: never claimed again, and never moved back.
        store.mark_announced(&company, &c.id, 3).await.unwrap();
        store.mark_announced(&company, &c.id, 2).await.unwrap();
        let now = store.command(&company, &c.id).await.unwrap().unwrap();
        assert_eq!(now.announced, 3, "{backend}");
        assert!(now.unannounced().is_empty(), "{backend}");
        assert!(
            store
                .claim_unannounced(i64::MAX / 2, i64::MAX / 2, 10)
                .await
                .unwrap()
                .is_empty(),
            "{backend}"
        );

        // A timeout is due for announcing like any transition; a command
        // that timed out while `queued` was never `sent` or `acked`.
        let lonely = command(&company, "device:p2", 1_000, 10);
        store.insert_command(&lonely).await.unwrap();
        let expired = store.expire_commands(5_000, 10).await.unwrap();
        let mine: Vec<_> = expired.into_iter().filter(|e| e.id == lonely.id).collect();
        assert_eq!(mine.len(), 1, "{backend}");
        assert_eq!(
            mine[0].unannounced(),
            [Status::Queued, Status::Failed],
            "{backend}"
        );
        let claimed = store
            .claim_unannounced(5_000 + ANNOUNCE_GRACE_MS, i64::MAX / 2, 10)
            .await
            .unwrap();
        assert_eq!(
            claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            [lonely.id.as_str()],
            "{backend}"
        );
    }
}
