//! Helpers the scenarios share: opening many connections with a bound on
//! attempts in flight, error tallies, ISO timestamps.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::Ctx;
use crate::conn::{Conn, ConnError};
use crate::report;

/// Failures by kind, with the first message of each kind as a sample.
#[derive(Default)]
pub struct Errors {
    counts: BTreeMap<&'static str, u64>,
    samples: BTreeMap<&'static str, String>,
}

impl Errors {
    pub fn add(&mut self, kind: &'static str, message: impl std::fmt::Display) {
        *self.counts.entry(kind).or_default() += 1;
        self.samples
            .entry(kind)
            .or_insert_with(|| format!("{message:.200}"));
    }

    pub fn add_conn(&mut self, e: &ConnError) {
        self.add(e.kind(), e);
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn json(&self) -> Value {
        json!({ "counts": self.counts, "samples": self.samples })
    }

    /// The first sample, for a failure reason.
    pub fn first(&self) -> String {
        self.samples
            .iter()
            .next()
            .map(|(k, v)| format!("{k}: {v}"))
            .unwrap_or_default()
    }
}

pub struct Opened {
    /// In the order of the auth payloads; `None` where the attempt failed.
    pub conns: Vec<Option<Conn>>,
    pub ok: usize,
    pub errors: Errors,
    pub elapsed: Duration,
    /// Time from TCP connect to `session`, per successful connection, µs.
    pub latency: Histogram<u64>,
}

impl Opened {
    /// All connections, or the reason some failed.
    pub fn all(self) -> Result<Vec<Conn>, String> {
        if self.errors.total() > 0 {
            return Err(format!(
                "{} of {} connections failed; first: {}",
                self.errors.total(),
                self.conns.len(),
                self.errors.first()
            ));
        }
        Ok(self.conns.into_iter().flatten().collect())
    }
}

/// Opens one connection per auth payload, at most `concurrency` attempts at
/// a time; returns when every attempt has succeeded or failed.
pub async fn open_many(ctx: &Rc<Ctx>, auths: Vec<Value>, concurrency: usize) -> Opened {
    let n = auths.len();
    let concurrency = concurrency.clamp(1, n.max(1));
    let sem = std::sync::Arc::new(Semaphore::new(concurrency));
    let slots: Rc<RefCell<Vec<Option<Conn>>>> =
        Rc::new(RefCell::new((0..n).map(|_| None).collect()));
    let errors = Rc::new(RefCell::new(Errors::default()));
    let latency = Rc::new(RefCell::new(report::histogram()));
    let started = Instant::now();
    for (i, auth) in auths.into_iter().enumerate() {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let (ctx, slots, errors, latency) =
            (ctx.clone(), slots.clone(), errors.clone(), latency.clone());
        tokio::task::spawn_local(async move {
            let t0 = Instant::now();
            match ctx.dialer.open(&auth).await {
                Ok(c) => {
                    let _ = latency.borrow_mut().record(t0.elapsed().as_micros() as u64);
                    slots.borrow_mut()[i] = Some(c);
                }
                Err(e) => errors.borrow_mut().add_conn(&e),
            }
            drop(permit);
        });
    }
    let _all_done = sem.acquire_many(concurrency as u32).await;
    let elapsed = started.elapsed();
    let conns = std::mem::take(&mut *slots.borrow_mut());
    let ok = conns.iter().filter(|c| c.is_some()).count();
    Opened {
        conns,
        ok,
        errors: std::mem::take(&mut *errors.borrow_mut()),
        elapsed,
        latency: latency.borrow().clone(),
    }
}

/// ISO-8601 UTC with milliseconds, as the catalog's `date-time` fields want.
pub fn iso_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Seconds as a Duration, never negative.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Whether an ack says the server does not know the event at all.
pub fn is_unknown_event(ack: &Value) -> bool {
    ack["error"]["code"].as_str() == Some("UNKNOWN_EVENT")
}
