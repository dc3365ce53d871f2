//! `replay`: K clients connect once and leave; E durable events are
//! published into `company` over HTTP while they are away; then all K
//! reconnect at once and must each receive the E events, in offset order,
//! before `session` (SPEC §5). Target: all K × E delivered within the deadline.
//!
//! `--resume offsets` sends `auth.offsets = { company: last }` (exact
//! resume); `--resume queue` sends nothing and relies on the server's
//! per-user cursor (the offline queue of unchanged clients).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use super::support::{Errors, iso_now, open_many, secs};
use super::{Ctx, ReplayArgs, Resume};
use crate::conn::{self, Conn};
use crate::proto::{self, Packet};
use crate::report::{self, CpuMeter, Outcome};

const EVENT: &str = "order:status_changed";

#[derive(Default)]
struct Tally {
    sessions: usize,
    complete: usize,
    before_session: u64,
    after_session: u64,
    session_replayed: u64,
    gaps_or_disorder: u64,
    duplicates: u64,
    errors: Errors,
    done_at: Option<Instant>,
    completion: Option<hdrhistogram::Histogram<u64>>,
}

/// Offsets of the benchmark event in one frame body, if it is one.
fn offset_of(body: &str) -> Option<u64> {
    (proto::event_name(body) == Some(EVENT))
        .then(|| proto::find_u64(body, "offset"))
        .flatten()
}

/// Tracks one client's offsets: expects base+1, base+2, … base+owed.
struct Cursor {
    next: u64,
    last: u64,
    seen: u64,
}

impl Cursor {
    fn take(&mut self, off: u64, t: &mut Tally) {
        self.seen += 1;
        if off < self.next {
            t.duplicates += 1;
        } else {
            if off != self.next {
                t.gaps_or_disorder += 1;
            }
            self.next = off + 1;
        }
    }

    fn done(&self) -> bool {
        self.next > self.last
    }
}

async fn publish(ctx: &Ctx, events: usize) -> Result<(u64, u64), String> {
    let url = format!("{}/api/v1/events", ctx.dialer.target.http());
    let key = ctx.common.api_key.clone().unwrap_or_default();
    let mut offsets = Vec::with_capacity(events);
    for chunk in (0..events).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({ "type": EVENT, "companyId": ctx.company, "source": "loadgen",
                "payload": { "orderId": format!("o{i}"), "oldStatus": "pending",
                             "newStatus": "completed", "timestamp": iso_now() } })
            })
            .collect();
        let resp = ctx
            .http
            .post(&url)
            .bearer_auth(&key)
            .json(&batch)
            .send()
            .await;
        let body: Value = match resp {
            Ok(r) if r.status().as_u16() == 202 => r.json().await.map_err(|e| e.to_string())?,
            Ok(r) => return Err(format!("POST /api/v1/events: {}", r.status())),
            Err(e) => return Err(format!("POST /api/v1/events: {e}")),
        };
        for ev in body["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            offsets.push(
                ev["offsets"]["company"]
                    .as_u64()
                    .ok_or("no company offset")?,
            );
        }
    }
    match (offsets.iter().min(), offsets.iter().max()) {
        (Some(lo), Some(hi)) if hi - lo + 1 == events as u64 => Ok((lo - 1, *hi)),
        _ => Err(format!("published offsets are not contiguous: {offsets:?}")),
    }
}

/// One reconnecting client: replayed events before `session`, then live ones
/// until it has everything or `stop` flips.
async fn client(
    c: Conn,
    base: u64,
    owed: u64,
    start: Instant,
    t: Rc<RefCell<Tally>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut cur = Cursor {
        next: base + 1,
        last: base + owed,
        seen: 0,
    };
    let mut ws = c.ws;
    {
        let mut tally = t.borrow_mut();
        tally.sessions += 1;
        tally.session_replayed += c.session["replayed"].as_u64().unwrap_or(0);
        for body in &c.before_session {
            if let Some(off) = offset_of(body) {
                tally.before_session += 1;
                cur.take(off, &mut tally);
            }
        }
    }
    while !cur.done() {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(text))) => match proto::parse(text.as_str()) {
                    Packet::Ping => { let _ = conn::send(&mut ws, "3".into()).await; }
                    Packet::Event { body, .. } => if let Some(off) = offset_of(body) {
                        let mut tally = t.borrow_mut();
                        tally.after_session += 1;
                        cur.take(off, &mut tally);
                    },
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    t.borrow_mut().errors.add("closed", "socket closed before replay completed");
                    return;
                }
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => return,
        }
    }
    let mut tally = t.borrow_mut();
    tally.complete += 1;
    let now = Instant::now();
    tally.done_at = Some(tally.done_at.map_or(now, |d| d.max(now)));
    if let Some(h) = tally.completion.as_mut() {
        let _ = h.record((now - start).as_micros() as u64);
    }
}

