//! Load generator for Switchyard and the Node socket.io reference server.
//!
//! It speaks raw Engine.IO v4 / Socket.IO v5 over WebSocket (no client
//! library in the way), on a current-thread tokio runtime meant to be pinned
//! to one core (`taskset -c 1`). Each scenario prints one JSON line and exits
//! 0 (ok), 1 (failed) or 3 (unsupported by the server); 2 is a usage error.
//!
//! - [`proto`]: packet encoding and the cheap parsing the hot paths need.
//! - [`conn`]: dialing from several 127.0.0.x source addresses, CONNECT, `session`.
//! - [`token`]: HS256 tokens minted here with the server's secret.
//! - [`report`]: histograms, CPU/RSS of both processes, the result line.
//! - [`scenario`]: `connect`, `storm`, `ack-latency`, `fanout`, `durable`, `documents`, `replay`.
#![forbid(unsafe_code)]

mod conn;
mod proto;
mod report;
mod scenario;
mod token;

use clap::Parser;
use serde_json::json;
use std::rc::Rc;

use crate::report::Outcome;
use crate::scenario::{Common, Ctx, Scenario};

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Switchyard benchmark load generator"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

fn main() {
    let cli = Cli::parse();
    // Tens of thousands of sockets need as many descriptors as the hard
    // limit allows; the scenario checks it is enough.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let name = cli.scenario.name();
    let params = cli.scenario.params();
    let outcome = match Ctx::new(cli.common, name, nofile) {
        Ok(ctx) => {
            let ctx = Rc::new(ctx);
            let target = ctx.dialer.target.http();
            let label = ctx.common.label.clone();
            let company = ctx.company.clone();
            let outcome = local.block_on(&runtime, scenario::run(ctx, cli.scenario));
            (outcome, target, label, company)
        }
        Err(e) => (
            Outcome::failed(format!("{e:#}"), json!({})),
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    let (outcome, target, label, company) = outcome;
    let line = json!({
        "scenario": name,
        "server": label,
        "target": target,
        "company": company,
        "status": outcome.status.as_str(),
        "params": params,
        "results": outcome.results,
        "nofile_limit": nofile,
    });
    println!("{line}");
    // Dropping tens of thousands of sockets one by one is slow and useless:
    // the kernel closes them at exit.
    std::process::exit(outcome.status.exit_code());
}
