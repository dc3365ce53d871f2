//! The scenarios, their command-line arguments, and what they share.

mod ack_latency;
mod connect;
mod documents;
mod durable;
mod fanout;
mod offsets;
mod replay;
mod storm;
mod support;

use std::rc::Rc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::Value;

use crate::conn::{Dialer, Target};
use crate::report::Outcome;
use crate::token::Minter;

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server under test (127.0.0.0/8 only).
    #[arg(
        long,
        env = "BENCH_URL",
        default_value = "http://127.0.0.1:3001",
        global = true
    )]
    pub url: String,
    /// HS256 secret the server verifies tokens with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub secret: Option<String>,
    /// API key for Switchyard's HTTP API (durable over HTTP, replay).
    #[arg(long, env = "BENCH_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// The server's pid: its CPU time and VmRSS are read from /proc.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Name of the server in the result line.
    #[arg(long, default_value = "switchyard", global = true)]
    pub label: String,
    /// How many 127.0.0.x source addresses to spread connections over.
    #[arg(long, default_value_t = 32, global = true)]
    pub sources: u16,
    /// Company (tenant) id; default: a fresh one per run.
    #[arg(long, global = true)]
    pub company: Option<String>,
    /// Per-connection handshake timeout and per-request timeout, ms.
    #[arg(long, default_value_t = 15_000, global = true)]
    pub timeout_ms: u64,
    /// Treat losses, gaps and refusals as failures (exit 1), not just figures.
    #[arg(long, global = true)]
    pub strict: bool,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// N authenticated connections: connects/s, failures, server RSS per connection.
    Connect(ConnectArgs),
    /// C connections doing sequential `ping` acks: acks/s and latency.
    AckLatency(AckArgs),
    /// M subscribers, P publishers of an ephemeral event: deliveries/s, loss, latency.
    Fanout(FanoutArgs),
    /// Durable `order:status_changed` publishes (socket or HTTP): events/s, offsets, latency.
    Durable(DurableArgs),
    /// Concurrent `document:update` writers (SPEC §6): updates/s, convergence.
    Documents(DocumentsArgs),
    /// Clients owed durable events reconnect at once (SPEC §5): replay time.
    Replay(ReplayArgs),
    /// N connections of one company drop and reconnect at once: time to all
    /// sessions, peak RSS against the steady state.
    Storm(StormArgs),
}

#[derive(Args, Debug, Serialize)]
pub struct StormArgs {
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connection attempts in flight while building the steady state.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Attempts in flight during the storm (default: all of them).
    #[arg(long)]
    pub storm_concurrency: Option<usize>,
    /// Seconds held before the drop (steady-state RSS read at the end).
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Seconds held after the last session (peak RSS sampling continues).
    #[arg(long, default_value_t = 3.0)]
    pub after: f64,
}

#[derive(Args, Debug, Serialize)]
pub struct ConnectArgs {
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds to hold the connections idle before reading the server's RSS.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
}

#[derive(Args, Debug, Serialize)]
pub struct AckArgs {
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds of pinging, warm-up included.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds at the start not recorded.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Each connection pings once per this many ms (starts staggered);
    /// 0 = the next ping as soon as the ack arrives (saturation).
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
}

#[derive(Args, Debug, Serialize)]
pub struct FanoutArgs {
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Publishes per second per publisher; 0 = closed loop (saturation).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Unacknowledged publishes a publisher may have in flight.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for deliveries after the last publish.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// `event:publish` from supervisor sockets (ack carries `offset`).
    Socket,
    /// `POST /api/v1/events` with the API key (response carries `offsets`).
    Http,
}

#[derive(Args, Debug, Serialize)]
pub struct DurableArgs {
    #[arg(long, value_enum, default_value_t = Via::Socket)]
    pub via: Via,
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Events per second per publisher; 0 = closed loop (saturation).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Unacknowledged publishes (socket) or requests (HTTP) in flight per publisher.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Events per HTTP request.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Entity room the events go to; one subscriber joins it.
    #[arg(long, default_value = "order:bench")]
    pub room: String,
    /// Spread publishers over this many rooms (`{room}-{i % rooms}`); 1 = all in `room`.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
}