pub async fn run(ctx: Rc<Ctx>, a: ReplayArgs) -> Outcome {
    let k = a.clients.max(1);
    if ctx.common.api_key.is_none() {
        return Outcome::failed("replay publishes over HTTP: pass --api-key", json!({}));
    }
    if let Err(o) = ctx.check_nofile(k) {
        return o;
    }
    let tokens: Vec<String> = (0..k)
        .map(|i| ctx.minter.mint(&format!("r{i}"), &ctx.company, "operator"))
        .collect();
    // Phase 1: everyone connects once (the server learns them), then leaves.
    let first = tokens.iter().map(|tk| json!({ "token": tk })).collect();
    let conns = match open_many(&ctx, first, 256).await.all() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(format!("first connect: {e}"), json!({})),
    };
    for c in conns {
        conn::leave(c.ws).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Phase 2: the events they miss.
    let (base, _last) = match publish(&ctx, a.events).await {
        Ok(r) => r,
        Err(e) => return Outcome::failed(e, json!({})),
    };
    // Phase 3: all reconnect at once.
    let tally = Rc::new(RefCell::new(Tally {
        completion: Some(report::histogram()),
        ..Tally::default()
    }));
    let (stop, stop_rx) = watch::channel(false);
    let sem = std::sync::Arc::new(Semaphore::new(a.concurrency.unwrap_or(k).max(1)));
    let owed = a.events as u64;
    let start = Instant::now();
    let cpu = CpuMeter::start(ctx.common.server_pid);
    for tk in &tokens {
        let auth = match a.resume {
            Resume::Offsets => json!({ "token": tk, "offsets": { "company": base } }),
            Resume::Queue => json!({ "token": tk }),
        };
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let (ctx, t, rx) = (ctx.clone(), tally.clone(), stop_rx.clone());
        tokio::task::spawn_local(async move {
            let opened = ctx.dialer.open(&auth).await;
            drop(permit);
            match opened {
                Ok(c) => client(c, base, owed, start, t, rx).await,
                Err(e) => t.borrow_mut().errors.add_conn(&e),
            }
        });
    }
    let deadline = start + secs(a.deadline);
    let mut all_sessions_at = None;
    loop {
        let (settled, nothing, finished) = {
            let t = tally.borrow();
            let failed = t.errors.total() as usize;
            (
                t.sessions + failed >= k,
                t.before_session + t.after_session == 0,
                t.complete + failed >= k,
            )
        };
        if settled && all_sessions_at.is_none() {
            all_sessions_at = Some(Instant::now());
        }
        let gave_up =
            nothing && all_sessions_at.is_some_and(|at| at.elapsed() > Duration::from_secs(1));
        if finished || Instant::now() >= deadline || gave_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu.finish();
    let _ = stop.send(true);
    let t = tally.borrow();
    let delivered = t.before_session + t.after_session;
    let expected = (k * a.events) as u64;
    let time_to_all = t
        .done_at
        .filter(|_| t.complete == k)
        .map(|d| (d - start).as_secs_f64());
    let results = json!({
        "clients": k,
        "owed_per_client": a.events,
        "expected": expected,
        "delivered": delivered,
        "before_session": t.before_session,
        "after_session": t.after_session,
        "session_replayed_sum": t.session_replayed,
        "clients_complete": t.complete,
        "time_to_all_s": time_to_all,
        "within_deadline": time_to_all.is_some_and(|s| s <= a.deadline),
        "deliveries_per_s": time_to_all.map(|s| report::rate(delivered, s)),
        "client_completion": t.completion.as_ref().map(report::summary),
        "gaps_or_disorder": t.gaps_or_disorder,
        "duplicates": t.duplicates,
        "errors": t.errors.json(),
        "cpu": cpu,
    });
    if delivered == 0 && t.errors.total() == 0 {
        return Outcome::unsupported(
            "no event replayed on reconnect (session.replayed = 0, nothing before session)",
            results,
        );
    }
    let clean =
        t.complete == k && t.gaps_or_disorder == 0 && t.duplicates == 0 && t.errors.total() == 0;
    if !clean && (ctx.common.strict || t.errors.total() > 0) {
        return Outcome::failed("replay incomplete, out of order or duplicated", results);
    }
    Outcome::ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_counts_gaps_and_duplicates() {
        let mut t = Tally::default();
        let mut c = Cursor {
            next: 11,
            last: 13,
            seen: 0,
        };
        for off in [11, 11, 13] {
            c.take(off, &mut t);
        }
        assert_eq!((t.duplicates, t.gaps_or_disorder, c.seen), (1, 1, 3));
        assert!(c.done());
    }

    #[test]
    fn only_the_benchmark_event_has_an_offset() {
        let body = r#"["order:status_changed",{"orderId":"o1"},{"offset":7}]"#;
        assert_eq!(offset_of(body), Some(7));
        assert_eq!(offset_of(r#"["session",{"offset":7}]"#), None);
    }
}
