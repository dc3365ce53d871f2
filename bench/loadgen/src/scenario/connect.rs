//! `connect`: N authenticated connections as fast as the server takes them,
//! then held idle while the server's resident memory is read.
//!
//! A connection counts once its `session` event has arrived (JWT verified,
//! rooms joined). RSS per connection is (VmRSS after − VmRSS before) / N,
//! both read from /proc/<server pid>/status.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use super::support::{open_many, secs};
use super::{ConnectArgs, Ctx};
use crate::conn;
use crate::report::{self, CpuMeter, Outcome};

pub async fn run(ctx: Rc<Ctx>, a: ConnectArgs) -> Outcome {
    if let Err(o) = ctx.check_nofile(a.connections) {
        return o;
    }
    let auths = (0..a.connections)
        .map(|i| ctx.minter.auth(&format!("u{i}"), &ctx.company, "operator"))
        .collect();
    let pid = ctx.common.server_pid;
    let rss_before = pid.and_then(report::vm_rss_kib);
    let cpu = CpuMeter::start(pid);
    let opened = open_many(&ctx, auths, a.concurrency).await;
    let cpu = cpu.finish();
    let connects_per_s = report::rate(opened.ok as u64, opened.elapsed.as_secs_f64());

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let dropped = Rc::new(Cell::new(0u64));
    let mut held = Vec::with_capacity(opened.ok);
    for c in opened.conns.into_iter().flatten() {
        let (rx, dropped) = (stop_rx.clone(), dropped.clone());
        held.push(tokio::task::spawn_local(async move {
            if !conn::hold(c.ws, rx).await {
                dropped.set(dropped.get() + 1);
            }
        }));
    }
    tokio::time::sleep(secs(a.hold)).await;
    let rss_after = pid.and_then(report::vm_rss_kib);
    let _ = stop.send(true);
    for h in held {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }

    let per_conn_bytes = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened.ok > 0 => {
            Some((a.saturating_sub(b) * 1024) as f64 / opened.ok as f64)
        }
        _ => None,
    };
    let results = json!({
        "connected": opened.ok,
        "failed": opened.errors.total(),
        "errors": opened.errors.json(),
        "elapsed_s": opened.elapsed.as_secs_f64(),
        "connects_per_s": connects_per_s,
        "connect_latency": report::summary(&opened.latency),
        "server_cpu_us_per_connect": report::cost_us(&cpu, opened.ok as u64),
        "cpu_during_connect": cpu,
        "dropped_while_held": dropped.get(),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_conn_bytes": per_conn_bytes.map(f64::round),
        "rss_per_conn_kib": per_conn_bytes.map(|b| (b / 1024.0 * 100.0).round() / 100.0),
    });
    let refused = opened.errors.total() > 0 || dropped.get() > 0;
    if opened.ok == 0 {
        Outcome::failed(
            format!("no connection succeeded: {}", opened.errors.first()),
            results,
        )
    } else if refused && ctx.common.strict {
        Outcome::failed(
            format!(
                "{} failed, {} dropped",
                opened.errors.total(),
                dropped.get()
            ),
            results,
        )
    } else {
        Outcome::ok(results)
    }
}
