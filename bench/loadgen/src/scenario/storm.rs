//! `storm`: a reconnect storm. N connections of one company are opened and
//! held (steady state: the server's RSS is read), then all of them drop at
//! once and all reconnect at once, as tablets do after a Wi-Fi blip.
//! Measured: the time from the drop until the last `session` arrived, and
//! the server's peak RSS (sampled every 20 ms on a thread of its own) over
//! the storm against the steady state.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::{open_many, secs};
use super::{Ctx, StormArgs};
use crate::conn::{self, Conn};
use crate::report::{self, CpuMeter, Outcome};

/// Holds connections until `stop` flips; counts those the server dropped.
fn hold_all(
    conns: Vec<Conn>,
    stop: &tokio::sync::watch::Receiver<bool>,
    dropped: &Rc<Cell<u64>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    conns
        .into_iter()
        .map(|c| {
            let (rx, dropped) = (stop.clone(), dropped.clone());
            tokio::task::spawn_local(async move {
                if !conn::hold(c.ws, rx).await {
                    dropped.set(dropped.get() + 1);
                }
            })
        })
        .collect()
}

/// Samples the server's VmRSS until stopped; returns the peak, KiB.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start(pid: Option<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = pid.map(|pid| {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = report::vm_rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        });
        Self { stop, peak, thread }
    }

    fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self
            .thread
            .take()
            .map(|t| t.join().is_ok())
            .unwrap_or(false);
        sampled.then(|| self.peak.load(Ordering::Relaxed))
    }
}

pub async fn run(ctx: Rc<Ctx>, a: StormArgs) -> Outcome {
    if let Err(o) = ctx.check_nofile(a.connections) {
        return o;
    }
    let auths: Vec<Value> = (0..a.connections)
        .map(|i| ctx.minter.auth(&format!("u{i}"), &ctx.company, "operator"))
        .collect();
    let pid = ctx.common.server_pid;
    // Steady state.
    let opened = open_many(&ctx, auths.clone(), a.concurrency).await;
    let first_failed = opened.errors.total();
    let dropped = Rc::new(Cell::new(0u64));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let held = hold_all(
        opened.conns.into_iter().flatten().collect(),
        &stop_rx,
        &dropped,
    );
    tokio::time::sleep(secs(a.settle)).await;
    let steady = pid.and_then(report::vm_rss_kib);

    // The storm: everything drops, everything comes back.
    let peak = PeakRss::start(pid);
    let cpu = CpuMeter::start(pid);
    let t0 = Instant::now();
    let _ = stop.send(true);
    for h in held {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    let dropped_before = dropped.get();
    let storm_concurrency = a.storm_concurrency.unwrap_or(a.connections);
    let back = open_many(&ctx, auths, storm_concurrency).await;
    let to_all_sessions = t0.elapsed();
    let cpu = cpu.finish();
    let (stop2, stop_rx2) = tokio::sync::watch::channel(false);
    let dropped2 = Rc::new(Cell::new(0u64));
    let held = hold_all(
        back.conns.into_iter().flatten().collect(),
        &stop_rx2,
        &dropped2,
    );
    tokio::time::sleep(secs(a.after)).await;
    let peak = peak.finish();
    let after = pid.and_then(report::vm_rss_kib);
    let _ = stop2.send(true);
    for h in held {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }

    let ratio = match (peak, steady) {
        (Some(p), Some(s)) if s > 0 => Some((p as f64 / s as f64 * 1000.0).round() / 1000.0),
        _ => None,
    };
    let results = json!({
        "connected_before": opened.ok,
        "failed_before": first_failed,
        "reconnected": back.ok,
        "failed": back.errors.total(),
        "errors": back.errors.json(),
        "dropped_while_held": dropped_before + dropped2.get(),
        "time_to_all_sessions_s": to_all_sessions.as_secs_f64(),
        "reconnect_latency": report::summary(&back.latency),
        "server_cpu_us_per_reconnect": report::cost_us(&cpu, back.ok as u64),
        "cpu_during_storm": cpu,
        "rss_steady_kib": steady,
        "rss_peak_kib": peak,
        "rss_after_kib": after,
        "rss_peak_over_steady": ratio,
    });
    let bad = back.errors.total() > 0 || first_failed > 0;
    if back.ok == 0 {
        Outcome::failed(
            format!("no reconnection succeeded: {}", back.errors.first()),
            results,
        )
    } else if bad && ctx.common.strict {
        Outcome::failed(
            format!("{} reconnections failed", back.errors.total()),
            results,
        )
    } else {
        Outcome::ok(results)
    }
}
