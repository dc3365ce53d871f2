//! Conflation (SPEC §4): within a window only the latest value per
//! `(company, room, type, key)` is delivered. The first value of a window
//! starts its timer; later values replace it; the timer delivers the latest.
//! This is per-node state on purpose: conflated types are ephemeral, and each
//! node conflates what it publishes before the cluster broadcast.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fanout::{Delivery, Hub};
use crate::tasks::Tasks;

type Key = (String, String, String, String);

pub struct Conflator {
    pending: Mutex<HashMap<Key, Delivery>>,
    /// Where the latest value of a window goes.
    hub: Arc<dyn Hub>,
    /// Window timers.
    tasks: Tasks,
}

impl Conflator {
    pub fn new(hub: Arc<dyn Hub>, tasks: Tasks) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(HashMap::new()),
            hub,
            tasks,
        })
    }

    pub fn offer(self: &Arc<Self>, key: String, window_ms: u64, d: Delivery) {
        let k = (d.company.clone(), d.room.clone(), d.event_type.clone(), key);
        let first = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.clone(), d)
            .is_none();
        if first {
            let this = self.clone();
            self.tasks.spawn(async move {
                tokio::time::sleep(Duration::from_millis(window_ms)).await;
                let latest = this
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&k);
                if let Some(latest) = latest {
                    this.hub.deliver(&latest).await;
                }
            });
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RoleSet;
    use async_trait::async_trait;
    use serde_json::json;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Delivery>>);

    #[async_trait]
    impl Hub for Recorder {
        async fn deliver(&self, d: &Delivery) {
            self.0.lock().unwrap().push(d.clone());
        }

        async fn emit(&self, _: &crate::fanout::Signal) {}
    }

    fn reading(v: i64) -> Delivery {
        Delivery {
            company: "c".into(),
            room: "telemetry:1".into(),
            event_type: "telemetry".into(),
            payload: json!({ "value": v }),
            meta: json!({}),
            receive: RoleSet::ALL,
            exclude: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_latest_value_of_a_window_is_delivered() {
        let rec = Arc::new(Recorder::default());
        let c = Conflator::new(rec.clone(), Tasks::new());
        for v in 0..100 {
            c.offer("1".into(), 250, reading(v));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = rec.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload["value"], 99);
        assert_eq!(c.pending(), 0);
    }
}
