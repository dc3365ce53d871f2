//! `ack-latency`: C connections, each sending `ping` and waiting for its ack
//! before the next, for D seconds. Reports acks/s after the warm-up and the
//! round-trip latency distribution.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use serde_json::json;

use super::support::{Errors, open_many, secs};
use super::{AckArgs, Ctx};
use crate::conn;
use crate::report::{self, CpuMeter, Outcome};

#[derive(Default)]
struct Tally {
    acks: u64,
    bad_acks: u64,
    errors: Errors,
}

pub async fn run(ctx: Rc<Ctx>, a: AckArgs) -> Outcome {
    if let Err(o) = ctx.check_nofile(a.connections) {
        return o;
    }
    let auths = (0..a.connections)
        .map(|i| ctx.minter.auth(&format!("p{i}"), &ctx.company, "operator"))
        .collect();
    let conns = match open_many(&ctx, auths, 256).await.all() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, json!({})),
    };
    let hist = Rc::new(RefCell::new(report::histogram()));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let start = Instant::now();
    let record_from = start + secs(a.warmup);
    let end = start + secs(a.duration);
    let pid = ctx.common.server_pid;
    let cpu = tokio::task::spawn_local(async move {
        tokio::time::sleep_until(record_from.into()).await;
        let meter = CpuMeter::start(pid);
        tokio::time::sleep_until(end.into()).await;
        meter.finish()
    });
    let mut tasks = Vec::with_capacity(conns.len());
    let n = conns.len().max(1) as u64;
    for (i, c) in conns.into_iter().enumerate() {
        let (hist, tally) = (hist.clone(), tally.clone());
        let mut pace = (a.interval_ms > 0).then(|| {
            let period = Duration::from_millis(a.interval_ms);
            let phase = period * (i as u32) / (n as u32);
            let mut t = tokio::time::interval_at((start + phase).into(), period);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        tasks.push(tokio::task::spawn_local(async move {
            let mut ws = c.ws;
            let mut id = 0u64;
            loop {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                id += 1;
                match conn::call(&mut ws, "ping", None, id, |_| {}).await {
                    Ok(ack) => {
                        let now = Instant::now();
                        if ack["pong"] != json!(true) {
                            tally.borrow_mut().bad_acks += 1;
                        } else if t0 >= record_from {
                            let _ = hist.borrow_mut().record((now - t0).as_micros() as u64);
                            tally.borrow_mut().acks += 1;
                        }
                    }
                    Err(e) => {
                        tally.borrow_mut().errors.add_conn(&e);
                        break;
                    }
                }
            }
            conn::leave(ws).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let measured = (end - record_from).as_secs_f64();
    let cpu = cpu.await.unwrap_or(serde_json::Value::Null);
    let tally = tally.borrow();
    let results = json!({
        "connections": a.connections,
        "acks": tally.acks,
        "acks_per_s": report::rate(tally.acks, measured),
        "latency": report::summary(&hist.borrow()),
        "bad_acks": tally.bad_acks,
        "errors": tally.errors.json(),
        "server_cpu_us_per_ack": report::cost_us(&cpu, tally.acks),
        "cpu": cpu,
    });
    if tally.errors.total() > 0 || tally.bad_acks > 0 || tally.acks == 0 {
        let reason = format!(
            "{} errors, {} bad acks; first: {}",
            tally.errors.total(),
            tally.bad_acks,
            tally.errors.first()
        );
        return Outcome::failed(reason, results);
    }
    Outcome::ok(results)
}
