//! `fanout`: M subscribers and P publishers in one company; publishers emit
//! the ephemeral `dashboard:refresh` `{ timestamp, sentAt }` into `company`.
//!
//! Every publisher is also in `company` (an automatic room), so a publish is
//! delivered to M subscribers and P − 1 other publishers (never its sender):
//! expected deliveries = acknowledged publishes × (M + P − 1), counted
//! precisely on both sides. Latency is receive time − `sentAt` (µs since the
//! epoch, one clock: same machine).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::support::{Errors, iso_now, open_many, secs};
use super::{Ctx, FanoutArgs};
use crate::conn::{self, Ws};
use crate::proto::{self, Packet};
use crate::report::{self, CpuMeter, Outcome};

const EVENT: &str = "dashboard:refresh";

struct Fan {
    sub_deliveries: u64,
    pub_deliveries: u64,
    last_delivery: Instant,
    latency: Histogram<u64>,
    ack_latency: Histogram<u64>,
    published_ok: u64,
    sent: u64,
    errors: Errors,
    duplicates: u64,
    unacked: u64,
    skipped: u64,
    closed: u64,
    publishers_done: usize,
}

type Shared = Rc<RefCell<Fan>>;

/// The last `seq` a receiver saw from each publisher: a socket's events
/// arrive in order, so a `seq` not above the last one is a duplicate.
struct Seen(Vec<u64>);

impl Seen {
    fn new(publishers: usize) -> Self {
        Self(vec![0; publishers])
    }

    fn fresh(&mut self, publisher: Option<u64>, seq: Option<u64>) -> bool {
        match (publisher, seq) {
            (Some(p), Some(s)) => match self.0.get_mut(p as usize) {
                Some(last) if s <= *last => false,
                Some(last) => {
                    *last = s;
                    true
                }
                None => true,
            },
            _ => true,
        }
    }
}

/// Counts a delivery of the benchmark event (duplicates apart); ignores
/// anything else.
fn on_delivery(fan: &Shared, text: &str, publisher: bool, seen: &mut Seen) {
    let Packet::Event { body, .. } = proto::parse(text) else {
        return;
    };
    if proto::event_name(body) != Some(EVENT) {
        return;
    }
    let now = report::now_micros();
    let mut f = fan.borrow_mut();
    if !seen.fresh(proto::find_u64(body, "pub"), proto::find_u64(body, "seq")) {
        f.duplicates += 1;
        return;
    }
    if publisher {
        f.pub_deliveries += 1;
    } else {
        f.sub_deliveries += 1;
    }
    f.last_delivery = Instant::now();
    if let Some(sent) = proto::find_u64(body, "sentAt") {
        let _ = f.latency.record(now.saturating_sub(sent).max(1));
    }
}

/// Reads deliveries until `stop` flips or the server closes the socket.
async fn receive(
    mut ws: Ws,
    fan: Shared,
    publisher: bool,
    mut stop: watch::Receiver<bool>,
    mut seen: Seen,
) {
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    let _ = conn::send(&mut ws, "3".into()).await;
                }
                Some(Ok(Message::Text(t))) => on_delivery(&fan, t.as_str(), publisher, &mut seen),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    fan.borrow_mut().closed += 1;
                    return;
                }
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => return,
        }
    }
}

async fn tick(t: &mut Option<Interval>) {
    match t {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `pub` and `seq` (extra payload fields, which the catalog allows) let
/// receivers tell duplicates.
fn publish_frame(who: usize, id: u64) -> String {
    format!(
        r#"42{id}["event:publish",{{"type":"{EVENT}","payload":{{"timestamp":"{}","sentAt":{},"pub":{who},"seq":{id}}}}}]"#,
        iso_now(),
        report::now_micros()
    )
}

struct Plan {
    publishers: usize,
    rate: f64,
    window: usize,
    end: Instant,
    hard_end: Instant,
}

/// Publishes until `plan.end` (closed loop, or at `plan.rate` with at most
/// `plan.window` unacknowledged), then keeps receiving like a subscriber.
async fn publisher(
    mut ws: Ws,
    fan: Shared,
    plan: Rc<Plan>,
    stop: watch::Receiver<bool>,
    who: usize,
) {
    let mut seen = Seen::new(plan.publishers);
    let mut next_id = 0u64;
    let mut inflight: HashMap<u64, Instant> = HashMap::new();
    let mut ticker = (plan.rate > 0.0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
        i.set_missed_tick_behavior(MissedTickBehavior::Skip);
        i
    });
    loop {
        let publishing = Instant::now() < plan.end;
        if publishing && ticker.is_none() {
            while inflight.len() < plan.window {
                next_id += 1;
                inflight.insert(next_id, Instant::now());
                fan.borrow_mut().sent += 1;
                let _ = conn::send(&mut ws, publish_frame(who, next_id)).await;
            }
        }
        if !publishing && inflight.is_empty() {
            break;
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let text = t.as_str();
                    match proto::parse(text) {
                        Packet::Ping => { let _ = conn::send(&mut ws, "3".into()).await; }
                        Packet::Ack { id, body } => {
                            if let Some(t0) = inflight.remove(&id) {
                                let mut f = fan.borrow_mut();
                                let _ = f.ack_latency.record(t0.elapsed().as_micros() as u64);
                                if body.contains("\"ok\":true") {
                                    f.published_ok += 1;
                                } else {
                                    f.errors.add("ack", body);
                                }
                            }
                        }
                        _ => on_delivery(&fan, text, true, &mut seen),
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let mut f = fan.borrow_mut();
                    f.closed += 1;
                    f.unacked += inflight.len() as u64;
                    f.publishers_done += 1;
                    return;
                }
                Some(Ok(_)) => {}
            },
            _ = tick(&mut ticker), if publishing => {
                if inflight.len() < plan.window {
                    next_id += 1;
                    inflight.insert(next_id, Instant::now());
                    fan.borrow_mut().sent += 1;
                fan.borrow_mut().sent += 1;
                    let _ = conn::send(&mut ws, publish_frame(who, next_id)).await;
                } else {
                    fan.borrow_mut().skipped += 1;
                }
            }
            _ = tokio::time::sleep_until(plan.end.into()), if publishing => {}
            _ = tokio::time::sleep_until(plan.hard_end.into()) => {
                fan.borrow_mut().unacked += inflight.len() as u64;
                break;
            }
        }
    }
    fan.borrow_mut().publishers_done += 1;
    receive(ws, fan, true, stop, seen).await;
}

