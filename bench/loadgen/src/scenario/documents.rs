//! `documents`: W supervisor sockets editing shared documents with
//! `document:update` (SPEC §6), each from the last version it knows, so
//! concurrent writers produce `merged` results.
//!
//! Checks what SPEC §6 promises under concurrency: every version number is
//! used once (acknowledged versions of a document are exactly 1..=N), and
//! every writer ends on the same document (`document:get`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use serde_json::{Value, json};

use super::support::{Errors, is_unknown_event, open_many, secs};
use super::{Ctx, DocumentsArgs};
use crate::conn::{self, ConnError, Ws};
use crate::proto::{self, Packet};
use crate::report::{self, CpuMeter, Outcome};

#[derive(Default)]
struct Tally {
    applied: u64,
    merged: u64,
    errors: Errors,
    unsupported: Option<String>,
    /// Acknowledged versions per document.
    versions: BTreeMap<usize, Vec<u64>>,
    updated_events: u64,
    conflict_events: u64,
    /// What each writer read back at the end: (document, version, data).
    finals: Vec<(usize, u64, Value)>,
}

fn now_ms() -> u64 {
    report::now_micros() / 1000
}

async fn timed_call(
    ws: &mut Ws,
    event: &str,
    data: &Value,
    id: u64,
    timeout: std::time::Duration,
    other: impl FnMut(&str),
) -> Result<Value, ConnError> {
    match tokio::time::timeout(timeout, conn::call(ws, event, Some(data), id, other)).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::Timeout),
    }
}

/// What one writer needs besides its socket.
struct Writer {
    ctx: Rc<Ctx>,
    who: usize,
    doc: usize,
    a: Rc<DocumentsArgs>,
    end: Instant,
    tally: Rc<RefCell<Tally>>,
    hist: Rc<RefCell<hdrhistogram::Histogram<u64>>>,
}

async fn writer(w: Writer, mut ws: Ws) {
    let Writer {
        ctx,
        who,
        doc,
        a,
        end,
        tally: t,
        hist,
    } = w;
    let timeout = std::time::Duration::from_millis(ctx.common.timeout_ms);
    let id = format!("bench-{doc}");
    let known = Cell::new(0u64);
    let mut other = |text: &str| {
        if let Packet::Event { body, .. } = proto::parse(text) {
            match proto::event_name(body) {
                Some("document:updated") => {
                    t.borrow_mut().updated_events += 1;
                    if let Some(v) = proto::find_u64(body, "version") {
                        known.set(known.get().max(v));
                    }
                }
                Some("document:conflict") => t.borrow_mut().conflict_events += 1,
                _ => {}
            }
        }
    };
    let room = json!({ "room": format!("document:{}:{id}", a.doc_type) });
    let mut ack_id = 1u64;
    if let Err(e) = timed_call(&mut ws, "subscribe", &room, ack_id, timeout, &mut other).await {
        t.borrow_mut().errors.add_conn(&e);
        return;
    }
    let mut seq = 0u64;
    while Instant::now() < end {
        seq += 1;
        ack_id += 1;
        let update = json!({
            "type": a.doc_type, "id": id, "baseVersion": known.get(),
            "changes": { format!("w{who}"): seq, "shared": format!("w{who}-{seq}") },
            "editedAt": now_ms(), "clientMutationId": format!("w{who}-{seq}"),
        });
        let t0 = Instant::now();
        let ack = match timed_call(
            &mut ws,
            "document:update",
            &update,
            ack_id,
            timeout,
            &mut other,
        )
        .await
        {
            Ok(ack) => ack,
            Err(ConnError::Timeout) => {
                t.borrow_mut().unsupported = Some("no ack to document:update".into());
                return;
            }
            Err(e) => {
                t.borrow_mut().errors.add_conn(&e);
                return;
            }
        };
        let _ = hist.borrow_mut().record(t0.elapsed().as_micros() as u64);
        let mut tally = t.borrow_mut();
        if is_unknown_event(&ack) {
            tally.unsupported = Some(format!("document:update answered {}", ack["error"]));
            return;
        }
        if ack["ok"] != json!(true) {
            tally.errors.add("ack", &ack);
            continue;
        }
        match ack["status"].as_str() {
            Some("applied") => tally.applied += 1,
            Some("merged") => tally.merged += 1,
            _ => tally.errors.add("status", &ack),
        }
        if let Some(v) = ack["version"].as_u64() {
            known.set(known.get().max(v));
            tally.versions.entry(doc).or_default().push(v);
        }
    }
    // Let the other writers' last updates arrive, then read the document back.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    ack_id += 1;
    let get = json!({ "type": a.doc_type, "id": id });
    match timed_call(&mut ws, "document:get", &get, ack_id, timeout, &mut other).await {
        Ok(ack) if ack["ok"] == json!(true) => {
            let d = &ack["document"];
            let v = d["version"].as_u64().unwrap_or(0);
            t.borrow_mut().finals.push((doc, v, d["data"].clone()));
        }
        Ok(ack) => t.borrow_mut().errors.add("get", &ack),
        Err(e) => t.borrow_mut().errors.add_conn(&e),
    }
    conn::leave(ws).await;
}

