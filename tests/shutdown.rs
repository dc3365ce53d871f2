//! Background work is owned (issue 11): every loop and timer the server
//! starts (presence heartbeat and sweep, grace and typing timers,
//! conflation windows, catch-ups, the cursor saver, pruning, the group-commit
//! writer, the Redis probes, the durable bus listener and drain, the
//! per-session workers) is spawned through one task tracker with one
//! cancellation token, and graceful shutdown leaves none of them running.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::client::Client;
use serde_json::json;
use switchyard::App;
use switchyard::config::Config;
use switchyard::domain::Role;

fn config(redis: bool) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("JWT_SECRET".into(), common::SECRET.into()),
        ("DATABASE_URL".into(), common::sqlite_url()),
        ("API_KEYS".into(), "test-key".into()),
        ("SHUTDOWN_GRACE".into(), "5".into()),
        ("WS_PRESENCE_GRACE_MS".into(), "60000".into()),
    ]);
    if redis {
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        vars.insert("REDIS_URL".into(), url);
        vars.insert("REDIS_PREFIX".into(), common::unique("shutdown-"));
    }
    Config::from_map(vars).expect("valid test config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_background_task() {
    for redis in [false, true] {
        let config = config(redis);
        let app = App::build(config.clone()).await.expect("app builds");
        let addr = app.local_addr().expect("bound");
        let tasks = app.state().tasks.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let url = format!("http://{addr}");
        let token = |user: &str| {
            switchyard::auth::mint_token(
                &config,
                user,
                "acme",
                Role::Supervisor,
                Duration::from_secs(3600),
            )
            .expect("mint")
        };
        let mut a = Client::with_token(&url, &token("u1")).await;
        a.expect("session").await;
        let ack = a
            .emit_with_ack("subscribe", json!({ "room": "machine:g1" }))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        let mut b = Client::with_token(&url, &token("u2")).await;
        b.expect("session").await;
        // Timers that outlive the requests that started them: a typing
        // expiry, a conflation window, and (u2 leaving) a presence grace
        // period of a minute.
        let ack = a
            .emit_with_ack(
                "user:typing",
                json!({ "room": "company", "isTyping": true }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        let reading = json!({ "endpointId": 7, "value": 1, "timestamp": "2026-01-01T00:00:00Z" });
        let ack = a
            .emit_with_ack(
                "event:publish",
                json!({ "type": "telemetry", "room": "telemetry:7", "payload": reading }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        b.disconnect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            tasks.running() > 5,
            "loops and timers run: {}",
            tasks.running()
        );
        let started = Instant::now();
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("shutdown ends")
            .expect("no panic")
            .expect("clean exit");
        assert_eq!(
            tasks.running(),
            0,
            "redis={redis}: tasks left after shutdown"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "redis={redis}: no task waited out the shutdown grace ({:?})",
            started.elapsed()
        );
    }
}

/// The static half: nothing in `src/` spawns a task around the tracker.
#[test]
fn every_task_is_spawned_through_the_tracker() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stray = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if code.contains("tokio::spawn") || code.contains("task::spawn") {
                    stray.push(format!("{}:{}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        stray.is_empty(),
        "spawned outside `tasks::Tasks`: {stray:?}"
    );
}