pub async fn run(ctx: Rc<Ctx>, a: FanoutArgs) -> Outcome {
    let (m, p) = (a.subscribers, a.publishers.max(1));
    if let Err(o) = ctx.check_nofile(m + p) {
        return o;
    }
    let company = &ctx.company;
    let auths = (0..m)
        .map(|i| ctx.minter.auth(&format!("s{i}"), company, "operator"))
        .chain((0..p).map(|i| ctx.minter.auth(&format!("w{i}"), company, "supervisor")))
        .collect();
    let mut conns = match open_many(&ctx, auths, 256).await.all() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, json!({})),
    };
    let publishers = conns.split_off(m);
    let fan: Shared = Rc::new(RefCell::new(Fan {
        sub_deliveries: 0,
        pub_deliveries: 0,
        last_delivery: Instant::now(),
        latency: report::histogram(),
        ack_latency: report::histogram(),
        published_ok: 0,
        sent: 0,
        errors: Errors::default(),
        duplicates: 0,
        unacked: 0,
        skipped: 0,
        closed: 0,
        publishers_done: 0,
    }));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(m + p);
    for c in conns {
        let f = receive(c.ws, fan.clone(), false, stop_rx.clone(), Seen::new(p));
        tasks.push(tokio::task::spawn_local(f));
    }
    let start = Instant::now();
    let plan = Rc::new(Plan {
        publishers: p,
        rate: a.rate,
        window: a.window.max(1),
        end: start + secs(a.duration),
        hard_end: start + secs(a.duration + a.drain),
    });
    let cpu = CpuMeter::start(ctx.common.server_pid);
    for (who, c) in publishers.into_iter().enumerate() {
        let f = publisher(c.ws, fan.clone(), plan.clone(), stop_rx.clone(), who);
        tasks.push(tokio::task::spawn_local(f));
    }
    tokio::time::sleep_until(plan.end.into()).await;
    // Drain: every publisher has its acks (or gave up), every delivery is in.
    let fanout_per_publish = (m + p - 1) as u64;
    loop {
        let done = {
            let f = fan.borrow();
            let expected = f.published_ok * fanout_per_publish;
            f.publishers_done >= p && f.sub_deliveries + f.pub_deliveries >= expected
        };
        if done || Instant::now() >= plan.hard_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Over publishing and drain: the deliveries counted are all of them.
    let cpu = cpu.finish();
    let _ = stop.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let f = fan.borrow();
    let received = f.sub_deliveries + f.pub_deliveries;
    let expected = f.published_ok * fanout_per_publish;
    let span = (f.last_delivery.max(plan.end) - start).as_secs_f64();
    let lost = expected.saturating_sub(received);
    let results = json!({
        "published": f.published_ok,
        "sent": f.sent,
        "publishes_per_s": report::rate(f.published_ok, secs(a.duration).as_secs_f64()),
        "expected_deliveries": expected,
        "deliveries": received,
        "subscriber_deliveries": f.sub_deliveries,
        "publisher_deliveries": f.pub_deliveries,
        "lost": lost,
        "duplicates": f.duplicates,
        "extra": received.saturating_sub(expected),
        "deliveries_per_s": report::rate(received, span),
        "span_s": span,
        "latency": report::summary(&f.latency),
        "publish_ack_latency": report::summary(&f.ack_latency),
        "unacked": f.unacked,
        "skipped_window_full": f.skipped,
        "closed_by_server": f.closed,
        "errors": f.errors.json(),
        "server_cpu_us_per_delivery": report::cost_us(&cpu, received),
        "cpu": cpu,
    });
    if f.published_ok == 0 || f.errors.total() > 0 {
        let reason = format!("publishes failed: {}", f.errors.first());
        return Outcome::failed(reason, results);
    }
    if ctx.common.strict && (lost > 0 || f.closed > 0 || f.duplicates > 0) {
        let reason = format!("{lost} deliveries lost, {} duplicated", f.duplicates);
        return Outcome::failed(reason, results);
    }
    Outcome::ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_told_per_publisher() {
        let mut seen = Seen::new(2);
        assert!(seen.fresh(Some(0), Some(1)));
        assert!(seen.fresh(Some(1), Some(1)));
        assert!(!seen.fresh(Some(0), Some(1)));
        assert!(seen.fresh(Some(0), Some(2)));
        assert!(seen.fresh(None, Some(2)));
    }
}
