//! Document update throughput on PostgreSQL, through the same path as
//! `document:update` and `PATCH /api/v1/documents` (`Documents::update`:
//! row lock → last-write-wins merge → schema/size check → commit of the new
//! version, its history row and the mutation id), without the socket layer.
//!
//! Two stores (two connection pools of 16, i.e. two nodes) share the
//! database; `WRITERS` tasks, half on each, update for `SECONDS` each
//! scenario: one hot document, then 1,000 distinct documents. Every writer
//! behaves like a client: its `baseVersion` is the version of its last ack for
//! that document, `editedAt` is within the last minute, each update carries a
//! `clientMutationId`.
//!
//! ```sh
//! cargo run --release --example doc_throughput -- postgres://postgres@127.0.0.1:5432/test
//! WRITERS=32 SECONDS=10 cargo run --release --example doc_throughput -- <url>
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use switchyard::catalog::Catalog;
use switchyard::documents::request::{DocRef, UpdateRequest};
use switchyard::documents::{Documents, Writer, bounds};
use switchyard::domain::now_ms;
use switchyard::fanout::Fanout;
use switchyard::store;

const FIELDS: [&str; 8] = [
    "status", "priority", "station", "qty", "note", "owner", "shift", "line",
];

#[derive(Default)]
struct Tally {
    updates: u64,
    merged: u64,
    conflicts: u64,
    latencies_us: Vec<u64>,
}

/// One node's documents service (its own pool), with the default limits.
async fn node(url: &str) -> anyhow::Result<Arc<Documents>> {
    let store = store::connect(url).await?;
    store.migrate().await?;
    let limits = bounds::Limits {
        max_fields: 1000,
        max_bytes: 262_144,
        tombstone_ttl_ms: store::IDEMPOTENCY_TTL_MS,
    };
    Ok(Arc::new(Documents::new(
        store,
        Arc::new(Catalog::load(None)?),
        Fanout::new(),
        limits,
        switchyard::tasks::Tasks::new(),
    )))
}

fn random_changes(rng: &mut impl Rng, author: &str, n: u64) -> Map<String, Value> {
    let mut changes = Map::new();
    for _ in 0..rng.random_range(1..=3) {
        let field = FIELDS[rng.random_range(0..FIELDS.len())];
        changes.insert(field.to_string(), json!(format!("{author}:{n}")));
    }
    changes
}

async fn writer(
    state: Arc<Documents>,
    company: String,
    author: String,
    docs: usize,
    until: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut known: HashMap<usize, i64> = HashMap::new();
    let mut rng = StdRng::from_os_rng();
    let scope = format!("u:{author}");
    while Instant::now() < until {
        let d = rng.random_range(0..docs);
        let doc = DocRef::parse("board", &format!("d{d}"))?;
        let req = UpdateRequest {
            base_version: known.get(&d).copied().unwrap_or(0),
            changes: random_changes(&mut rng, &author, tally.updates),
            edited_at: Some(now_ms() - rng.random_range(0..60_000)),
            mutation_id: Some(format!("{}", tally.updates)),
        };
        let who = Writer {
            company_id: &company,
            author: &author,
            mutation_scope: &scope,
        };
        let started = Instant::now();
        let out = state
            .update(who, &doc, &req)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        tally.updates += 1;
        if out.result["status"] == "merged" {
            tally.merged += 1;
        }
        if out.conflict.is_some() {
            tally.conflicts += 1;
        }
        if let Some(v) = out.result["version"].as_i64() {
            known.insert(d, v);
        }
    }
    Ok(tally)
}

async fn scenario(
    nodes: &[Arc<Documents>],
    writers: usize,
    docs: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let company = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let state = nodes[w % nodes.len()].clone();
            tokio::spawn(writer(state, company.clone(), format!("w{w}"), docs, until))
        })
        .collect();
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await??;
        total.updates += t.updates;
        total.merged += t.merged;
        total.conflicts += t.conflicts;
        total.latencies_us.extend(t.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let i = ((total.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        total.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    println!(
        "{docs:>5} document(s), {writers} writers on {} nodes: {} updates in {elapsed:.1} s = {:.0} updates/s \
         ({} merged, {} with conflicts); latency p50 {:.1} ms, p99 {:.1} ms",
        nodes.len(),
        total.updates,
        total.updates as f64 / elapsed,
        total.merged,
        total.conflicts,
        pct(0.5),
        pct(0.99),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let writers: usize = std::env::var("WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let nodes = vec![node(&url).await?, node(&url).await?];
    for docs in [1, 1000] {
        scenario(&nodes, writers, docs, seconds).await?;
    }
    Ok(())
}
