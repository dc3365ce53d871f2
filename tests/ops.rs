//! Operations (SPEC §10, issue 13 items 4 and 5): a fresh node exposes every
//! metric with `# HELP`; `METRICS_ADDR` moves `/metrics` to an internal
//! listener; replay and the offline backlog are measured; secrets never
//! appear in logs, startup errors or scrapes.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::Client;
use common::process::Server;
use serde_json::{Value, json};
use switchyard::domain::Role;

/// The names SPEC §10 gives, plus those this issue adds.
const EXPECTED: [&str; 19] = [
    "websocket_active_connections",
    "websocket_connections_total",
    "websocket_auth_failures_total",
    "websocket_messages_total",
    "websocket_message_latency_seconds",
    "websocket_replayed_messages_total",
    "websocket_queued_messages",
    "websocket_conflicts_total",
    "websocket_rate_limited_total",
    "websocket_refused_total",
    "websocket_slow_consumer_disconnects_total",
    "websocket_db_errors_total",
    "websocket_redis_errors_total",
    "websocket_replay_lag_seconds",
    "switchyard_build_info",
    "switchyard_database_up",
    "switchyard_redis_up",
    "switchyard_db_pool_connections",
    "switchyard_db_pool_max_connections",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn fetch(url: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// The value of the sample line `series` (name with labels, as rendered,
/// labels in any order), if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            let bare = series.split('{').next() == Some(name);
            bare && labels
                .iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test]
async fn a_fresh_node_exposes_every_metric_with_help() {
    let server = Server::start(&[], None).await;
    let (status, text) = fetch(&format!("http://{}/metrics", server.addr())).await;
    assert_eq!(status, 200);
    // The SPEC's names, and every series the node registers (a series added
    // to `metrics::series::ALL` is checked here without editing this test).
    let registered = switchyard::metrics::series::ALL.map(|(name, _, _)| name);
    for name in EXPECTED.iter().chain(registered.iter()) {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name)),
            "no sample of {name}:\n{text}"
        );
    }
    // Labels with known values are there at zero before any traffic.
    for code in [
        "UNAUTHORIZED",
        "INVALID_TOKEN",
        "TOKEN_EXPIRED",
        "LIMIT_EXCEEDED",
        "RATE_LIMITED",
        "PAYLOAD_TOO_LARGE",
        "FORBIDDEN",
        "UNAVAILABLE",
    ] {
        assert_eq!(
            sample(&text, "websocket_refused_total", &[("code", code)]),
            Some(0.0),
            "refused {code}"
        );
    }
    for reason in ["UNAUTHORIZED", "INVALID_TOKEN", "TOKEN_EXPIRED"] {
        assert_eq!(
            sample(
                &text,
                "websocket_auth_failures_total",
                &[("reason", reason)]
            ),
            Some(0.0),
            "auth failure {reason}"
        );
    }
    for direction in ["in", "out"] {
        assert_eq!(
            sample(
                &text,
                "websocket_messages_total",
                &[("direction", direction)]
            ),
            Some(0.0),
            "messages {direction}"
        );
    }
    // A catalog type, outgoing, at zero.
    assert_eq!(
        sample(
            &text,
            "websocket_messages_total",
            &[("type", "order:status_changed"), ("direction", "out")]
        ),
        Some(0.0)
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(&text, "switchyard_build_info", &[("version", version)]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "switchyard_database_up", &[]), Some(1.0));
    assert_eq!(
        sample(&text, "switchyard_redis_up", &[]),
        Some(1.0),
        "no Redis configured: nothing is down"
    );
    assert_eq!(
        sample(&text, "websocket_active_connections", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "websocket_message_latency_seconds_count", &[]),
        Some(0.0)
    );
    // SQLite: a single writer connection and a reader pool.
    assert_eq!(
        sample(
            &text,
            "switchyard_db_pool_max_connections",
            &[("pool", "writer")]
        ),
        Some(1.0)
    );
    for pool in ["writer", "reader"] {
        for state in ["in_use", "idle"] {
            assert!(
                sample(
                    &text,
                    "switchyard_db_pool_connections",
                    &[("pool", pool), ("state", state)]
                )
                .is_some(),
                "pool {pool} {state}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_addr_moves_metrics_to_an_internal_listener() {
    let internal = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &[
            ("METRICS_ADDR", internal.as_str()),
            ("ADMIN_API_KEYS", "admin-key-7341"),
        ],
        None,
    )
    .await;
    let (status, text) = fetch(&format!("http://{internal}/metrics")).await;
    assert_eq!(status, 200);
    assert!(text.contains("# HELP websocket_active_connections "));
    let (public, _) = fetch(&format!("http://{}/metrics", server.addr())).await;
    assert_eq!(public, 404, "the public port no longer serves /metrics");
    let (health, _) = fetch(&format!("http://{}/health/websocket", server.addr())).await;
    assert_eq!(health, 200, "health stays on the public port");
    // The internal listener also serves the HTTP API, the admin API with it,
    // so operators can keep both off the public interface's firewall rules.
    let stats = reqwest::Client::new()
        .get(format!("http://{internal}/api/v1/admin/stats"))
        .bearer_auth("admin-key-7341")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("admin stats on the internal listener");
    assert_eq!(stats.status().as_u16(), 200);
    let body: serde_json::Value = stats.json().await.expect("stats JSON");
    assert!(body["connections"].is_number(), "{body}");
    let (unkeyed, _) = fetch(&format!("http://{internal}/api/v1/admin/stats")).await;
    assert_eq!(unkeyed, 401, "the same keys are required there");
    // The public port keeps the admin API (README: firewall it there if
    // operators use the internal listener only).
    let public_admin = reqwest::Client::new()
        .get(format!("http://{}/api/v1/admin/stats", server.addr()))
        .bearer_auth("admin-key-7341")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("admin stats on the public port");
    assert_eq!(public_admin.status().as_u16(), 200);
}

#[tokio::test]
async fn a_taken_metrics_addr_fails_startup_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, stderr) = run_to_exit(&[("METRICS_ADDR", addr.as_str())]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("METRICS_ADDR"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_measured_with_its_lag() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let company = common::unique("ops-");
    let token = app.token("u1", &company, Role::Operator);
    let client = Client::with_token(&app.url(), &token).await;
    client.disconnect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/events", app.url()))
        .bearer_auth("test-key")
        .json(&json!({
            "type": "order:status_changed", "companyId": company, "users": ["u1"],
            "payload": { "orderId": "1", "oldStatus": "a", "newStatus": "b", "timestamp": "2026-11-22T10:00:00Z" }
        }))
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status(), 202);
    let mut again = Client::with_token(&app.url(), &token).await;
    let session = again.expect("session").await;
    assert_eq!(session[0]["replayed"], 1, "{session:?}");
    let (_, text) = fetch(&format!("{}/metrics", app.url())).await;
    assert!(sample(&text, "websocket_replayed_messages_total", &[]) >= Some(1.0));
    assert!(
        sample(&text, "websocket_replay_lag_seconds_count", &[]) >= Some(1.0),
        "{text}"
    );
    app.stop().await;
}

