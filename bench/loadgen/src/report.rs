//! Result plumbing: latency summaries, CPU and memory of both processes, and
//! the one JSON line each scenario prints.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// How a scenario ended; also the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A protocol error, or (with `--strict`) a loss, gap or refusal.
    Failed,
    /// The server does not implement what the scenario exercises.
    Unsupported,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Unsupported => "unsupported",
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Failed => 1,
            Status::Unsupported => 2,
        }
    }
}

pub struct Outcome {
    pub status: Status,
    pub results: Value,
}

impl Outcome {
    pub fn ok(results: Value) -> Self {
        Self {
            status: Status::Ok,
            results,
        }
    }

    pub fn unsupported(reason: impl Into<String>, results: Value) -> Self {
        let mut results = results;
        results["reason"] = json!(format!("unsupported by server: {}", reason.into()));
        Self {
            status: Status::Unsupported,
            results,
        }
    }

    pub fn failed(reason: impl Into<String>, results: Value) -> Self {
        let mut results = results;
        results["reason"] = json!(reason.into());
        Self {
            status: Status::Failed,
            results,
        }
    }
}

/// Latencies in microseconds, 1 µs to 120 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// `{ count, p50_ms, p90_ms, p99_ms, max_ms, mean_ms }`.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "mean_ms": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    })
}

/// Microseconds since the epoch: the clock both ends of a fan-out share.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// VmRSS of a process in KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU use of the load generator and (when its pid is known) the server over
/// a measured interval, as percent of one core.
pub struct CpuMeter {
    wall: Instant,
    own: Option<u64>,
    server: Option<(u32, u64)>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            wall: Instant::now(),
            own: cpu_ticks("self"),
            server: server_pid.and_then(|p| Some((p, cpu_ticks(&p.to_string())?))),
        }
    }

    pub fn finish(&self) -> Value {
        let secs = self.wall.elapsed().as_secs_f64().max(1e-6);
        let pct = |before: u64, after: Option<u64>| {
            after
                .map(|a| ((a.saturating_sub(before)) as f64 / 100.0 / secs * 1000.0).round() / 10.0)
        };
        json!({
            "loadgen_cpu_pct": self.own.and_then(|b| pct(b, cpu_ticks("self"))),
            "server_cpu_pct": self.server.and_then(|(p, b)| pct(b, cpu_ticks(&p.to_string()))),
        })
    }
}

/// Rounds a rate for printing.
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    (count as f64 / secs * 10.0).round() / 10.0
}
