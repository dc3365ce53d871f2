//! `durable`: publishes of the durable `order:status_changed` into one entity
//! room, from supervisor sockets (`event:publish`, ack `{ ok, id, offset }`)
//! or over HTTP (`POST /api/v1/events`, batches, `offsets: { room: n }`).
//!
//! One operator socket subscribes to the room and measures publish-to-delivery
//! latency (`sentAt` in the payload). The room is fresh (new company per run),
//! so its offsets must be exactly 1..=N: no gap, no duplicate, and the
//! subscriber must receive each of them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::offsets::{Log, check_offsets};
use super::support::{iso_now, open_many, secs};
use super::{Ctx, DurableArgs, Via};
use crate::conn::{self, Ws};
use crate::proto::{self, Packet};
use crate::report::{self, CpuMeter, Outcome};

const EVENT: &str = "order:status_changed";

/// The room publisher `who` writes to: `room`, or `room-{who % rooms}`.
fn room_of(a: &DurableArgs, who: usize) -> String {
    if a.rooms <= 1 {
        a.room.clone()
    } else {
        format!("{}-{}", a.room, who % a.rooms)
    }
}

struct Shared {
    log: RefCell<Log>,
    latency: RefCell<Histogram<u64>>,
    ack_latency: RefCell<Histogram<u64>>,
}

fn payload(seq: u64) -> Value {
    json!({
        "orderId": format!("o{}", seq % 1000),
        "oldStatus": "pending",
        "newStatus": "in_progress",
        "timestamp": iso_now(),
        "sentAt": report::now_micros(),
    })
}

