//! Result plumbing: latency summaries, CPU and memory of both processes, and
//! the one JSON line each scenario prints.

use std::collections::HashMap;
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
            // Not 2: clap exits 2 on a usage error.
            Status::Unsupported => 3,
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

/// The one core a process is pinned to (`Cpus_allowed_list: 0`), if any.
fn pinned_core(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    list.parse().ok()
}

/// (busy, total) ticks of one /proc/stat line (`cpu ` for all cores,
/// `cpuN ` for one); idle and iowait are not busy.
fn stat_ticks(name: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with(name))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// (busy, total) ticks of one core.
fn core_ticks(core: usize) -> Option<(u64, u64)> {
    stat_ticks(&format!("cpu{core} "))
}

/// (busy, total) ticks of all cores together.
fn machine_ticks() -> Option<(u64, u64)> {
    stat_ticks("cpu ")
}

/// CPU ticks of every PostgreSQL process alive now, by pid. PostgreSQL is a
/// separate service that Node's reference never uses, so what a point costs
/// it is measured apart from the server (a backend that exits during the
/// interval is missed: the server's pool keeps its connections).
fn database_ticks() -> HashMap<u32, u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "postgres")
        })
        .filter_map(|pid| Some((pid, cpu_ticks(&pid.to_string())?)))
        .collect()
}

/// CPU use of the load generator and (when its pid is known) the server over
/// a measured interval, how busy the server's core was with anything
/// else, what PostgreSQL used and how busy the whole machine was: the
/// machine is shared, so interference is measured, not assumed.
pub struct CpuMeter {
    wall: Instant,
    own: Option<u64>,
    server: Option<(u32, u64)>,
    core: Option<(usize, (u64, u64))>,
    machine: Option<(u64, u64)>,
    database: HashMap<u32, u64>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Self {
        let core = server_pid
            .and_then(pinned_core)
            .and_then(|c| Some((c, core_ticks(c)?)));
        Self {
            wall: Instant::now(),
            own: cpu_ticks("self"),
            server: server_pid.and_then(|p| Some((p, cpu_ticks(&p.to_string())?))),
            core,
            machine: machine_ticks(),
            database: database_ticks(),
        }
    }

    /// `{ loadgen_cpu_pct, server_cpu_pct, loadgen_cpu_s, server_cpu_s,
    /// server_core_busy_pct, others_on_server_core_pct, database_cpu_s,
    /// machine_busy_pct, machine_cores, wall_s }`.
    /// CPU seconds are what a run cost each process whatever else the
    /// machine was doing; percentages show whether a process was saturated.
    pub fn finish(&self) -> Value {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-6);
        let used = |before: u64, after: Option<u64>| {
            after.map(|a| a.saturating_sub(before) as f64 / CLOCK_TICKS_PER_S)
        };
        let own = self.own.and_then(|b| used(b, cpu_ticks("self")));
        let server = self
            .server
            .and_then(|(p, b)| used(b, cpu_ticks(&p.to_string())));
        let pct = |s: Option<f64>| s.map(|s| (s / wall * 1000.0).round() / 10.0);
        let core_busy = self.core.and_then(|(c, (b0, t0))| {
            let (b1, t1) = core_ticks(c)?;
            let total = t1.saturating_sub(t0).max(1) as f64;
            Some((b1.saturating_sub(b0) as f64 / total * 1000.0).round() / 10.0)
        });
        let others = match (core_busy, pct(server)) {
            (Some(busy), Some(s)) => Some(((busy - s).max(0.0) * 10.0).round() / 10.0),
            _ => None,
        };
        // A backend that started during the interval counts from zero.
        let database: u64 = database_ticks()
            .iter()
            .map(|(pid, after)| after.saturating_sub(*self.database.get(pid).unwrap_or(&0)))
            .sum();
        // Not `available_parallelism`: the load generator is pinned to one core.
        let cores = std::fs::read_to_string("/proc/stat").map_or(0, |s| {
            s.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count()
        });
        let machine_busy = self.machine.and_then(|(b0, t0)| {
            let (b1, t1) = machine_ticks()?;
            let total = t1.saturating_sub(t0).max(1) as f64;
            Some((b1.saturating_sub(b0) as f64 / total * 1000.0).round() / 10.0)
        });
        json!({
            "loadgen_cpu_pct": pct(own),
            "server_cpu_pct": pct(server),
            "loadgen_cpu_s": own,
            "server_cpu_s": server,
            "server_core_busy_pct": core_busy,
            "others_on_server_core_pct": others,
            "database_cpu_s": database as f64 / CLOCK_TICKS_PER_S,
            "machine_busy_pct": machine_busy,
            "machine_cores": cores,
            "wall_s": (wall * 1000.0).round() / 1000.0,
        })
    }
}

/// USER_HZ: fixed at 100 on Linux for /proc/<pid>/stat.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Server CPU microseconds per operation, from a [`CpuMeter::finish`] value.
pub fn cost_us(cpu: &Value, ops: u64) -> Option<f64> {
    let s = cpu["server_cpu_s"].as_f64()?;
    (ops > 0).then(|| (s * 1e6 / ops as f64 * 10.0).round() / 10.0)
}

/// Rounds a rate for printing.
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    (count as f64 / secs * 10.0).round() / 10.0
}
