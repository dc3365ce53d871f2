//! `durable`: publishes of the durable `order:status_changed` into one entity
//! room, from supervisor sockets (`event:publish`, ack `{ ok, id, offset }`)
//! or over HTTP (`POST /api/v1/events`, batches, `offsets: { room: n }`).
//!
//! One operator socket subscribes to the room and measures publish-to-delivery
//! latency (`sentAt` in the payload). The room is fresh (new company per run),
//! so its offsets must be exactly 1..=N: no gap, no duplicate, and the
//! subscriber must receive each of them.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::support::{Errors, iso_now, open_many, secs};
use super::{Ctx, DurableArgs, Via};
use crate::conn::{self, Ws};
use crate::proto::{self, Packet};
use crate::report::{self, CpuMeter, Outcome};

const EVENT: &str = "order:status_changed";

/// Offsets per room, as acknowledged to publishers and as delivered.
#[derive(Default)]
struct Log {
    acked: BTreeMap<String, Vec<u64>>,
    acked_n: usize,
    acked_without_offset: u64,
    delivered: BTreeMap<String, Vec<u64>>,
    delivered_n: usize,
    errors: Errors,
    unacked: u64,
}

impl Log {
    fn ack(&mut self, room: &str, offset: u64) {
        self.acked.entry(room.to_string()).or_default().push(offset);
        self.acked_n += 1;
    }
}

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

/// Gap/duplicate analysis of one room's acknowledged and delivered offsets.
#[derive(Default)]
struct RoomCheck {
    acked: u64,
    gaps: u64,
    duplicates: u64,
    not_from_1: bool,
    missing: u64,
    delivered_duplicates: u64,
    out_of_order: u64,
}

fn check_room(acked: &[u64], delivered: &[u64]) -> RoomCheck {
    let mut a = acked.to_vec();
    a.sort_unstable();
    let n = a.len() as u64;
    a.dedup();
    let gaps = match (a.first(), a.last()) {
        (Some(f), Some(l)) => (l - f + 1) - a.len() as u64,
        _ => 0,
    };
    let mut d = delivered.to_vec();
    d.sort_unstable();
    d.dedup();
    RoomCheck {
        acked: n,
        gaps,
        duplicates: n - a.len() as u64,
        not_from_1: a.first().is_some_and(|f| *f != 1),
        missing: a.iter().filter(|o| d.binary_search(o).is_err()).count() as u64,
        delivered_duplicates: (delivered.len() - d.len()) as u64,
        out_of_order: delivered.windows(2).filter(|w| w[1] < w[0]).count() as u64,
    }
}

/// Every room fresh, so each must hold exactly 1..=N, all delivered.
fn check_offsets(log: &Log) -> Value {
    let mut t = RoomCheck::default();
    let none = Vec::new();
    for (room, acked) in &log.acked {
        let c = check_room(acked, log.delivered.get(room).unwrap_or(&none));
        t.acked += c.acked;
        t.gaps += c.gaps;
        t.duplicates += c.duplicates;
        t.not_from_1 |= c.not_from_1;
        t.missing += c.missing;
        t.delivered_duplicates += c.delivered_duplicates;
        t.out_of_order += c.out_of_order;
    }
    let gapless = t.acked > 0 && t.gaps == 0 && t.duplicates == 0 && !t.not_from_1;
    json!({
        "rooms": log.acked.len(),
        "acked": t.acked,
        "gaps": t.gaps,
        "duplicates": t.duplicates,
        "first_offset_not_1": t.not_from_1,
        "gapless": gapless,
        "delivered": log.delivered_n,
        "delivered_missing": t.missing,
        "delivered_duplicates": t.delivered_duplicates,
        "delivered_out_of_order": t.out_of_order,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log(acked: &[u64], delivered: &[u64]) -> Log {
        let mut l = Log::default();
        for o in acked {
            l.ack("r", *o);
        }
        l.delivered.insert("r".into(), delivered.to_vec());
        l.delivered_n = delivered.len();
        l
    }

    #[test]
    fn gapless_offsets_pass() {
        let v = check_offsets(&log(&[3, 1, 2], &[1, 3, 2]));
        assert_eq!(v["gapless"], json!(true));
        assert_eq!(v["delivered_out_of_order"], json!(1));
        assert_eq!(v["delivered_missing"], json!(0));
    }

    #[test]
    fn gaps_duplicates_and_missing_deliveries_are_found() {
        let v = check_offsets(&log(&[1, 2, 2, 5], &[1, 2]));
        assert_eq!(v["gapless"], json!(false));
        assert_eq!(v["gaps"], json!(2));
        assert_eq!(v["duplicates"], json!(1));
        assert_eq!(v["delivered_missing"], json!(1));
        // Not starting at 1 in a fresh room is a gap too.
        assert_eq!(check_offsets(&log(&[2, 3], &[]))["gapless"], json!(false));
    }

    #[test]
    fn rooms_are_checked_separately() {
        let mut l = log(&[1, 2], &[1, 2]);
        l.ack("s", 1);
        l.ack("s", 2);
        assert_eq!(check_offsets(&l)["gapless"], json!(true));
        l.ack("s", 4);
        assert_eq!(check_offsets(&l)["gaps"], json!(1));
    }
}