/// The subscriber: records each delivery's offset and latency.
async fn subscriber(mut ws: Ws, sh: Rc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => match proto::parse(t.as_str()) {
                    Packet::Ping => { let _ = conn::send(&mut ws, "3".into()).await; }
                    Packet::Event { body, .. } if proto::event_name(body) == Some(EVENT) => {
                        let now = report::now_micros();
                        if let Some(sent) = proto::find_u64(body, "sentAt") {
                            let _ = sh.latency.borrow_mut().record(now.saturating_sub(sent).max(1));
                        }
                        if let (Some(off), Some(room)) =
                            (proto::find_u64(body, "offset"), proto::find_str(body, "room"))
                        {
                            let mut log = sh.log.borrow_mut();
                            log.delivered.entry(room.to_string()).or_default().push(off);
                            log.delivered_n += 1;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => return,
        }
    }
}

fn record_ack(sh: &Shared, room: &str, body: &str, t0: Instant) {
    let _ = sh
        .ack_latency
        .borrow_mut()
        .record(t0.elapsed().as_micros() as u64);
    let mut log = sh.log.borrow_mut();
    if !body.contains("\"ok\":true") {
        log.errors.add("ack", body);
    } else if let Some(off) = proto::find_u64(body, "offset") {
        log.ack(room, off);
    } else {
        log.acked_without_offset += 1;
    }
}

/// One socket publisher: closed loop with `window` in flight, or at `rate`.
async fn socket_publisher(
    mut ws: Ws,
    sh: Rc<Shared>,
    a: Rc<DurableArgs>,
    end: Instant,
    who: usize,
) {
    let room = room_of(&a, who);
    let hard_end = end + secs(a.drain);
    let mut inflight: HashMap<u64, Instant> = HashMap::new();
    let mut next = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate.max(1e-3)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let frame = |id: u64| {
        let data = json!({ "type": EVENT, "room": room, "payload": payload(id) });
        proto::event("event:publish", Some(&data), Some(id))
    };
    loop {
        let publishing = Instant::now() < end;
        if publishing && a.rate <= 0.0 {
            while inflight.len() < a.window.max(1) {
                next += 1;
                inflight.insert(next, Instant::now());
                let _ = conn::send(&mut ws, frame(next)).await;
            }
        }
        if !publishing && inflight.is_empty() {
            return;
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => match proto::parse(t.as_str()) {
                    Packet::Ping => { let _ = conn::send(&mut ws, "3".into()).await; }
                    Packet::Ack { id, body } => {
                        if let Some(t0) = inflight.remove(&id) {
                            record_ack(&sh, &room, body, t0);
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    sh.log.borrow_mut().errors.add("closed", "publisher socket closed by server");
                    return;
                }
                Some(Ok(_)) => {}
            },
            _ = ticker.tick(), if publishing && a.rate > 0.0 => {
                if inflight.len() < a.window.max(1) {
                    next += 1;
                    inflight.insert(next, Instant::now());
                    let _ = conn::send(&mut ws, frame(next)).await;
                }
            }
            _ = tokio::time::sleep_until(end.into()), if publishing => {}
            _ = tokio::time::sleep_until(hard_end.into()) => {
                sh.log.borrow_mut().unacked += inflight.len() as u64;
                return;
            }
        }
    }
}

/// One HTTP publisher: sequential batched requests, closed loop or at `rate` events/s.
async fn http_publisher(
    ctx: Rc<Ctx>,
    sh: Rc<Shared>,
    a: Rc<DurableArgs>,
    end: Instant,
    who: usize,
) {
    let url = format!("{}/api/v1/events", ctx.dialer.target.http());
    let key = ctx.common.api_key.clone().unwrap_or_default();
    let batch = a.batch.max(1);
    let period = Duration::from_secs_f64(batch as f64 / a.rate.max(1e-3));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq = (who as u64) << 32;
    let room = room_of(&a, who);
    while Instant::now() < end {
        if a.rate > 0.0 {
            ticker.tick().await;
        }
        let events: Vec<Value> = (0..batch)
            .map(|_| {
                seq += 1;
                json!({ "type": EVENT, "companyId": ctx.company, "rooms": [room],
                        "payload": payload(seq), "source": "loadgen" })
            })
            .collect();
        let t0 = Instant::now();
        let resp = ctx
            .http
            .post(&url)
            .bearer_auth(&key)
            .json(&events)
            .send()
            .await;
        let body = match resp {
            Ok(r) if r.status().as_u16() == 202 => r.json::<Value>().await.unwrap_or(Value::Null),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                sh.log
                    .borrow_mut()
                    .errors
                    .add("http", format!("{status}: {text}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                sh.log.borrow_mut().errors.add("http", e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sh
            .ack_latency
            .borrow_mut()
            .record(t0.elapsed().as_micros() as u64);
        let mut log = sh.log.borrow_mut();
        for ev in body["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            match ev["offsets"][&room].as_u64() {
                Some(off) => log.ack(&room, off),
                None => log.acked_without_offset += 1,
            }
        }
    }
}

pub async fn run(ctx: Rc<Ctx>, a: DurableArgs) -> Outcome {
    let a = Rc::new(a);
    let p = a.publishers.max(1);
    if a.via == Via::Http && ctx.common.api_key.is_none() {
        return Outcome::failed("--via http needs --api-key (or BENCH_API_KEY)", json!({}));
    }
    let sockets = if a.via == Via::Socket { p } else { 0 };
    let mut auths = vec![ctx.minter.auth("reader", &ctx.company, "operator")];
    auths.extend((0..sockets).map(|i| {
        ctx.minter
            .auth(&format!("w{i}"), &ctx.company, "supervisor")
    }));
    let mut conns = match open_many(&ctx, auths, 64).await.all() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, json!({})),
    };
    let publishers = conns.split_off(1);
    let mut reader = conns.pop().expect("one subscriber").ws;
    let rooms: Vec<String> = (0..a.rooms.max(1)).map(|i| room_of(&a, i)).collect();
    let sub = json!({ "rooms": rooms });
    match conn::call(&mut reader, "subscribe", Some(&sub), 1, |_| {}).await {
        Ok(ack)
            if ack["ok"] == json!(true) && ack["denied"].as_array().is_none_or(Vec::is_empty) => {}
        Ok(ack) => return Outcome::failed(format!("subscribe refused: {ack}"), json!({})),
        Err(e) => return Outcome::failed(format!("subscribe: {e}"), json!({})),
    }
    let sh = Rc::new(Shared {
        log: RefCell::new(Log::default()),
        latency: RefCell::new(report::histogram()),
        ack_latency: RefCell::new(report::histogram()),
    });
    let (stop, stop_rx) = watch::channel(false);
    let reader_task = tokio::task::spawn_local(subscriber(reader, sh.clone(), stop_rx));
    let start = Instant::now();
    let end = start + secs(a.duration);
    let cpu = CpuMeter::start(ctx.common.server_pid);
    let mut tasks = Vec::new();
    for (who, c) in publishers.into_iter().enumerate() {
        let f = socket_publisher(c.ws, sh.clone(), a.clone(), end, who);
        tasks.push(tokio::task::spawn_local(f));
    }
    if a.via == Via::Http {
        for who in 0..p {
            let f = http_publisher(ctx.clone(), sh.clone(), a.clone(), end, who);
            tasks.push(tokio::task::spawn_local(f));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    let hard_end = Instant::now() + secs(a.drain);
    while Instant::now() < hard_end {
        let all_in = {
            let log = sh.log.borrow();
            log.delivered_n >= log.acked_n + log.acked_without_offset as usize
        };
        if all_in {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), reader_task).await;
    let log = sh.log.borrow();
    let published = log.acked_n as u64 + log.acked_without_offset;
    let offsets = (log.acked_without_offset == 0).then(|| check_offsets(&log));
    let results = json!({
        "via": a.via,
        "published": published,
        "events_per_s": report::rate(published, elapsed),
        "offsets": offsets,
        "durable": offsets.is_some(),
        "latency": report::summary(&sh.latency.borrow()),
        "ack_latency": report::summary(&sh.ack_latency.borrow()),
        "unacked": log.unacked,
        "errors": log.errors.json(),
        "server_cpu_us_per_event": report::cost_us(&cpu, published),
        "cpu": cpu,
    });
    if published == 0 || log.errors.total() > 0 {
        return Outcome::failed(format!("publishes failed: {}", log.errors.first()), results);
    }
    let gapless = offsets
        .as_ref()
        .is_none_or(|o| o["gapless"] == json!(true) && o["delivered_missing"] == json!(0));
    if ctx.common.strict && !gapless {
        return Outcome::failed("offsets not gapless or deliveries missing", results);
    }
    Outcome::ok(results)
}
