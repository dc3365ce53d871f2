//! Telemetry rules (issue 15 item 2): per stream — `telemetry` by
//! endpointId, or any numeric field of any catalog type — a deadband that
//! suppresses readings within ±d of the last delivered one (critical ones
//! never), and thresholds that publish a catalog event (e.g. `alarm`) once
//! when crossed and a clearing event once when back in range.
//!
//! [`Rules`] is the publisher's [`Observer`]: it sees each published event
//! on the publishing path, answers the deadband at once from this node's
//! memory (so the deadband is per node), and queues the reading for the
//! thresholds, which one task per node evaluates in arrival order: the pure
//! [`crate::domain::rule::plan`] names the guarded changes a reading asks
//! for, and the database ([`crate::store::RuleStore`]) makes those whose
//! guard holds against the stored state. No node acts on a copy of the
//! state, so across nodes exactly one raises or clears each alarm, a dip
//! seen by one node disarms a hold armed by another, and a restarted node
//! finds an alarm still raised. Rule files: [`spec`]; the `rules` of
//! `switchyard catalog --json`: [`export`].

pub mod export;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::catalog::Priority;
use crate::domain::rule::{Action, passes_deadband, plan};
use crate::domain::{Targets, now_ms};
use crate::events::{Draft, Observer, Prepared, Publisher};
use crate::store::Store;
use crate::store::rules::{RuleChange, ThresholdKey};
use crate::tasks::Tasks;
pub use spec::{Edge, Rule, RuleError, Threshold};

/// Readings waiting for threshold evaluation; beyond this they are dropped.
const QUEUE: usize = 10_000;
/// Streams remembered per node (deadband values, known rows); when
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
    /// Readings dropped because the queue was full, since start.
    dropped: AtomicU64,
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
            dropped: AtomicU64::new(0),
        });
        let worker = Worker {
            rules: me.clone(),
            store,
            publisher: publisher.clone(),
            known: HashSet::new(),
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
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    // 1, 2, 4, 8, …: a flood is visible without flooding the log.
                    if n.is_power_of_two() {
                        tracing::warn!(rule = %rule.id, dropped = n, "rule queue full: readings not evaluated");
                    }
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
    /// Thresholds whose row this node knows exists (bounded).
    known: HashSet<ThresholdKey>,
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

    /// Makes the guarded changes the reading asks for; publishes the edge
    /// this node made, if any.
    async fn evaluate(&mut self, rule: &Rule, t: &Threshold, r: &Reading) -> anyhow::Result<()> {
        let key = ThresholdKey {
            company_id: r.company.clone(),
            rule_id: rule.id.clone(),
            threshold_id: t.id.clone(),
            stream_key: r.key.clone(),
        };
        if !self.known.contains(&key) {
            self.store.ensure_threshold(&key, r.at).await?;
            if self.known.len() >= MAX_STREAMS {
                self.known.clear();
            }
            self.known.insert(key.clone());
        }
        for &action in plan(&t.limit, r.value) {
            let change = match action {
                Action::Arm => RuleChange::Arm,
                Action::Disarm => RuleChange::Disarm,
                Action::Raise => RuleChange::Raise {
                    hold_ms: t.limit.hold_ms,
                    alarm_id: uuid::Uuid::now_v7().to_string(),
                },
                Action::Clear => RuleChange::Clear,
            };
            let Some(after) = self.store.change_threshold(&key, &change, r.at).await? else {
                continue;
            };
            let edge = match action {
                Action::Raise => Edge::Raised,
                Action::Clear => Edge::Cleared,
                Action::Arm | Action::Disarm => continue,
            };
            let alarm_id = after.alarm_id.unwrap_or_default();
            self.publish(rule, t, edge, &alarm_id, r).await?;
        }
        Ok(())
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
        // `persist` delivers a durable event when it commits, `dispatch` an
        // ephemeral one.
        self.publisher
            .persist(std::slice::from_ref(&prepared), None)
            .await?;
        self.publisher.dispatch(&prepared, None).await;
        tracing::info!(rule = %rule.id, threshold = %t.id, edge = edge.as_str(), value = r.value, "rule event published");
        Ok(())
    }
}
