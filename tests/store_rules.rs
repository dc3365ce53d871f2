//! Rule-state store contract (issue 15 item 2): the same cases on
//! PostgreSQL and SQLite. Of many callers asking to raise (or clear) the
//! same threshold at once exactly one does; the hold time is judged
//! against the stored arming time; a fresh read sees a raised alarm.

mod common;

use std::sync::Arc;

use switchyard::domain::rule::ThresholdState;
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

fn raise(hold_ms: i64, id: &str) -> RuleChange {
    RuleChange::Raise {
        hold_ms,
        alarm_id: id.into(),
    }
}

#[tokio::test]
async fn arm_hold_raise_clear() {
    for (backend, store) in common::stores().await {
        let k = key(&common::unique("co"));
        assert_eq!(
            store.threshold_state(&k).await.unwrap(),
            ThresholdState::default()
        );
        // Not armed: a raise with a hold is refused.
        let (made, _) = store
            .change_threshold(&k, &raise(1000, "a1"), 100)
            .await
            .unwrap();
        assert!(!made, "{backend}");
        let (made, s) = store
            .change_threshold(&k, &RuleChange::Arm, 100)
            .await
            .unwrap();
        assert!(made && s.armed_at == Some(100), "{backend}: {s:?}");
        // Arming again keeps the first time (another node's reading).
        let (made, s) = store
            .change_threshold(&k, &RuleChange::Arm, 400)
            .await
            .unwrap();
        assert!(!made && s.armed_at == Some(100), "{backend}");
        let (made, _) = store
            .change_threshold(&k, &raise(1000, "a1"), 900)
            .await
            .unwrap();
        assert!(!made, "{backend}: held 800 ms of 1000");
        let (made, s) = store
            .change_threshold(&k, &raise(1000, "a1"), 1100)
            .await
            .unwrap();
        assert!(made, "{backend}");
        assert_eq!(
            s,
            ThresholdState {
                raised: true,
                armed_at: None,
                alarm_id: Some("a1".into())
            }
        );
        // A restarted node reads it back raised.
        assert!(store.threshold_state(&k).await.unwrap().raised, "{backend}");
        let (made, s) = store
            .change_threshold(&k, &RuleChange::Clear, 2000)
            .await
            .unwrap();
        assert!(made && !s.raised, "{backend}");
        assert_eq!(
            s.alarm_id.as_deref(),
            Some("a1"),
            "{backend}: the clear knows the alarm"
        );
        let (made, _) = store
            .change_threshold(&k, &RuleChange::Clear, 2100)
            .await
            .unwrap();
        assert!(!made, "{backend}: cleared once");
        // Arm then disarm.
        store
            .change_threshold(&k, &RuleChange::Arm, 3000)
            .await
            .unwrap();
        let (made, s) = store
            .change_threshold(&k, &RuleChange::Disarm, 3100)
            .await
            .unwrap();
        assert!(made && s.armed_at.is_none(), "{backend}");
    }
}

#[tokio::test]
async fn concurrent_raises_and_clears_are_made_once() {
    for (backend, store) in common::stores().await {
        let k = key(&common::unique("co"));
        for change in [raise(0, "x"), RuleChange::Clear, raise(0, "y")] {
            let mut tasks = Vec::new();
            for i in 0..12 {
                let store: Arc<dyn Store> = store.clone();
                let (k, change) = (k.clone(), change.clone());
                tasks.push(tokio::spawn(async move {
                    store.change_threshold(&k, &change, 10 + i).await.unwrap().0
                }));
            }
            let mut made = 0;
            for t in tasks {
                made += usize::from(t.await.unwrap());
            }
            assert_eq!(made, 1, "{backend}: {change:?}");
        }
        // Keys are per company, rule, threshold and stream.
        let mut other = k.clone();
        other.stream_key = "60".into();
        assert!(!store.threshold_state(&other).await.unwrap().raised);
    }
}