/// Runs the binary until it exits (a startup failure), with a fresh SQLite
/// database and `env` on top; returns its exit code and stderr.
fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(common::unique("sy-ops-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // SWITCHYARD_BIN runs these against another build (as `common::process`).
    let bin = std::env::var("SWITCHYARD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .current_dir(&dir)
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("JWT_SECRET", common::SECRET)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("sy.db").display()),
        )
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not exit with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    (status, text)
}

fn assert_hidden(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "secret {s} appears in:\n{text}");
    }
}

#[tokio::test]
async fn startup_errors_never_show_passwords() {
    let closed = free_port();
    let cases = [
        (
            "DATABASE_URL",
            format!("postgres://app:pg-pass-5071@127.0.0.1:{closed}/sy"),
            "app:***@127.0.0.1",
        ),
        (
            "DATABASE_URL",
            "mysql://app:my-pass-5072@127.0.0.1/sy".to_string(),
            "app:***@127.0.0.1",
        ),
        (
            "REDIS_URL",
            format!("redis://default:redis-pass-5073@127.0.0.1:{closed}/0"),
            "REDIS_URL",
        ),
    ];
    for (var, value, shown) in &cases {
        let (code, out) = run_to_exit(&[(var, value.as_str())]);
        assert_ne!(code, Some(0), "{var}={value} must fail startup");
        assert_hidden(&out, &["pg-pass-5071", "my-pass-5072", "redis-pass-5073"]);
        assert!(out.contains(shown), "{var}: expected {shown} in:\n{out}");
    }
}

/// A Redis of our own that requires a password (never the shared one).
struct PasswordRedis {
    child: std::process::Child,
    port: u16,
}