/// Versions of one document must be exactly 1..=N; readers must agree.
fn converged(t: &Tally, docs: usize) -> (bool, Value) {
    let mut per_doc = Vec::new();
    let mut ok = true;
    for d in 0..docs {
        let mut v = t.versions.get(&d).cloned().unwrap_or_default();
        v.sort_unstable();
        let n = v.len() as u64;
        let contiguous = v.iter().enumerate().all(|(i, x)| *x == i as u64 + 1);
        let finals: Vec<_> = t.finals.iter().filter(|f| f.0 == d).collect();
        let agree = finals
            .windows(2)
            .all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2);
        let final_version = finals.first().map(|f| f.1);
        let matches = final_version == Some(n);
        ok &= contiguous && agree && matches;
        per_doc.push(
            json!({ "document": d, "updates": n, "versions_exactly_1_to_n": contiguous,
                             "readers_agree": agree, "final_version": final_version }),
        );
    }
    (ok, json!(per_doc))
}

pub async fn run(ctx: Rc<Ctx>, a: DocumentsArgs) -> Outcome {
    let a = Rc::new(a);
    let (w, docs) = (a.writers.max(1), a.documents.max(1));
    let auths = (0..w)
        .map(|i| {
            ctx.minter
                .auth(&format!("e{i}"), &ctx.company, "supervisor")
        })
        .collect();
    let conns = match open_many(&ctx, auths, 64).await.all() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, json!({})),
    };
    let tally = Rc::new(RefCell::new(Tally::default()));
    let hist = Rc::new(RefCell::new(report::histogram()));
    let start = Instant::now();
    let end = start + secs(a.duration);
    let cpu = CpuMeter::start(ctx.common.server_pid);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let w = Writer {
                ctx: ctx.clone(),
                who: i,
                doc: i % docs,
                a: a.clone(),
                end,
                tally: tally.clone(),
                hist: hist.clone(),
            };
            tokio::task::spawn_local(writer(w, c.ws))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let cpu = cpu.finish();
    let t = tally.borrow();
    let ok_updates = t.applied + t.merged;
    let (consistent, per_doc) = converged(&t, docs);
    let results = json!({
        "updates": ok_updates,
        "updates_per_s": report::rate(ok_updates, a.duration),
        "applied": t.applied,
        "merged": t.merged,
        "ack_latency": report::summary(&hist.borrow()),
        "document_updated_events": t.updated_events,
        "document_conflict_events": t.conflict_events,
        "documents": per_doc,
        "consistent": consistent,
        "errors": t.errors.json(),
        "cpu": cpu,
    });
    if let Some(reason) = &t.unsupported {
        return Outcome::unsupported(reason.clone(), results);
    }
    if ok_updates == 0 || t.errors.total() > 0 || !consistent {
        let reason = format!(
            "{} errors (first: {}); consistent: {consistent}",
            t.errors.total(),
            t.errors.first()
        );
        return Outcome::failed(reason, results);
    }
    Outcome::ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_needs_contiguous_versions_and_agreeing_readers() {
        let mut t = Tally::default();
        t.versions.insert(0, vec![2, 1, 3]);
        t.finals = vec![(0, 3, json!({"a": 1})), (0, 3, json!({"a": 1}))];
        assert!(converged(&t, 1).0);
        t.finals.push((0, 3, json!({"a": 2})));
        assert!(!converged(&t, 1).0);
        t.finals.pop();
        t.versions.insert(0, vec![1, 3]);
        assert!(!converged(&t, 1).0);
    }
}
