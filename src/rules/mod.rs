//! Telemetry rules (issue 15 item 2): per stream — `telemetry` by
//! endpointId, or any numeric field of any catalog type — a deadband that
//! suppresses readings within ±d of the last delivered one (critical ones
//! never), and thresholds that publish a catalog event (e.g. `alarm`) once
//! when crossed and a clearing event once when back in range.
//!
//! [`Rules`] is the publisher's [`Observer`]: it sees each published event
//! on the publishing path, answers the deadband at once from this node's
//! memory (so the deadband is per node), and queues the reading for the
//! thresholds, which one task per node evaluates in arrival order with the
//! pure [`crate::domain::rule::evaluate`]. Threshold states live in the
//! database ([`crate::store::RuleStore`]); each change is guarded there, so
//! across nodes exactly one raises or clears, and a restarted node finds an
//! alarm still raised. A node caches the states it read for
//! [`STATE_TTL`]: a change another node made reaches it within that time.
//! Rule files: [`spec`].

pub mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::catalog::Priority;
use crate::domain::rule::{Action, ThresholdState, evaluate, passes_deadband};
use crate::domain::{Targets, now_ms};
use crate::events::{Draft, Observer, Prepared, Publisher};
use crate::store::Store;
use crate::store::rules::{RuleChange, ThresholdKey};
use crate::tasks::Tasks;
pub use spec::{Edge, Rule, RuleError, Threshold};

/// How long a node trusts a threshold state it read or wrote.
pub const STATE_TTL: Duration = Duration::from_millis(500);
/// Readings waiting for threshold evaluation; beyond this they are dropped.
const QUEUE: usize = 10_000;
/// Streams remembered per node (deadband values, cached states); when
/// exceeded the memory starts over (a deadband then lets one reading through).
const MAX_STREAMS: usize = 100_000;

/// One reading for the thresholds of one rule.
struct Reading {
    company: String,
    rule: usize,
    key: String,
    value: f64,
    at: i64,
}

pub struct Rules {
    rules: Vec<Rule>,
    /// Event type → the rules on it.
    by_type: HashMap<String, Vec<usize>>,
    /// (company, rule, stream key) → the last delivered value. std Mutex:
    /// held for one lookup, never across an await.
    last: Mutex<HashMap<(String, usize, String), f64>>,
    queue: mpsc::Sender<Reading>,
}

