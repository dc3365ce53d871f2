//! Rule-state store contract (issue 15 item 2): the same cases on
//! PostgreSQL and SQLite. Each change is made only when its guard holds
//! (the guards of `domain::rule::apply`, checked against it here); of many
//! callers asking to raise (or clear) the same threshold at once exactly one
//! does; a fresh read sees a raised alarm (a restarted node).

mod common;

use std::sync::Arc;

use switchyard::domain::rule::{Action, ThresholdState, apply};
use switchyard::store::Store;
use switchyard::store::rules::{RuleChange, ThresholdKey};

fn key(company: &str) -> ThresholdKey {
    ThresholdKey {
        company_id: company.into(),
        rule_id: "reactor-temp".into(),
        threshold_id: "hot".into(),
        stream_key: "59".into(),
    }
}

fn change(action: Action, hold_ms: i64, id: &str) -> RuleChange {
    match action {
        Action::Arm => RuleChange::Arm,
        Action::Disarm => RuleChange::Disarm,
        Action::Raise => RuleChange::Raise {
            hold_ms,
            alarm_id: id.into(),
        },
        Action::Clear => RuleChange::Clear,
    }
}

#[tokio::test]
async fn guards_match_the_pure_rules() {
    // (action, hold, now): each is made in the database exactly when `apply` says so.
    let steps = [
        (Action::Raise, 1000, 100), // not armed: refused
        (Action::Disarm, 0, 100),   // not armed: refused
        (Action::Arm, 0, 100),
        (Action::Arm, 0, 400),      // armed already: keeps the first time
        (Action::Raise, 1000, 900), // held 800 of 1000: refused
        (Action::Raise, 1000, 1100),
        (Action::Arm, 0, 1200),   // raised: refused
        (Action::Raise, 0, 1300), // raised: refused
        (Action::Clear, 0, 2000),
        (Action::Clear, 0, 2100), // cleared once
        (Action::Arm, 0, 3000),
        (Action::Disarm, 0, 3100),
        (Action::Raise, 0, 3200), // no hold: raises unarmed
    ];
    for (backend, store) in common::stores().await {
        let k = key(&common::unique("co"));
        store.ensure_threshold(&k, 0).await.unwrap();
        store.ensure_threshold(&k, 0).await.unwrap();
        let mut expected = ThresholdState::default();
        assert_eq!(store.threshold_state(&k).await.unwrap(), expected);
        for (i, (action, hold, now)) in steps.into_iter().enumerate() {
            let id = format!("alarm-{i}");
            let want = apply(&expected, action, now, hold, &id);
            let got = store
                .change_threshold(&k, &change(action, hold, &id), now)
                .await
                .unwrap();
            assert_eq!(got, want, "{backend}: step {i} {action:?} at {now}");
            if let Some(s) = want {
                expected = s;
            }
            // A restarted node reads what was stored.
            assert_eq!(
                store.threshold_state(&k).await.unwrap(),
                expected,
                "{backend}: step {i}"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_raises_and_clears_are_made_once() {
    for (backend, store) in common::stores().await {
        let k = key(&common::unique("co"));
        store.ensure_threshold(&k, 0).await.unwrap();
        for action in [Action::Raise, Action::Clear, Action::Raise] {
            let mut tasks = Vec::new();
            for i in 0..12 {
                let store: Arc<dyn Store> = store.clone();
                let (k, c) = (k.clone(), change(action, 0, &format!("a{i}")));
                tasks.push(tokio::spawn(async move {
                    store
                        .change_threshold(&k, &c, 10 + i)
                        .await
                        .unwrap()
                        .is_some()
                }));
            }
            let mut made = 0;
            for t in tasks {
                made += usize::from(t.await.unwrap());
            }
            assert_eq!(made, 1, "{backend}: {action:?}");
        }
        // Keys are per company, rule, threshold and stream.
        let mut other = k.clone();
        other.stream_key = "60".into();
        assert!(!store.threshold_state(&other).await.unwrap().raised);
        assert_eq!(
            store
                .change_threshold(&other, &RuleChange::Arm, 5)
                .await
                .unwrap(),
            None,
            "{backend}: no row, no change"
        );
    }
}