impl PasswordRedis {
    async fn start(password: &str) -> Self {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                password,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh needs it)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self { child, port };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not listen on {port}");
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_running_node_never_logs_or_serves_its_secrets() {
    let redis = PasswordRedis::start("redis-pass-6123").await;
    // Postgres on these machines trusts loopback, so any password is
    // accepted: what matters is that it never shows.
    let pg = common::postgres_url().replacen(
        "postgres://postgres@",
        "postgres://postgres:pg-pass-6124@",
        1,
    );
    assert!(
        pg.contains("pg-pass-6124"),
        "TEST_DATABASE_URL must be postgres://postgres@…"
    );
    let redis_url = format!("redis://:redis-pass-6123@127.0.0.1:{}", redis.port);
    let prefix = common::unique("sy-ops-");
    let server = Server::start(
        &[
            ("DATABASE_URL", pg.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("REDIS_PREFIX", prefix.as_str()),
            ("API_KEYS", "api-key-6125,api-key-6126"),
            ("ADMIN_API_KEYS", "admin-key-6128"),
            ("ADMIN_UI", "on"),
            ("ADMIN_UI_USERNAME", "ops"),
            ("ADMIN_UI_PASSWORD", "ui-pass-6129-0123"),
            ("JWT_SECRET", "jwt-secret-6127-0123456789"),
            ("RUST_LOG", "debug"),
        ],
        None,
    )
    .await;
    let base = format!("http://{}", server.addr());
    let (status, health) = fetch(&format!("{base}/health/websocket")).await;
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["redis"], "ok", "the password was used: {health}");
    let (_, metrics) = fetch(&format!("{base}/metrics")).await;
    // A refused API key is logged at debug: it must not show either.
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/events"))
        .bearer_auth("api-key-6125x")
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401);
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/admin/stats"))
        .bearer_auth("admin-key-6128")
        .send()
        .await
        .expect("admin stats");
    assert_eq!(
        res.status(),
        200,
        "the admin key works (and is still hidden)"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log();
    let secrets = [
        "redis-pass-6123",
        "pg-pass-6124",
        "api-key-6125",
        "api-key-6126",
        "jwt-secret-6127",
        "admin-key-6128",
        "ui-pass-6129",
    ];
    assert_hidden(&log, &secrets);
    assert_hidden(&metrics, &secrets);
    assert!(
        log.contains("postgres://postgres:***@127.0.0.1"),
        "the startup line names the database without its password:\n{log}"
    );
    assert!(log.contains(":***@127.0.0.1"), "{log}");
}

/// A client whose connect-time replay read its rooms to the end goes live
/// without reading the log again: before, every connect started one
/// background catch-up per room (a query each; 40,000 in a storm of
/// 10,000 reconnects). Live delivery after `session` still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_to_date_connect_goes_live_without_a_catch_up() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let company = common::unique("ops-");
    let publish = |users: Value, status: &str| {
        json!({
            "type": "order:status_changed", "companyId": company, "users": users,
            "payload": { "orderId": "1", "oldStatus": "a", "newStatus": status, "timestamp": "2026-11-22T10:00:00Z" }
        })
    };
    // u1 has an offline queue (one event waiting), u2 and u3 have none.
    let first = Client::with_token(&app.url(), &app.token("u1", &company, Role::Operator)).await;
    first.disconnect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = app
        .post_json("/api/v1/events", &publish(json!(["u1"]), "queued"))
        .await;
    assert_eq!(status, 202);
    let mut clients = Vec::new();
    for user in ["u1", "u2", "u3"] {
        let mut c =
            Client::with_token(&app.url(), &app.token(user, &company, Role::Operator)).await;
        let session = c.expect("session").await;
        let want = if user == "u1" { 1 } else { 0 };
        assert_eq!(session[0]["replayed"], want, "{user}: {session:?}");
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, text) = fetch(&format!("{}/metrics", app.url())).await;
    assert_eq!(
        sample(&text, "switchyard_catch_ups_total", &[]),
        Some(0.0),
        "{text}"
    );
    let (status, _) = app
        .post_json(
            "/api/v1/events",
            &publish(json!(["u1", "u2", "u3"]), "live"),
        )
        .await;
    assert_eq!(status, 202);
    for c in &mut clients {
        let got = c.expect("order:status_changed").await;
        assert_eq!(got[0]["newStatus"], "live", "{got:?}");
    }
    app.stop().await;
}