impl Rules {
    /// Installs the rules as `publisher`'s observer and starts the
    /// threshold task. With no rules nothing is installed.
    pub fn start(
        rules: Vec<Rule>,
        store: Arc<dyn Store>,
        publisher: Arc<Publisher>,
        tasks: &Tasks,
    ) -> Option<Arc<Self>> {
        if rules.is_empty() {
            return None;
        }
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_type.entry(r.event_type.clone()).or_default().push(i);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let me = Arc::new(Self {
            rules,
            by_type,
            last: Mutex::new(HashMap::new()),
            queue: tx,
        });
        let worker = Worker {
            rules: me.clone(),
            store,
            publisher: publisher.clone(),
            cache: HashMap::new(),
        };
        tasks.spawn(worker.run(rx));
        publisher.set_observer(me.clone());
        Some(me)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Observer for Rules {
    fn observe(&self, p: &Prepared) -> bool {
        let Some(indexes) = self.by_type.get(&p.event_type) else {
            return true;
        };
        let mut deliver = true;
        let at = now_ms();
        for &i in indexes {
            let rule = &self.rules[i];
            let Some((key, value)) = rule.reading(&p.payload) else {
                continue;
            };
            if !rule.thresholds.is_empty() {
                let reading = Reading {
                    company: p.company.clone(),
                    rule: i,
                    key: key.clone(),
                    value,
                    at,
                };
                if self.queue.try_send(reading).is_err() {
                    tracing::warn!(rule = %rule.id, "rule queue full: a reading was not evaluated");
                }
            }
            if let Some(band) = rule.deadband {
                let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                let k = (p.company.clone(), i, key);
                let critical = p.priority == Priority::Critical;
                if passes_deadband(last.get(&k).copied(), value, band, critical) {
                    if last.len() >= MAX_STREAMS {
                        last.clear();
                    }
                    last.insert(k, value);
                } else {
                    deliver = false;
                }
            }
        }
        deliver
    }
}

/// Evaluates readings against thresholds, one at a time, in arrival order.
struct Worker {
    rules: Arc<Rules>,
    store: Arc<dyn Store>,
    publisher: Arc<Publisher>,
    cache: HashMap<ThresholdKey, (ThresholdState, Instant)>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Reading>) {
        while let Some(r) = rx.recv().await {
            let rules = self.rules.clone();
            let rule = &rules.rules[r.rule];
            for t in &rule.thresholds {
                if let Err(e) = self.evaluate(rule, t, &r).await {
                    tracing::warn!(rule = %rule.id, threshold = %t.id, error = %e, "rule evaluation failed");
                }
            }
        }
    }

    async fn state(
        &mut self,
        key: &ThresholdKey,
    ) -> Result<ThresholdState, crate::store::StoreError> {
        if let Some((s, at)) = self.cache.get(key) {
            if at.elapsed() < STATE_TTL {
                return Ok(s.clone());
            }
        }
        let s = self.store.threshold_state(key).await?;
        self.remember(key, &s);
        Ok(s)
    }

    fn remember(&mut self, key: &ThresholdKey, s: &ThresholdState) {
        if self.cache.len() >= MAX_STREAMS {
            self.cache.clear();
        }
        self.cache.insert(key.clone(), (s.clone(), Instant::now()));
    }

    async fn evaluate(&mut self, rule: &Rule, t: &Threshold, r: &Reading) -> anyhow::Result<()> {
        let key = ThresholdKey {
            company_id: r.company.clone(),
            rule_id: rule.id.clone(),
            threshold_id: t.id.clone(),
            stream_key: r.key.clone(),
        };
        let state = self.state(&key).await?;
        let change = match evaluate(&t.limit, &state, r.value, r.at) {
            Action::Nothing => return Ok(()),
            Action::Arm => RuleChange::Arm,
            Action::Disarm => RuleChange::Disarm,
            Action::Raise => RuleChange::Raise {
                hold_ms: t.limit.hold_ms,
                alarm_id: uuid::Uuid::now_v7().to_string(),
            },
            Action::Clear => RuleChange::Clear,
        };
        let (made, after) = self.store.change_threshold(&key, &change, r.at).await?;
        self.remember(&key, &after);
        let edge = match change {
            RuleChange::Raise { .. } if made => Edge::Raised,
            RuleChange::Clear if made => Edge::Cleared,
            _ => return Ok(()),
        };
        let alarm_id = after.alarm_id.unwrap_or_default();
        self.publish(rule, t, edge, &alarm_id, r).await
    }

    /// Publishes the edge's event; only the node that made the change does.
    async fn publish(
        &self,
        rule: &Rule,
        t: &Threshold,
        edge: Edge,
        alarm_id: &str,
        r: &Reading,
    ) -> anyhow::Result<()> {
        let spec = self.publisher.spec(&t.event)?;
        let prepared = self.publisher.prepare(
            spec,
            Draft {
                company: &r.company,
                event_type: &t.event,
                rooms: Targets::one(t.room.clone()),
                payload: t.payload(&rule.id, edge, alarm_id, r.value, &r.key, r.at),
                priority: t.priority(edge),
                source: "rules".into(),
                publisher: None,
                // One event per edge, whoever retries.
                idempotency_key: Some(format!("rule:{alarm_id}:{}", edge.as_str())),
            },
        )?;
        let appended = self
            .publisher
            .persist(std::slice::from_ref(&prepared))
            .await?
            .pop()
            .flatten();
        self.publisher
            .dispatch(&prepared, appended.as_ref(), None)
            .await;
        tracing::info!(rule = %rule.id, threshold = %t.id, edge = edge.as_str(), value = r.value, "rule event published");
        Ok(())
    }
}
