//! The cluster self-probe (`cluster::probe`) under a flood of cluster
//! traffic: Redis pub/sub fan-out faster than the node reads it makes fred's
//! message channels lag. Health may say `degraded` while the node cannot
//! prove it hears the cluster, but once the flood ends it must say `ok`
//! again, and the probe must keep running (a lagged receiver once ended it
//! for good, leaving a healthy node `degraded` until restarted).

mod common;

use std::time::{Duration, Instant};

use common::process::Server;
use fred::prelude::*;
use serde_json::Value;
use socketioxide_core::Uid;
use socketioxide_core::adapter::remote_packet::{RequestOut, RequestTypeOut};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn health(base: &str) -> Option<Value> {
    let res = reqwest::Client::new()
        .get(format!("{base}/health/websocket"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    res.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_recovers_after_a_flood_of_cluster_traffic() {
    let prefix = common::unique("sy-probe-");
    let url = redis_url();
    let server = Server::start(
        &[
            ("REDIS_URL", url.as_str()),
            ("REDIS_PREFIX", prefix.as_str()),
        ],
        None,
    )
    .await;
    let base = format!("http://{}", server.addr());
    let first = health(&base).await.expect("health answers");
    assert_eq!(first["redis"], "ok", "starts subscribed: {first}");

    // Another node's heartbeats on the adapter's request channel: what every
    // node receives and ignores, here far more of them than the node's
    // channels hold.
    let heartbeat = rmp_serde::to_vec(&RequestOut::new_empty(
        Uid::new(),
        RequestTypeOut::Heartbeat,
    ))
    .expect("heartbeat encodes");
    let channel = format!("{prefix}-request#/#");
    let flood_for = Duration::from_secs(8);
    let mut publishers = Vec::new();
    for _ in 0..4 {
        let client = Client::new(
            fred::types::config::Config::from_url(&url).expect("redis url"),
            None,
            None,
            None,
        );
        client.init().await.expect("redis");
        let (channel, heartbeat) = (channel.clone(), heartbeat.clone());
        publishers.push(tokio::spawn(async move {
            let end = Instant::now() + flood_for;
            let mut sent = 0u64;
            while Instant::now() < end {
                let pipeline = client.pipeline();
                for _ in 0..200 {
                    let _: Result<(), _> = pipeline
                        .spublish::<(), _, _>(channel.as_str(), heartbeat.clone())
                        .await;
                }
                let _: Vec<i64> = pipeline.all().await.expect("publish");
                sent += 200;
            }
            sent
        }));
    }
    let mut degraded_seen = false;
    let flood_end = Instant::now() + flood_for;
    while Instant::now() < flood_end {
        if let Some(h) = health(&base).await {
            degraded_seen |= h["redis"] != "ok";
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut sent = 0;
    for p in publishers {
        sent += p.await.expect("publisher");
    }
    println!("published {sent} heartbeats; health said degraded meanwhile: {degraded_seen}");

    // Probes run every 2 s and wait 1.5 s: a few rounds to recover.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut last = Value::Null;
    loop {
        if let Some(h) = health(&base).await {
            if h["status"] == "ok" {
                break;
            }
            last = h;
        }
        assert!(
            Instant::now() < deadline,
            "health still not ok 12 s after the flood ended: {last}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "a task panicked:\n{log}");
}