#[derive(Args, Debug, Serialize)]
pub struct DocumentsArgs {
    /// Concurrent writers (supervisor sockets).
    #[arg(long, default_value_t = 10)]
    pub writers: usize,
    /// Documents the writers share (writer i edits document i % documents).
    #[arg(long, default_value_t = 1)]
    pub documents: usize,
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    #[arg(long, default_value = "board")]
    pub doc_type: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Resume {
    /// The client sends `auth.offsets = { company: last }` (exact resume).
    Offsets,
    /// Unchanged clients: the server's per-user cursor (offline queue).
    Queue,
}

#[derive(Args, Debug, Serialize)]
pub struct ReplayArgs {
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Durable events each client is owed.
    #[arg(long, default_value_t = 100)]
    pub events: usize,
    /// Seconds within which everything must be delivered.
    #[arg(long, default_value_t = 10.0)]
    pub deadline: f64,
    #[arg(long, value_enum, default_value_t = Resume::Offsets)]
    pub resume: Resume,
    /// Reconnections in flight at once (default: all of them).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Connect(_) => "connect",
            Scenario::AckLatency(_) => "ack-latency",
            Scenario::Fanout(_) => "fanout",
            Scenario::Durable(_) => "durable",
            Scenario::Documents(_) => "documents",
            Scenario::Replay(_) => "replay",
            Scenario::Storm(_) => "storm",
        }
    }

    pub fn params(&self) -> Value {
        let v = match self {
            Scenario::Connect(a) => serde_json::to_value(a),
            Scenario::AckLatency(a) => serde_json::to_value(a),
            Scenario::Fanout(a) => serde_json::to_value(a),
            Scenario::Durable(a) => serde_json::to_value(a),
            Scenario::Documents(a) => serde_json::to_value(a),
            Scenario::Replay(a) => serde_json::to_value(a),
            Scenario::Storm(a) => serde_json::to_value(a),
        };
        v.unwrap_or(Value::Null)
    }
}

/// What every scenario needs: the dialer, the token minter, the options.
pub struct Ctx {
    pub common: Common,
    pub dialer: Dialer,
    pub minter: Minter,
    pub company: String,
    pub nofile: u64,
    pub http: reqwest::Client,
}

impl Ctx {
    pub fn new(common: Common, scenario: &str, nofile: u64) -> anyhow::Result<Self> {
        let target = Target::parse(&common.url)?;
        let secret = common
            .secret
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no JWT secret: pass --secret or set JWT_SECRET"))?;
        let company = common.company.clone().unwrap_or_else(|| {
            format!(
                "bench-{scenario}-{}-{}",
                std::process::id(),
                crate::report::now_micros() % 1_000_000_000
            )
        });
        let timeout = Duration::from_millis(common.timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            // Small read buffers: a connect run holds ~20,000 sockets.
            dialer: Dialer::new(target, common.sources, 8 * 1024, timeout),
            minter: Minter::new(&secret),
            company,
            nofile,
            http,
            common,
        })
    }

    /// Fails early, with the reason, when the descriptor limit cannot hold `sockets`.
    pub fn check_nofile(&self, sockets: usize) -> Result<(), Outcome> {
        let need = sockets as u64 + 64;
        if need > self.nofile {
            return Err(Outcome::failed(
                format!(
                    "{sockets} sockets need ~{need} file descriptors; RLIMIT_NOFILE is {} (hard limit)",
                    self.nofile
                ),
                serde_json::json!({}),
            ));
        }
        Ok(())
    }
}

pub async fn run(ctx: Rc<Ctx>, scenario: Scenario) -> Outcome {
    match scenario {
        Scenario::Connect(a) => connect::run(ctx, a).await,
        Scenario::AckLatency(a) => ack_latency::run(ctx, a).await,
        Scenario::Fanout(a) => fanout::run(ctx, a).await,
        Scenario::Durable(a) => durable::run(ctx, a).await,
        Scenario::Documents(a) => documents::run(ctx, a).await,
        Scenario::Replay(a) => replay::run(ctx, a).await,
        Scenario::Storm(a) => storm::run(ctx, a).await,
    }
}
